//! Connections and HTTP timing: what the engine knows of each connection, and the HTTP/1.1 rules that hold
//! whatever the request (keep-alive, pipelining, Node's headersTimeout and keepAliveTimeout, bounded input).
//!
//! ```text
//! connection  Http ─(GET with Upgrade: websocket, answered 101)─► WebSocket ─► gone
//!             Http parks (Waiting) while a long-polling GET waits for data, while the application decides a
//!             handshake, or while it answers a request outside the Engine.IO path
//! timing      a request must arrive whole within request_timeout of its first byte (408); an idle keep-alive
//!             connection is closed after keep_alive_timeout; a parked request is never timed out
//! ```
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use super::engine::Engine;
use super::output::Out;
use super::session::CloseReason;
use super::CorsOrigin;
use crate::http::{self, HttpError, Request, RequestParser, Response};
use crate::ids::{ConnId, SessionKey};
use crate::websocket;

pub(super) enum Waiting {
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
pub(super) enum Parked {
    Poll,
    Handshake,
    App,
}

pub(super) enum ConnState {
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

pub(super) struct Conn {
    pub(super) remote: Option<SocketAddr>,
    pub(super) state: ConnState,
    pub(super) out: Out,
    pub(super) dirty: bool,
    pub(super) close_after_flush: bool,
    /// Bytes received while a request is parked: the parser only bounds what it parses, so this bounds the rest.
    pub(super) parked_input: usize,
    /// When this HTTP connection, neither parked nor answered, stops being waited for (see `conn_timers`).
    pub(super) deadline: Option<Instant>,
    /// The earliest entry this connection has in `conn_timers`. Later deadlines only move `deadline`: the entry,
    /// when it fires, re-queues itself, so a busy keep-alive connection keeps one entry, not one per request.
    pub(super) queued: Option<Instant>,
    /// When the first byte of the request being received arrived.
    pub(super) request_started: Option<Instant>,
    /// Whether a request was answered on it: then waiting between requests is keep-alive idling.
    pub(super) served: bool,
}

impl Engine {
    // ---- connections opening and closing ---------------------------------------------------------------------

    pub fn on_connect(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Out::Wire(Vec::new()));
    }

    /// A connection whose requests and WebSocket messages arrive parsed (`on_request`, `on_message`) and whose
    /// answers are taken as values (`take_outputs`): the ASGI driver's.
    pub fn on_connect_typed(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Out::typed());
    }

    pub(super) fn insert_conn(&mut self, conn: ConnId, remote: Option<SocketAddr>, out: Out) {
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

    /// Close `conn` once what is buffered for it is written.
    pub(super) fn finish_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.close_after_flush = true;
            c.state = ConnState::Done;
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    /// A parked connection misbehaved: close it, and the session whose GET it was holding.
    pub(super) fn drop_parked(&mut self, conn: ConnId, now: Instant) {
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

    // ---- input --------------------------------------------------------------------------------------------

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

    pub(super) fn process_http(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let ConnState::Http { parser, waiting } = &mut c.state else {
                return;
            };
            // A typed connection's requests come whole through `on_request`: nothing to parse, no timers.
            if !matches!(waiting, Waiting::Nothing) || c.close_after_flush || c.out.is_typed() {
                return;
            }
            c.parked_input = 0;
            match parser.next_request() {
                Ok(None) => {
                    // As Node does by default; curl otherwise waits a second before sending a large body.
                    let expect_continue = parser.take_expect_continue();
                    let deadline = if !parser.is_idle() {
                        let started = *c.request_started.get_or_insert(now);
                        Some(started + self.config.request_timeout)
                    } else if c.served {
                        Some(now + self.config.keep_alive_timeout)
                    } else {
                        None // a fresh connection: its connect-time deadline stands
                    };
                    if expect_continue {
                        self.emit(conn, |out| out.wire_only(b"HTTP/1.1 100 Continue\r\n\r\n"));
                    }
                    if let Some(at) = deadline {
                        self.set_conn_deadline(conn, at);
                    }
                    return;
                }
                Ok(Some(req)) => {
                    c.request_started = None;
                    c.served = true;
                    self.handle_request(conn, req, now)
                }
                Err(err) => return self.http_error(conn, err),
            }
        }
    }

    /// A request that cannot be served: its status, then close.
    pub(super) fn http_error(&mut self, conn: ConnId, err: HttpError) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let remote = c.remote;
        c.state = ConnState::Done;
        let msg = match err {
            HttpError::BadRequest(why) => format!("bad HTTP request: {why}"),
            HttpError::HeadersTooLarge => "HTTP headers too large".into(),
            HttpError::PayloadTooLarge => "HTTP body over max_payload".into(),
        };
        self.report(conn, remote, msg);
        let res = Response::new(err.status()).with_header("Connection", "close");
        self.emit(conn, |out| out.response(&res));
        self.finish_conn(conn);
    }

    /// The request parked on `conn` as `kind`, taken back: the connection may read its next request again.
    pub(super) fn unpark(&mut self, conn: ConnId, kind: Parked) -> Option<Box<Request>> {
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

    // ---- output -------------------------------------------------------------------------------------------

    /// Add an answer to `conn`'s output and name the connection to the driver. A peer that does not read is
    /// dropped rather than allowed to grow our memory without bound.
    pub(super) fn emit(&mut self, conn: ConnId, write: impl FnOnce(&mut Out)) {
        let max = self.config.max_buffered;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut overflow = false;
        if !c.close_after_flush {
            write(&mut c.out);
            if c.out.len() > max {
                overflow = true;
                c.close_after_flush = true;
                c.out.clear();
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
        if overflow {
            let remote = c.remote;
            self.report(conn, remote, "output buffer full: peer too slow".into());
        }
    }

    pub(super) fn respond(&mut self, conn: ConnId, req: &Request, res: Response) {
        let mut res = self.cors_headers(req, res);
        let keep = req.keep_alive();
        if !keep {
            res = res.with_header("Connection", "close");
        }
        self.emit(conn, |out| out.response(&res));
        if !keep {
            self.finish_conn(conn);
        }
    }

    pub(super) fn cors_headers(&self, req: &Request, mut res: Response) -> Response {
        let Some(cors) = &self.config.cors else {
            return res;
        };
        let origin = req.header("origin");
        match (&cors.origin, origin) {
            (CorsOrigin::Any, _) if !cors.credentials => {
                res = res.with_header("Access-Control-Allow-Origin", "*");
            }
            (CorsOrigin::Any, Some(o)) => {
                res = res
                    .with_header("Access-Control-Allow-Origin", o)
                    .with_header("Vary", "Origin");
            }
            (CorsOrigin::List(list), Some(o)) if list.iter().any(|a| a == o) => {
                res = res
                    .with_header("Access-Control-Allow-Origin", o)
                    .with_header("Vary", "Origin");
            }
            _ => res = res.with_header("Vary", "Origin"),
        }
        if cors.credentials {
            res = res.with_header("Access-Control-Allow-Credentials", "true");
        }
        res
    }

    // ---- HTTP timing --------------------------------------------------------------------------------------

    pub(super) fn set_conn_deadline(&mut self, conn: ConnId, at: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.deadline = Some(at);
            if c.queued.is_none_or(|q| at < q) {
                c.queued = Some(at);
                self.conn_timers.push(Reverse((at, conn)));
            }
        }
    }

    /// An HTTP connection's deadline passed: close it if it is still waited for (not parked, not answered).
    pub(super) fn conn_timer(&mut self, conn: ConnId, at: Instant) {
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
}
