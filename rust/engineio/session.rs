//! One Engine.IO session: its transport, its heartbeat and its upgrade.
//!
//! ```text
//! transport   Polling ──(probe WebSocket: "2probe" → "3probe", then "5")──► WebSocket
//!             WebSocket (from the handshake, or after the upgrade): never changes again
//! upgrade     None → Probing(conn) ─"2probe"→ Probed(conn) ─"5"→ None (transport is now WebSocket)
//!             a probe that sends anything else, closes, or outlives upgrade_timeout is dropped: back to None
//! heartbeat   every ping_interval the server sends a ping; no pong within ping_timeout closes the session
//! state       Open ─close()─► Closing (polling only: waits for one more GET to carry the close packet) ─► gone
//! ```
//! Time is an argument everywhere; `next_deadline` reports when the session next needs `Engine::handle_timeout`.
use std::sync::Arc;
use std::time::Instant;

use super::packet::Packet;
use super::RequestInfo;

pub use crate::ids::{ConnId, SessionKey};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    Open,
    /// Polling sessions closed by the server wait for one more GET to carry the close packet.
    Closing {
        deadline: Instant,
    },
}

#[derive(Debug)]
pub struct Session {
    pub sid: Arc<str>,
    pub transport: Transport,
    pub state: ReadyState,
    /// The pending long-polling GET, parked until there is something to send.
    pub poll_conn: Option<ConnId>,
    /// Packets waiting for the next GET (polling transport only).
    pub queue: Vec<Packet>,
    /// The WebSocket carrying this session once the transport is WebSocket.
    pub ws_conn: Option<ConnId>,
    pub upgrade: Upgrade,
    pub next_ping: Option<Instant>,
    pub pong_deadline: Option<Instant>,
    pub request: Arc<RequestInfo>,
}

impl Session {
    pub fn new(
        sid: Arc<str>,
        transport: Transport,
        request: Arc<RequestInfo>,
        next_ping: Instant,
    ) -> Self {
        Session {
            sid,
            transport,
            state: ReadyState::Open,
            poll_conn: None,
            queue: Vec::new(),
            ws_conn: None,
            upgrade: Upgrade::None,
            next_ping: Some(next_ping),
            pong_deadline: None,
            request,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state == ReadyState::Open
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let upgrade = match self.upgrade {
            Upgrade::None => None,
            Upgrade::Probing { deadline, .. } | Upgrade::Probed { deadline, .. } => Some(deadline),
        };
        let closing = match self.state {
            ReadyState::Closing { deadline } => Some(deadline),
            ReadyState::Open => None,
        };
        [self.next_ping, self.pong_deadline, upgrade, closing]
            .into_iter()
            .flatten()
            .min()
    }
}
