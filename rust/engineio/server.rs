//! The Engine.IO server state machine: connections (HTTP or WebSocket) and the sessions they carry.
//!
//! ```text
//! connection  Http ─(GET with Upgrade: websocket, answered 101)─► WebSocket ─► gone
//!             Http parks while a long-polling GET waits for data, or while the application decides a handshake
//! requests    no sid: handshake (GET only, EIO=4, known transport); sid: a poll (GET), data (POST) or an upgrade
//! ```
//! Every input (`on_bytes`, `on_disconnect`, `handle_timeout` and the application's calls) leaves its results in
//! `events` and in per-connection output buffers; `take_dirty` names the connections with something to write or
//! to close. A broadcast builds its frame once and copies it into each target's buffer, so each connection is
//! written once per batch whatever the number of packets.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::output::{Out, Output, Shared};
use super::packet::{Data, Packet};
use super::session::{CloseReason, ConnId, Session, SessionKey, Transport};
use super::{Config, ErrorCode, Event, RequestInfo};
use crate::http::{self, HttpError, Request, RequestParser, Response};
use crate::websocket::{self, Message};

#[path = "lifecycle.rs"]
mod lifecycle;
#[path = "requests.rs"]
mod requests;

enum Waiting {
    Nothing,
    /// A long-polling GET parked until the session has packets; its request is kept for the answer's headers.
    Poll {
        key: SessionKey,
        req: Box<Request>,
    },
    /// A handshake waiting for the application's decision.
    Handshake(Box<Request>),
    /// A request outside the Engine.IO path, waiting for the application's response.
    App(Box<Request>),
}

/// Which kind of parked request `Engine::unpark` takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parked {
    Poll,
    Handshake,
    App,
}

enum ConnState {
    Http {
        parser: RequestParser,
        waiting: Waiting,
    },
    WebSocket {
        decoder: websocket::Decoder,
        key: SessionKey,
    },
    /// Answered and waiting to be flushed and closed.
    Done,
}

struct Conn {
    remote: Option<SocketAddr>,
    state: ConnState,
    out: Out,
    dirty: bool,
    close_after_flush: bool,
    /// Bytes received while a request is parked: the parser only bounds what it parses, so this bounds the rest.
    parked_input: usize,
    /// When this HTTP connection, neither parked nor answered, stops being waited for (see `conn_timers`).
    deadline: Option<Instant>,
    /// The earliest entry this connection has in `conn_timers`. Later deadlines only move `deadline`: the entry,
    /// when it fires, re-queues itself, so a busy keep-alive connection keeps one entry, not one per request.
    queued: Option<Instant>,
    /// When the first byte of the request being received arrived.
    request_started: Option<Instant>,
    /// Whether a request was answered on it: then waiting between requests is keep-alive idling.
    served: bool,
}

pub struct Engine {
    pub config: Config,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<SessionKey, Session>,
    sids: HashMap<Arc<str>, SessionKey>,
    next_key: SessionKey,
    /// Sessions not yet closed (`sids` also holds polling sessions waiting to deliver their close packet).
    open_sessions: usize,
    timers: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    /// HTTP connections' deadlines (`Conn::deadline`); entries whose deadline changed since are skipped.
    conn_timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    events: VecDeque<Event>,
    dirty: Vec<ConnId>,
    /// Polling sessions that got packets while a GET is parked: answered once per batch in `flush_polls`.
    poll_ready: Vec<SessionKey>,
}

fn error_response(code: ErrorCode, message: Option<&str>) -> Response {
    let body =
        serde_json::json!({"code": code as u8, "message": message.unwrap_or(code.message())});
    Response::new(code.status()).with_body("application/json", body.to_string().into_bytes())
}

fn generate_sid(prefix: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    // Without the OS's randomness there is no safe sid; a clock-based one would be guessable, so fail loudly.
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Engine {
            config,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            sids: HashMap::new(),
            next_key: SessionKey(1),
            open_sessions: 0,
            timers: BinaryHeap::new(),
            conn_timers: BinaryHeap::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            poll_ready: Vec::new(),
        }
    }

    // ---- inputs from the driver -------------------------------------------------------------------------

    pub fn on_connect(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Out::Wire(Vec::new()));
    }

    /// A connection whose requests and WebSocket messages arrive parsed (`on_request`, `on_message`) and whose
    /// answers are taken as values (`take_outputs`): the ASGI driver's.
    pub fn on_connect_typed(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Out::typed());
    }

    fn insert_conn(&mut self, conn: ConnId, remote: Option<SocketAddr>, out: Out) {
        let parser = RequestParser::new(http::DEFAULT_MAX_HEADER_BYTES, self.config.max_payload);
        self.conns.insert(
            conn,
            Conn {
                remote,
                state: ConnState::Http {
                    parser,
                    waiting: Waiting::Nothing,
                },
                out,
                dirty: false,
                close_after_flush: false,
                parked_input: 0,
                deadline: None,
                queued: None,
                request_started: None,
                served: false,
            },
        );
    }

    /// `on_connect` for a connection the HTTP timeouts apply to (the socket driver's; the ASGI driver's requests
    /// arrive whole).
    pub fn on_connect_at(&mut self, conn: ConnId, remote: Option<SocketAddr>, now: Instant) {
        self.on_connect(conn, remote);
        self.set_conn_deadline(conn, now + self.config.request_timeout);
    }

    fn set_conn_deadline(&mut self, conn: ConnId, at: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.deadline = Some(at);
            if c.queued.is_none_or(|q| at < q) {
                c.queued = Some(at);
                self.conn_timers.push(Reverse((at, conn)));
            }
        }
    }

    /// An HTTP connection's deadline passed: close it if it is still waited for (not parked, not answered).
    fn conn_timer(&mut self, conn: ConnId, at: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.queued != Some(at) {
            return; // superseded by an earlier entry
        }
        c.queued = None;
        match c.deadline {
            Some(later) if later > at => {
                // The deadline moved on since this entry was queued: wait for it instead.
                c.queued = Some(later);
                self.conn_timers.push(Reverse((later, conn)));
                return;
            }
            Some(_) => {}
            None => return,
        }
        let waited_for = matches!(
            &c.state,
            ConnState::Http {
                waiting: Waiting::Nothing,
                ..
            }
        );
        if !waited_for || c.close_after_flush {
            return;
        }
        c.deadline = None;
        let idle = matches!(&c.state, ConnState::Http { parser, .. } if parser.is_idle());
        if idle {
            // Keep-alive idling, or a client that connected and said nothing: closed without an answer.
            return self.finish_conn(conn);
        }
        let remote = c.remote;
        c.state = ConnState::Done;
        self.report(conn, remote, "HTTP request not received in time".into());
        let res = Response::new(408).with_header("Connection", "close");
        self.emit(conn, |out| out.response(&res));
        self.finish_conn(conn);
    }

    /// A whole request on a typed connection (`on_connect_typed`), parsed by the caller.
    pub fn on_request(&mut self, conn: ConnId, req: Request, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let idle = matches!(
            c.state,
            ConnState::Http {
                waiting: Waiting::Nothing,
                ..
            }
        );
        if !idle || c.close_after_flush {
            return;
        }
        if req.body.len() > self.config.max_payload {
            return self.http_error(conn, HttpError::PayloadTooLarge);
        }
        c.served = true;
        self.handle_request(conn, req, now);
    }

    /// A message from the peer of a typed connection's WebSocket (after its `Output::Accept`).
    pub fn on_message(&mut self, conn: ConnId, msg: Message, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let ConnState::WebSocket { key, .. } = c.state else {
            return;
        };
        let size = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        if size > self.config.max_payload {
            // As the frame decoder answers a message over the limit on a socket.
            let err = websocket::ProtocolError {
                code: websocket::close_code::MESSAGE_TOO_BIG,
                reason: "message over the size limit",
            };
            return self.websocket_error(conn, key, err, now);
        }
        self.on_websocket_message(conn, key, msg, now);
    }

    pub fn on_bytes(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.state {
            ConnState::Http { parser, waiting } => {
                if !matches!(waiting, Waiting::Nothing) {
                    c.parked_input = c.parked_input.saturating_add(data.len());
                    if c.parked_input > http::DEFAULT_MAX_HEADER_BYTES + self.config.max_payload {
                        let remote = c.remote;
                        self.report(
                            conn,
                            remote,
                            "too much input behind a pending request".into(),
                        );
                        return self.drop_parked(conn, now);
                    }
                }
                parser.feed(data);
                self.process_http(conn, now);
            }
            ConnState::WebSocket { decoder, .. } => {
                decoder.feed(data);
                self.process_websocket(conn, now);
            }
            ConnState::Done => {}
        }
    }

    /// The peer closed the TCP connection, or it failed.
    pub fn on_disconnect(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.state {
            ConnState::Http {
                waiting: Waiting::Poll { key, .. },
                ..
            } => {
                // Node: "poll connection closed prematurely" is a transport error for the session.
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.poll_conn = None;
                }
                self.close_session(key, CloseReason::TransportError, now);
            }
            ConnState::WebSocket { key, .. } => {
                self.on_websocket_gone(key, conn, CloseReason::TransportClose, now)
            }
            ConnState::Http {
                parser,
                waiting: Waiting::Nothing,
            } if !parser.is_idle() => {
                self.report(conn, c.remote, "connection closed inside a request".into());
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.session_timers(key, now);
        }
        while let Some(Reverse((at, conn))) = self.conn_timers.peek().copied() {
            if at > now {
                break;
            }
            self.conn_timers.pop();
            self.conn_timer(conn, at);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let session = self.timers.peek().map(|Reverse((at, _))| *at);
        let conn = self.conn_timers.peek().map(|Reverse((at, _))| *at);
        match (session, conn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- outputs to the driver ----------------------------------------------------------------------------

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Answer parked GETs that have packets, then name the connections with output or a close pending.
    pub fn take_dirty(&mut self, now: Instant, into: &mut Vec<ConnId>) {
        self.flush_polls(now);
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.dirty = false;
                into.push(conn);
            }
        }
    }

    /// True when `conn` is an HTTP connection between requests: nothing buffered, nothing parked.
    pub fn is_idle_http(&self, conn: ConnId) -> bool {
        matches!(
            self.conns.get(&conn).map(|c| (&c.state, c.close_after_flush)),
            Some((ConnState::Http { parser, waiting: Waiting::Nothing }, false)) if parser.is_idle()
        ) && self.conns.get(&conn).is_some_and(|c| c.out.is_empty())
    }

    /// The bytes waiting to be written to `conn`; the driver drains what it wrote.
    pub fn output(&mut self, conn: ConnId) -> Option<&mut Vec<u8>> {
        match &mut self.conns.get_mut(&conn)?.out {
            Out::Wire(bytes) => Some(bytes),
            Out::Typed { .. } => None,
        }
    }

    /// The answers waiting on typed connection `conn`, oldest first.
    pub fn take_outputs(&mut self, conn: ConnId) -> std::collections::VecDeque<Output> {
        (self.conns.get_mut(&conn)).map_or_else(Default::default, |c| c.out.take_outputs())
    }

    /// True when `conn` should be closed once its output is written.
    pub fn should_close(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| c.close_after_flush)
    }

    /// The driver closed `conn` itself (after `should_close`, or because writing failed).
    pub fn forget(&mut self, conn: ConnId, now: Instant) {
        self.on_disconnect(conn, now);
    }

    // ---- the application's calls ------------------------------------------------------------------------

    /// Open sessions: closed ones still waiting to hand their close packet to a GET are not counted.
    pub fn session_count(&self) -> usize {
        self.open_sessions
    }

    pub fn key_of(&self, sid: &str) -> Option<SessionKey> {
        self.sids.get(sid).copied()
    }

    pub fn sid_of(&self, key: SessionKey) -> Option<&Arc<str>> {
        self.sessions.get(&key).map(|s| &s.sid)
    }

    pub fn transport_of(&self, key: SessionKey) -> Option<Transport> {
        self.sessions.get(&key).map(|s| s.transport)
    }

    pub fn request_of(&self, key: SessionKey) -> Option<&Arc<RequestInfo>> {
        self.sessions.get(&key).map(|s| &s.request)
    }

    /// Whether a packet sent now would go out at once (Node's `transport.writable`): a WebSocket whose output is
    /// not backed up, or a long-polling session with a GET parked. Volatile packets skip sessions that are not.
    pub fn is_writable(&self, key: SessionKey) -> bool {
        const BACKED_UP: usize = 64 * 1024;
        let Some(s) = self.sessions.get(&key) else {
            return false;
        };
        if !s.is_open() {
            return false;
        }
        match (s.transport, s.ws_conn, s.poll_conn) {
            (Transport::WebSocket, Some(conn), _) => self
                .conns
                .get(&conn)
                .is_some_and(|c| c.out.len() < BACKED_UP),
            (Transport::Polling, _, Some(_)) => true,
            _ => false,
        }
    }

    pub fn send(&mut self, key: SessionKey, data: Data) -> bool {
        self.send_packet(key, Packet::Message(data))
    }

    /// Send one message to many sessions; the WebSocket frame is built once.
    pub fn broadcast(&mut self, keys: &[SessionKey], data: Data) {
        let packet = Packet::Message(data);
        let mut shared = Shared::new(&packet);
        for key in keys {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            if !s.is_open() {
                continue;
            }
            match (s.transport, s.ws_conn) {
                (Transport::WebSocket, Some(conn)) => {
                    self.emit(conn, |out| out.shared(&mut shared))
                }
                _ => {
                    s.queue.push(packet.clone());
                    if s.poll_conn.is_some() {
                        self.poll_ready.push(*key);
                    }
                }
            }
        }
    }

    /// Server-side close of a session (Node's `socket.close()`): queued packets are delivered first.
    pub fn close(&mut self, key: SessionKey, now: Instant) {
        self.close_session(key, CloseReason::ForcedClose, now);
    }

    /// Close every session and connection, telling clients the server is going away.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<SessionKey> = self.sessions.keys().copied().collect();
        for key in keys {
            self.close_session(key, CloseReason::ServerShuttingDown, now);
            self.remove_session(key, Packet::Close, now);
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.finish_conn(conn);
        }
    }

    pub fn accept_handshake(&mut self, conn: ConnId, sid: Option<String>, now: Instant) {
        let Some(req) = self.unpark(conn, Parked::Handshake) else {
            return;
        };
        self.finish_handshake(conn, &req, sid, now);
        self.process_http(conn, now);
    }

    pub fn refuse_handshake(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: Option<&str>,
        now: Instant,
    ) {
        let Some(req) = self.unpark(conn, Parked::Handshake) else {
            return;
        };
        self.reject(conn, &req, code, code.status(), message);
        self.process_http(conn, now);
    }

    /// Answer a request handed over as `Event::Request`.
    pub fn respond_app(
        &mut self,
        conn: ConnId,
        status: u16,
        headers: &[(String, String)],
        body: Vec<u8>,
        now: Instant,
    ) {
        let Some(req) = self.unpark(conn, Parked::App) else {
            return;
        };
        let mut res = Response::new(status);
        res.headers.extend_from_slice(headers);
        res.body = body;
        self.respond(conn, &req, res);
        self.process_http(conn, now);
    }

    /// The request parked on `conn` as `kind`, taken back: the connection may read its next request again.
    fn unpark(&mut self, conn: ConnId, kind: Parked) -> Option<Box<Request>> {
        let c = self.conns.get_mut(&conn)?;
        let ConnState::Http { waiting, .. } = &mut c.state else {
            return None;
        };
        let parked_as = match waiting {
            Waiting::Nothing => return None,
            Waiting::Poll { .. } => Parked::Poll,
            Waiting::Handshake(_) => Parked::Handshake,
            Waiting::App(_) => Parked::App,
        };
        if parked_as != kind {
            return None;
        }
        c.parked_input = 0;
        match std::mem::replace(waiting, Waiting::Nothing) {
            Waiting::Poll { req, .. } | Waiting::Handshake(req) | Waiting::App(req) => Some(req),
            Waiting::Nothing => None,
        }
    }

    /// A parked connection misbehaved: close it, and the session whose GET it was holding.
    fn drop_parked(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnState::Http {
            waiting: Waiting::Poll { key, .. },
            ..
        } = std::mem::replace(&mut c.state, ConnState::Done)
        {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.poll_conn = None;
            }
            self.close_session(key, CloseReason::TransportError, now);
        }
        self.finish_conn(conn);
    }
}
