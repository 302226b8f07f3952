//! The Engine.IO server: its tables and timers, the calls its driver makes to run it, and the application's calls.
//! The parts of the state machine are the sibling modules: `conn` (connections), `requests` (routing and
//! handshakes), `polling`, `websocket` and `session`; `answer` is what it answers.
//!
//! Every input (`on_request`, `on_message`, `on_disconnect`, `handle_timeout` and the application's calls) leaves
//! its results in `events` and in per-connection answers; `take_dirty` names the connections with something to
//! write or to close. A broadcast builds its packet once and shares it with all its targets, and each connection
//! is written once per batch whatever the number of packets.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::admission::Admission;
use super::answer::Answer;
use super::conn::{Conn, ConnState, Parked, Waiting};
use super::packet::{Data, Packet};
use super::session::{ws_packet, Carrier, CloseReason, Session, Transport};
use super::{Config, ErrorCode, Event, HeadersHook, Protocol};
use crate::http::{Request, Response};
use crate::ids::{ConnId, IdMap, SessionKey};
use crate::metrics::{BadInput, EngineCounters};

pub struct Engine {
    pub config: Config,
    pub(super) conns: IdMap<ConnId, Conn>,
    pub(super) sessions: IdMap<SessionKey, Session>,
    pub(super) sids: HashMap<Arc<str>, SessionKey>,
    pub(super) next_key: SessionKey,
    /// Sessions not yet closed (`sids` also holds polling sessions waiting to deliver their close packet).
    pub(super) open_sessions: usize,
    pub(super) timers: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    pub(super) events: VecDeque<Event>,
    pub(super) dirty: Vec<ConnId>,
    /// Polling sessions that got packets while a GET is parked: answered once per batch in `flush_polls`.
    pub(super) poll_ready: Vec<SessionKey>,
    /// Connections whose parked request was answered: requests pipelined behind it can be read now.
    pub(super) resumed: Vec<ConnId>,
    headers_hook: Option<HeadersHook>,
    /// The rate limit on new sessions per address (`Config::connection_rate`); boxed: off, one pointer.
    pub(super) admission: Option<Box<Admission>>,
    /// What `/metrics` reports (crate::metrics).
    pub counters: EngineCounters,
    /// Whether the packets sent now may be compressed (Node's `compress` flag, true unless an emit says
    /// `compress(false)`): set around one send or broadcast by `with_compress`.
    pub(super) compress: bool,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let admission =
            (config.connection_rate).map(|(rate, burst)| Box::new(Admission::new(rate, burst)));
        Engine {
            admission,
            config,
            conns: IdMap::default(),
            sessions: IdMap::default(),
            sids: HashMap::new(),
            next_key: SessionKey(1),
            open_sessions: 0,
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            poll_ready: Vec::new(),
            resumed: Vec::new(),
            headers_hook: None,
            counters: EngineCounters::default(),
            compress: true,
        }
    }

    /// Run `send` (sends and broadcasts to this engine) with Node's `compress` flag: false leaves what it sends
    /// uncompressed, on a WebSocket with permessage-deflate and in a long-polling response alike (unless other
    /// packets in that response may be compressed, as in Node).
    pub fn with_compress<R>(&mut self, compress: bool, send: impl FnOnce(&mut Engine) -> R) -> R {
        self.compress = compress;
        let result = send(self);
        self.compress = true;
        result
    }

    // ---- time ------------------------------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.session_timers(key, now);
        }
    }

    /// When `handle_timeout` next has a session timer to run (HTTP timing is the connection layer's).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ---- outputs to the driver ----------------------------------------------------------------------------

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Answer parked GETs that have packets, then name the connections with output or a close pending.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        self.flush_polls();
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.dirty = false;
                into.push(conn);
            }
        }
    }

    /// True when `conn` waits for its next request with nothing parked, nothing to write and no close pending.
    pub fn is_between_requests(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            let reading = matches!(
                c.state,
                ConnState::Http {
                    waiting: Waiting::Nothing
                }
            );
            reading && !c.close_after_flush && c.out.is_empty()
        })
    }

    /// Connections whose parked request was answered since the last call: their readers go on with the
    /// requests pipelined behind it.
    pub fn take_resumed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.resumed)
    }

    pub fn has_resumed(&self) -> bool {
        !self.resumed.is_empty()
    }

    /// The answers on `conn` since the last call, oldest first.
    pub fn take_answers(&mut self, conn: ConnId) -> VecDeque<Answer> {
        (self.conns.get_mut(&conn)).map_or_else(VecDeque::new, |c| c.out.take())
    }

    /// `take_answers` for a driver that handles each at once (the connection layer writes them as bytes).
    pub fn drain_answers(&mut self, conn: ConnId, f: impl FnMut(Answer)) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.drain(f);
        }
    }

    /// How many bytes of `conn`'s answers its driver has not written yet: they count against the peer
    /// (`is_writable`, `Config::max_buffered`).
    pub fn set_backlog(&mut self, conn: ConnId, unwritten: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.unwritten = unwritten;
        }
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

    /// The Engine.IO revision `key` speaks.
    pub fn protocol_of(&self, key: SessionKey) -> Option<Protocol> {
        self.sessions.get(&key).map(|s| s.protocol)
    }

    pub fn transport_of(&self, key: SessionKey) -> Option<Transport> {
        self.sessions.get(&key).map(Session::transport)
    }

    /// The peer's address, as the session's handshake came from it.
    pub fn remote_of(&self, key: SessionKey) -> Option<SocketAddr> {
        self.sessions.get(&key).and_then(|s| s.remote)
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
        match (s.carrier, s.poll_conn) {
            (Carrier::WebSocket { conn }, _) => {
                (self.conns.get(&conn)).is_some_and(|c| c.out.len() < BACKED_UP)
            }
            (Carrier::Polling { .. }, poll) => poll.is_some(),
        }
    }

    /// Bytes waiting for the peer of session `key` (the browser's WebSocket `bufferedAmount`, seen from the
    /// server): a WebSocket's output not yet written to its socket, or the payload waiting for a polling
    /// client's next GET. What the kernel's socket buffer holds is not counted. None for no open session.
    pub fn buffered_amount(&self, key: SessionKey) -> Option<usize> {
        let s = self.sessions.get(&key).filter(|s| s.is_open())?;
        let out = match s.carrier {
            Carrier::WebSocket { conn } => self.conns.get(&conn).map_or(0, |c| c.out.len()),
            Carrier::Polling { .. } => 0,
        };
        Some(out + s.queue.len())
    }

    /// Open sessions by their transport now: [polling, websocket].
    pub fn sessions_by_transport(&self) -> [usize; 2] {
        let mut by = [0; 2];
        for s in self.sessions.values().filter(|s| s.is_open()) {
            by[usize::from(s.transport() == Transport::WebSocket)] += 1;
        }
        by
    }

    pub fn send(&mut self, key: SessionKey, data: Data) -> bool {
        let len = data.len() as u64;
        let sent = self.send_packet(key, Packet::Message(data));
        if sent {
            self.counters.packets_out += 1;
            self.counters.bytes_out += len;
        }
        sent
    }

    /// Send one message to many sessions; the packet is built once and shared.
    pub fn broadcast(&mut self, keys: &[SessionKey], data: Data) {
        let len = data.len() as u64;
        let packet = Arc::new(Packet::Message(data));
        for key in keys {
            let Some(s) = self.sessions.get(key) else {
                continue;
            };
            if !s.is_open() {
                continue;
            }
            self.counters.packets_out += 1;
            self.counters.bytes_out += len;
            let compress = self.compress;
            match (s.carrier, s.protocol) {
                (Carrier::WebSocket { conn }, Protocol::V4) if compress => {
                    self.emit(conn, |out| out.shared(&packet))
                }
                (Carrier::WebSocket { conn }, Protocol::V4) => {
                    self.emit(conn, |out| out.plain(&packet))
                }
                (Carrier::WebSocket { conn }, protocol) => {
                    self.emit(conn, |out| ws_packet(out, protocol, Packet::clone(&packet)))
                }
                (Carrier::Polling { .. }, _) => {
                    _ = self.queue_for_poll(*key, Packet::clone(&packet))
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
            self.remove_session(key, Packet::Close);
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
    }

    pub fn refuse_handshake(&mut self, conn: ConnId, code: ErrorCode, message: Option<&str>) {
        let Some(req) = self.unpark(conn, Parked::Handshake) else {
            return;
        };
        self.connection_error(conn, &req, code, message);
        self.reject(conn, &req, code, code.status(), message);
    }

    /// Let the application add or change the headers of the responses that carry a session (`HeadersHook`).
    pub fn set_headers_hook(&mut self, hook: Option<HeadersHook>) {
        self.headers_hook = hook;
    }

    /// The application's headers on `res`, a response that carries a session: the hook is offered the session
    /// cookie, and the headers it leaves replace those of the same names.
    pub(super) fn app_headers(&mut self, conn: ConnId, req: &Request, res: &mut Response) {
        if self.headers_hook.is_none() {
            return;
        }
        let info = self.request_info(conn, req);
        // Node's test: a request without a sid opens a session.
        let initial = req.query_param("sid").is_none();
        let (mut offered, mut kept): (Vec<_>, Vec<_>) = std::mem::take(&mut res.headers)
            .into_iter()
            .partition(|(name, _)| name.eq_ignore_ascii_case("set-cookie"));
        if let Some(hook) = &self.headers_hook {
            hook(initial, &info, &mut offered);
        }
        kept.retain(|(k, _)| !offered.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)));
        kept.extend(offered);
        res.headers = kept;
    }

    /// Answer a request handed over as `Event::Request`.
    pub fn respond_app(
        &mut self,
        conn: ConnId,
        status: u16,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) {
        let Some(req) = self.unpark(conn, Parked::App) else {
            return;
        };
        let mut res = Response::new(status);
        res.headers.extend_from_slice(headers);
        res.body = body;
        self.respond(conn, &req, res);
    }

    // ---- bad input ----------------------------------------------------------------------------------------

    /// `conn` is None for a session's fault that no connection carries (a polling queue over its bound).
    pub(crate) fn report(
        &mut self,
        conn: Option<ConnId>,
        remote: Option<SocketAddr>,
        message: String,
    ) {
        self.events.push_back(Event::ProtocolError {
            conn,
            remote,
            message,
        });
    }

    /// A request refused with one of Node's errors: one `ConnectionError` (Node's `connection_error`).
    pub(super) fn connection_error(
        &mut self,
        conn: ConnId,
        req: &Request,
        code: ErrorCode,
        detail: Option<&str>,
    ) {
        self.counters.bad(BadInput::ConnectionError);
        let request = Arc::new(self.request_info(conn, req));
        self.events.push_back(Event::ConnectionError {
            conn,
            code,
            detail: detail.map(str::to_owned),
            request,
        });
    }

    /// One `ProtocolError` per bad input, so the application logs each once; counted by `kind`.
    pub fn report_bad_input(&mut self, conn: ConnId, kind: BadInput, message: String) {
        self.counters.bad(kind);
        let remote = self.conns.get(&conn).and_then(|c| c.remote);
        self.report(Some(conn), remote, message);
    }
}
