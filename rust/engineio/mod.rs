//! Engine.IO v4 (and v3, per session, with `Config::allow_eio3`: `packet_v3`), sans-IO: requests, WebSocket messages and the current time go in; answers, connections to
//! close and application events come out, all as values (a driver reads and writes the bytes). `engine::Engine`
//! is the state machine, in parts: `conn` (connections), `requests` (routing and handshakes), `polling`,
//! `websocket` and `session`; `answer` holds what it answers. This file holds the words the engine shares with
//! its users (configuration, events, the errors Node answers with).
pub mod admission;
pub mod answer;
mod conn;
pub mod engine;
pub mod packet;
pub mod packet_v3;
mod polling;
mod requests;
pub mod session;
mod websocket;

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::ids::{ConnId, SessionKey};
pub use crate::permessage_deflate::DeflateConfig;
pub use answer::{Answer, Answers};
pub use conn::Phase;
pub use engine::Engine;
pub use packet::{Data, Packet};
pub use session::{CloseReason, Transport};

/// Node's `Server.errors`: the JSON `code` of an error response, and its default `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// Node answers 403 for Forbidden and 400 for everything else.
    pub fn status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::UnknownTransport,
            1 => Self::UnknownSid,
            2 => Self::BadHandshakeMethod,
            3 => Self::BadRequest,
            4 => Self::Forbidden,
            5 => Self::UnsupportedProtocolVersion,
            _ => return None,
        })
    }
}

/// The Engine.IO revision a session speaks (Node's `socket.protocol`), from its handshake's `EIO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V4,
    /// socket.io-client 2.x's (with `Config::allow_eio3`). Whether binary goes as binary, or as base64 text
    /// for a client that asked for it (the `b64` query parameter), on each transport: each transport's request
    /// says so (Node's `supportsBinary` is the transport's), and Node.js's XHR asks for base64 where its
    /// WebSocket does not.
    V3 {
        polling_binary: bool,
        ws_binary: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub origin: CorsOrigin,
    pub credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub path: String,
    pub http_only: bool,
    pub same_site: Option<String>,
}

impl Default for Cookie {
    /// Node's `cookie: true`.
    fn default() -> Self {
        Cookie {
            name: "io".into(),
            path: "/".into(),
            http_only: true,
            same_site: Some("Lax".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Node's maxHttpBufferSize: the largest POST body and the largest WebSocket message.
    pub max_payload: usize,
    pub polling: bool,
    pub websocket: bool,
    pub allow_upgrades: bool,
    /// Always ends with '/': Node matches requests by this prefix.
    pub path: String,
    pub cors: Option<Cors>,
    pub cookie: Option<Cookie>,
    pub max_connections: Option<usize>,
    /// When true, a handshake waits for the application (`Event::Handshake`) to accept or refuse it.
    pub defer_handshakes: bool,
    /// Bytes a peer may have waiting before it is dropped as too slow: a connection's output not yet written
    /// (a WebSocket's), and a long-polling session's packets waiting for a GET (their payload's size).
    pub max_buffered: usize,
    /// Prepended to every generated sid; workers use it to say who owns a session.
    pub sid_prefix: String,
    /// Requests outside `path` go to the application (`Event::Request`) instead of a 404.
    pub serve_other_paths: bool,
    /// A connection must deliver a whole request within this long of its first byte (or of connecting):
    /// Node's headersTimeout. Otherwise 408 and close, so a client that drips bytes cannot hold a socket.
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this long: Node's keepAliveTimeout.
    pub keep_alive_timeout: Duration,
    /// New sessions from one IP address: (per second, burst); past it handshakes are refused with 429.
    pub connection_rate: Option<(f64, f64)>,
    /// Node's `perMessageDeflate` (off by default): permessage-deflate offered by a client is negotiated on the
    /// WebSocket connections whose bytes a connection layer reads (an ASGI server negotiates its own).
    pub per_message_deflate: Option<DeflateConfig>,
    /// Node's `httpCompression` (on by default, 1024): a long-polling response of at least this many bytes is
    /// compressed with gzip or deflate, as the request's Accept-Encoding prefers.
    pub http_compression: Option<usize>,
    /// Accept Engine.IO v3 clients (socket.io-client 2.x): Node's allowEIO3, off by default.
    pub allow_eio3: bool,
}

impl Default for Config {
    /// The defaults of Node's engine.io 6.
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            polling: true,
            websocket: true,
            allow_upgrades: true,
            path: "/engine.io/".into(),
            cors: None,
            cookie: None,
            max_connections: None,
            defer_handshakes: false,
            max_buffered: 16 * 1024 * 1024,
            sid_prefix: String::new(),
            serve_other_paths: false,
            request_timeout: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(5),
            connection_rate: None,
            per_message_deflate: None,
            http_compression: Some(1024),
            allow_eio3: false,
        }
    }
}

impl Config {
    pub fn set_path(&mut self, path: &str) {
        let trimmed = path.trim_end_matches('/');
        self.path = format!("{trimmed}/");
    }

    pub fn handles_transport(&self, t: Transport) -> bool {
        match t {
            Transport::Polling => self.polling,
            Transport::WebSocket => self.websocket,
        }
    }
}

/// What the application may know of the request that opened a session (Node's `socket.request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote: Option<SocketAddr>,
}

/// Node's `initial_headers` and `headers` events: called with whether the request opens a session (it has no
/// sid), the request, and the headers the application may add to or change (the session cookie, if any), for
/// every response that carries a session: handshakes, polls, POSTs and WebSocket upgrades; error answers are not
/// offered. Set with `Engine::set_headers_hook`; without one nothing is built.
pub type HeadersHook = Box<dyn Fn(bool, &RequestInfo, &mut Vec<(String, String)>) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handshake waiting for `Engine::accept_handshake` or `Engine::refuse_handshake`
    /// (only with `Config::defer_handshakes`).
    Handshake {
        conn: ConnId,
        request: std::sync::Arc<RequestInfo>,
    },
    Open {
        key: SessionKey,
        sid: std::sync::Arc<str>,
        transport: Transport,
        request: std::sync::Arc<RequestInfo>,
    },
    Message {
        key: SessionKey,
        data: Data,
    },
    Upgrade {
        key: SessionKey,
    },
    Close {
        key: SessionKey,
        reason: CloseReason,
    },
    /// An HTTP request outside the Engine.IO path (only with `Config::serve_other_paths`); answer it with
    /// `Engine::respond_app`.
    Request {
        conn: ConnId,
        request: std::sync::Arc<RequestInfo>,
        body: Vec<u8>,
    },
    /// A request refused with one of Node's errors (Node's `connection_error`): reported once, so the
    /// application can log it, with the request and, for `Forbidden`, the refusal's own message.
    ConnectionError {
        conn: ConnId,
        code: ErrorCode,
        detail: Option<String>,
        request: std::sync::Arc<RequestInfo>,
    },
    /// Bad input from a peer, reported once per occurrence so the application can log it.
    ProtocolError {
        /// None for a session's fault that no connection carries.
        conn: Option<ConnId>,
        remote: Option<SocketAddr>,
        message: String,
    },
}

#[cfg(test)]
mod tests;
