//! The counts behind `/metrics`, kept where they happen: plain integers bumped on the hot path (no lock, no
//! atomics: a core is driven by one thread), read all at once when a scrape asks (`EngineCore.metrics`).
//! Gauges (sessions and sockets by transport, bytes buffered) are not kept: they are counted from the tables
//! at the scrape, so the hot path pays nothing for them.
use std::collections::BTreeMap;

/// Why input from a peer was refused: the label of `anysio_bad_input_total`. Python adds its own kinds (a
/// payload that does not fit its handler, a packet it cannot decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadInput {
    /// Malformed or oversized HTTP, a request not whole in time, no Engine.IO endpoint at the path.
    Http,
    /// A WebSocket handshake or frame the RFC refuses.
    WebSocket,
    /// An Engine.IO packet or payload the protocol refuses (a ping from the client, a second GET, ...).
    EngineIo,
    /// A request Node answers with one of its `connection_error` codes (unknown sid, bad transport, ...).
    ConnectionError,
    /// A Socket.IO packet the protocol refuses (the session is closed, as Node's is).
    SocketIo,
}

impl BadInput {
    pub const ALL: [BadInput; 5] = [
        Self::Http,
        Self::WebSocket,
        Self::EngineIo,
        Self::ConnectionError,
        Self::SocketIo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::WebSocket => "websocket",
            Self::EngineIo => "engineio",
            Self::ConnectionError => "connection_error",
            Self::SocketIo => "socketio",
        }
    }
}

/// The engine's counts. Packets are Engine.IO message packets (a Socket.IO packet, or one binary attachment),
/// and their bytes the message's data: without HTTP, WebSocket framing or the heartbeat, so the same traffic
/// counts the same over polling, WebSocket and ASGI.
#[derive(Debug, Default, Clone)]
pub struct EngineCounters {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Sessions opened, by the transport of their handshake: [polling, websocket].
    pub sessions_opened: [u64; 2],
    /// Sessions closed, by Node's reason.
    pub sessions_closed: BTreeMap<&'static str, u64>,
    /// Upgrades from long-polling to WebSocket.
    pub upgrades: u64,
    pub bad_input: [u64; BadInput::ALL.len()],
    /// Peers dropped because their output passed `max_buffered` (a WebSocket, or a polling queue).
    pub slow_consumers: u64,
    /// Handshakes refused by the per-address rate limit (`Config::connection_rate`).
    pub rate_limited_connections: u64,
}

impl EngineCounters {
    pub fn bad(&mut self, kind: BadInput) {
        self.bad_input[kind as usize] += 1;
    }

    pub fn closed(&mut self, reason: &'static str) {
        *self.sessions_closed.entry(reason).or_default() += 1;
    }
}

/// Socket.IO's counts.
#[derive(Debug, Default, Clone)]
pub struct SioCounters {
    /// CONNECTs by result: accepted (recovered ones included), refused by the application, invalid namespace.
    pub connects: [u64; 3],
    /// Sockets disconnected, by Node's reason.
    pub disconnects: BTreeMap<&'static str, u64>,
    /// Broadcasts (a packet to a room, the namespace, ...), and the sockets they reached.
    pub broadcasts: u64,
    pub deliveries: u64,
}

/// The labels of `SioCounters::connects`, in its order.
pub const CONNECT_RESULTS: [&str; 3] = ["accepted", "refused", "invalid_namespace"];

impl SioCounters {
    pub fn disconnected(&mut self, reason: &'static str) {
        *self.disconnects.entry(reason).or_default() += 1;
    }
}

/// The handlers' time is counted in buckets of powers of two nanoseconds, from 2**LOW (about 1 us) to
/// 2**(LOW + BUCKETS - 1) (about 17 s), and one over them: a bit length indexes them without a search.
pub const HANDLER_LOW: u32 = 10;
pub const HANDLER_BUCKETS: usize = 25;

/// The event handlers' time (Python's dispatcher counts each event here: metrics on). Kept in Rust because a
/// Python histogram cost about 0.2 us an event, 5% of a typed echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerTimes {
    pub buckets: [u64; HANDLER_BUCKETS + 1],
    pub total_ns: u128,
}

impl Default for HandlerTimes {
    fn default() -> Self {
        HandlerTimes {
            buckets: [0; HANDLER_BUCKETS + 1],
            total_ns: 0,
        }
    }
}

impl HandlerTimes {
    pub fn observe(&mut self, ns: u64) {
        let bits = u64::BITS - ns.leading_zeros();
        let bucket = bits.saturating_sub(HANDLER_LOW) as usize;
        self.buckets[bucket.min(HANDLER_BUCKETS)] += 1;
        self.total_ns += u128::from(ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_times_fall_in_powers_of_two() {
        let mut t = HandlerTimes::default();
        for ns in [0, 1, 1023, 1024, 2047, 2048, 5_000, 10u64.pow(12), u64::MAX] {
            t.observe(ns);
        }
        // Under 2**10 ns: the first bucket; 1024 and 2047 are 11 bits: the second; 2048 and 5000 the third and
        // fourth; 1000 s and u64::MAX over the last.
        assert_eq!(&t.buckets[..4], &[3, 2, 1, 1]);
        assert_eq!(t.buckets[HANDLER_BUCKETS], 2);
        assert_eq!(t.buckets.iter().sum::<u64>(), 9);
    }
}
