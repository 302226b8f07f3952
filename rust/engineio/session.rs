//! One Engine.IO session: what carries it, its heartbeat and its upgrade; and the engine's handling of sessions
//! (packets in and out, timers, closing).
//!
//! ```text
//! carrier     Polling { upgrade } ──(probe WebSocket: "2probe" → "3probe", then "5")──► WebSocket { conn }
//!             WebSocket (from the handshake, or after the upgrade): never changes again
//! upgrade     None → Probing(conn) ─"2probe"→ Probed(conn) ─"5"→ (the carrier is now WebSocket)
//!             a probe that sends anything else, closes, or outlives upgrade_timeout is dropped: back to None
//! heartbeat   Open(PingAt(t)) ─t: ping sent─► Open(PongBy(t + ping_timeout)) ─pong─► Open(PingAt(+ping_interval))
//!             no pong by the deadline closes the session ("ping timeout")
//!             Engine.IO v3 turns it round: Open(ClientPingBy(t + ping_interval + ping_timeout)) ─client's ping:
//!             pong sent─► Open(ClientPingBy(+ping_interval + ping_timeout)); no ping by then: "ping timeout"
//! state       Open(heartbeat) ─close()─► Closing (polling only: waits for one more GET to carry the close
//!             packet) ─► gone
//! ```
//! Time is an argument everywhere; `next_deadline` reports when the session next needs `Engine::handle_timeout`.
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::answer::Answers;
use super::conn::Parked;
use super::engine::Engine;
use super::packet::{Data, Packet};
use super::packet_v3;
use super::polling::Outbox;
use super::{Event, Protocol};

use crate::ids::{ConnId, SessionKey};
use crate::metrics::BadInput;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::WebSocket => "websocket",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "polling" => Some(Self::Polling),
            "websocket" => Some(Self::WebSocket),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    /// A WebSocket is open for this session but has not sent `2probe` yet.
    Probing {
        conn: ConnId,
        deadline: Instant,
    },
    /// `3probe` was answered; the client pauses polling and is expected to send `5`.
    Probed {
        conn: ConnId,
        deadline: Instant,
    },
}

impl Upgrade {
    pub fn conn(&self) -> Option<ConnId> {
        match *self {
            Self::None => None,
            Self::Probing { conn, .. } | Self::Probed { conn, .. } => Some(conn),
        }
    }
}

/// Why a session closed, in the words Node's engine.io uses for its `close` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    TransportError,
    TransportClose,
    ForcedClose,
    PingTimeout,
    ParseError,
    ServerShuttingDown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportError => "transport error",
            Self::TransportClose => "transport close",
            Self::ForcedClose => "forced close",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ServerShuttingDown => "server shutting down",
        }
    }
}

/// What only the transport carrying a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Long-polling; a WebSocket may be probing to take over.
    Polling { upgrade: Upgrade },
    /// The WebSocket carrying the session, from the handshake or since the upgrade.
    WebSocket { conn: ConnId },
}

/// An open session's heartbeat: the server's next ping, or the client's pong awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    PingAt(Instant),
    PongBy(Instant),
    /// Engine.IO v3: the client pings, and must by then (Node's pingInterval + pingTimeout).
    ClientPingBy(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    Open(Heartbeat),
    /// Polling sessions closed by the server wait for one more GET to carry the close packet.
    Closing {
        deadline: Instant,
    },
}

#[derive(Debug)]
pub struct Session {
    pub sid: Arc<str>,
    pub carrier: Carrier,
    pub state: ReadyState,
    /// The pending long-polling GET, parked until there is something to send (after an upgrade, the last one,
    /// released with a noop).
    pub poll_conn: Option<ConnId>,
    /// Packets waiting for the next GET.
    pub queue: Outbox,
    /// The peer's address, for reports of its bad input. The handshake's request itself went to the
    /// application with `Event::Open` and is not kept: a session lives long, and its headers are a kilobyte.
    pub remote: Option<SocketAddr>,
    pub protocol: Protocol,
}

impl Session {
    /// `heartbeat`: when the server pings (v4), or by when the client must (v3).
    pub fn new(
        sid: Arc<str>,
        carrier: Carrier,
        remote: Option<SocketAddr>,
        protocol: Protocol,
        heartbeat: Instant,
    ) -> Self {
        let heartbeat = match protocol {
            Protocol::V4 => Heartbeat::PingAt(heartbeat),
            Protocol::V3 { .. } => Heartbeat::ClientPingBy(heartbeat),
        };
        Session {
            sid,
            carrier,
            state: ReadyState::Open(heartbeat),
            poll_conn: None,
            queue: Outbox::default(),
            remote,
            protocol,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, ReadyState::Open(_))
    }

    pub fn transport(&self) -> Transport {
        match self.carrier {
            Carrier::Polling { .. } => Transport::Polling,
            Carrier::WebSocket { .. } => Transport::WebSocket,
        }
    }

    /// The WebSocket carrying the session, if that is its transport.
    pub fn websocket(&self) -> Option<ConnId> {
        match self.carrier {
            Carrier::WebSocket { conn } => Some(conn),
            Carrier::Polling { .. } => None,
        }
    }

    pub fn upgrade(&self) -> Upgrade {
        match self.carrier {
            Carrier::Polling { upgrade } => upgrade,
            Carrier::WebSocket { .. } => Upgrade::None,
        }
    }

    /// When the session next needs `Engine::handle_timeout`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let upgrade = match self.upgrade() {
            Upgrade::None => None,
            Upgrade::Probing { deadline, .. } | Upgrade::Probed { deadline, .. } => Some(deadline),
        };
        let state = match self.state {
            ReadyState::Open(
                Heartbeat::PingAt(at) | Heartbeat::PongBy(at) | Heartbeat::ClientPingBy(at),
            ) => at,
            ReadyState::Closing { deadline } => deadline,
        };
        Some(upgrade.map_or(state, |u| u.min(state)))
    }
}

impl Engine {
    pub(super) fn send_packet(&mut self, key: SessionKey, packet: Packet) -> bool {
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        if !s.is_open() && packet != Packet::Close {
            return false;
        }
        match s.carrier {
            Carrier::WebSocket { conn } => {
                let protocol = s.protocol;
                if self.compress || protocol != Protocol::V4 {
                    self.emit(conn, |out| ws_packet(out, protocol, packet))
                } else {
                    let packet = Arc::new(packet);
                    self.emit(conn, |out| out.plain(&packet));
                }
            }
            Carrier::Polling { .. } => return self.queue_for_poll(key, packet),
        }
        true
    }

    /// A packet from the client on `conn` (a POST, or the session's WebSocket).
    pub(super) fn on_packet(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        packet: Packet,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if !s.is_open() {
            return;
        }
        match packet {
            Packet::Message(data) => {
                self.counters.packets_in += 1;
                self.counters.bytes_in += data.len() as u64;
                self.events.push_back(Event::Message { key, data });
            }
            // A pong nobody asked for changes nothing: it must not postpone the next ping.
            Packet::Pong(_) if matches!(s.state, ReadyState::Open(Heartbeat::PongBy(_))) => {
                let at = now + self.config.ping_interval;
                s.state = ReadyState::Open(Heartbeat::PingAt(at));
                self.timers.push(Reverse((at, key)));
            }
            Packet::Close => self.close_session(key, CloseReason::TransportClose, now),
            Packet::Ping(_) if s.protocol != Protocol::V4 => {
                // Engine.IO v3: the client's ping, answered at once; it pushes the deadline back.
                let by = now + self.config.ping_interval + self.config.ping_timeout;
                s.state = ReadyState::Open(Heartbeat::ClientPingBy(by));
                self.timers.push(Reverse((by, key)));
                self.send_packet(key, Packet::Pong(String::new()));
            }
            Packet::Pong(_) if s.protocol != Protocol::V4 => {
                // Node: "invalid heartbeat direction", in v3 as in v4.
                self.report_bad_input(
                    conn,
                    BadInput::EngineIo,
                    "pong from an Engine.IO v3 client".into(),
                );
                self.close_session(key, CloseReason::TransportError, now);
            }
            Packet::Ping(_) => {
                // In v4 only the server pings; Node fails the transport ("invalid heartbeat direction").
                self.report_bad_input(conn, BadInput::EngineIo, "ping from the client".into());
                self.close_session(key, CloseReason::TransportError, now);
            }
            // Upgrade packets mean something only on a probe; Node ignores them here, and noops everywhere.
            Packet::Pong(_) | Packet::Upgrade | Packet::Noop | Packet::Open(_) => {}
        }
    }

    pub(super) fn session_timers(&mut self, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if let ReadyState::Closing { deadline } = s.state {
            if deadline <= now {
                return self.remove_session(key, Packet::Close);
            }
        }
        if let Upgrade::Probing { conn, deadline } | Upgrade::Probed { conn, deadline } =
            s.upgrade()
        {
            if deadline <= now {
                self.drop_probe(key, conn);
            }
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        match s.state {
            ReadyState::Open(Heartbeat::PongBy(by) | Heartbeat::ClientPingBy(by)) if by <= now => {
                self.close_session(key, CloseReason::PingTimeout, now)
            }
            ReadyState::Open(Heartbeat::PingAt(at)) if at <= now => {
                let by = now + self.config.ping_timeout;
                s.state = ReadyState::Open(Heartbeat::PongBy(by));
                self.timers.push(Reverse((by, key)));
                self.send_packet(key, Packet::Ping(String::new()));
            }
            _ => {}
        }
    }

    /// Close a session for `reason`. The application hears of it at once. A polling client hears of it on its
    /// parked GET; when the server closed the session and no GET is parked, on its next GET (the session
    /// lingers as Closing for one ping_timeout to answer it). Otherwise the sid is forgotten at once, as in Node.
    pub(super) fn close_session(&mut self, key: SessionKey, reason: CloseReason, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let lingers =
            reason == CloseReason::ForcedClose && s.poll_conn.is_none() && s.websocket().is_none();
        if !lingers || !s.is_open() {
            return self.end_session(key, reason);
        }
        let deadline = now + self.config.ping_timeout;
        s.state = ReadyState::Closing { deadline };
        self.open_sessions -= 1;
        self.timers.push(Reverse((deadline, key)));
        self.closed(key, reason);
    }

    /// Close a session that does not linger: the sid is forgotten at once (so no time is needed: the overflow of
    /// a polling queue closes its session from a send).
    pub(super) fn end_session(&mut self, key: SessionKey, reason: CloseReason) {
        if !self.sessions.get(&key).is_some_and(Session::is_open) {
            return;
        }
        self.closed(key, reason);
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        match s.carrier {
            Carrier::WebSocket { conn } => {
                // Nothing is written when the WebSocket is what failed or closed: its connection is gone or
                // already finished.
                let queued = s.queue.take();
                let protocol = s.protocol;
                self.emit(conn, |out| {
                    (queued.into_iter()).for_each(|p| ws_packet(out, protocol, p))
                });
                self.close_websocket(conn, None);
                self.remove_session(key, Packet::Close);
            }
            // Node answers the GET of a client that sent the close packet itself with a noop.
            Carrier::Polling { .. } if reason == CloseReason::TransportClose => {
                self.remove_session(key, Packet::Noop)
            }
            Carrier::Polling { .. } => self.remove_session(key, Packet::Close),
        }
    }

    /// What every close does first: a WebSocket probing to take the session over is closed, and the
    /// application hears of the close.
    fn closed(&mut self, key: SessionKey, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if let Some(conn) = s.upgrade().conn() {
            s.carrier = Carrier::Polling {
                upgrade: Upgrade::None,
            };
            self.close_websocket(conn, None);
        }
        self.counters.closed(reason.as_str());
        self.events.push_back(Event::Close { key, reason });
    }

    /// Forget a session. A parked GET is answered with what is queued and then `last`.
    pub(super) fn remove_session(&mut self, key: SessionKey, last: Packet) {
        let Some(mut s) = self.sessions.remove(&key) else {
            return;
        };
        self.sids.remove(&s.sid);
        if s.is_open() {
            self.open_sessions -= 1;
        }
        let Some(conn) = s.poll_conn else {
            return;
        };
        let Some(req) = self.unpark(conn, Parked::Poll) else {
            return;
        };
        let res = s.queue.response(s.protocol, Some(last));
        self.respond(conn, &req, res);
    }
}

/// Add `packet` to a WebSocket's output: a v3 session's binary message has a form of its own.
pub(super) fn ws_packet(out: &mut Answers, protocol: Protocol, packet: Packet) {
    match (protocol, packet) {
        (Protocol::V3 { ws_binary, .. }, Packet::Message(Data::Binary(b))) => {
            out.message(packet_v3::ws_binary(&b, ws_binary))
        }
        (_, packet) => out.packet(packet),
    }
}
