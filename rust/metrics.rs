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
