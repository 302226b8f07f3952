//! Connections as the engine sees them: each carries one exchange at a time (a request and its answer, or a
//! WebSocket), whatever reads its bytes (the mio driver's connection layer, `driver::wire`) or hands over its
//! requests as values (the ASGI driver).
//!
//! ```text
//! connection  Http ─(GET with Upgrade: websocket, answered 101)─► WebSocket ─► gone
//!             Http parks (Waiting) while a long-polling GET waits for data, while the application decides a
//!             handshake, or while it answers a request outside the Engine.IO path; answering a parked request
//!             names the connection in `take_resumed`, so requests pipelined behind it are read
//!             Done: answered, or closed by the engine; its output is flushed, then the connection closed
//! ```
use std::net::SocketAddr;
use std::time::Instant;

use super::answer::Answers;
use super::engine::Engine;
use super::session::CloseReason;
use super::CorsOrigin;
use crate::http::{HttpError, Request, Response};
use crate::ids::{ConnId, SessionKey};
use crate::metrics::BadInput;
use crate::permessage_deflate::Params;

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
        waiting: Waiting,
    },
    WebSocket {
        key: SessionKey,
        /// permessage-deflate's parameters, when negotiated.
        deflate: Option<Params>,
    },
    /// Answered and waiting to be flushed and closed.
    Done,
}

/// What a connection's reader may do next (see `Engine::phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The engine takes the next request (unless `should_close`).
    Reading,
    /// A request is parked: the next one waits behind it.
    Parked,
    /// The connection carries WebSocket messages.
    WebSocket,
    /// Nothing more is read.
    Done,
}

/// How a connection's requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    /// A connection layer reads them from bytes, and may hold some pipelined behind a parked one.
    Bytes,
    /// Whole, as values (an ASGI server's), one per connection.
    Values,
}

pub(super) struct Conn {
    pub(super) remote: Option<SocketAddr>,
    pub(super) state: ConnState,
    pub(super) feed: Feed,
    pub(super) out: Answers,
    /// Listed in `Engine::dirty`.
    pub(super) dirty: bool,
    /// Close once the output is written: answered with `Connection: close`, finished, or too slow a reader.
    pub(super) close_after_flush: bool,
}

impl Engine {
    // ---- connections opening and closing ---------------------------------------------------------------------

    /// A connection whose bytes a connection layer reads (the socket driver's, `driver::wire`).
    pub fn on_connect(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Feed::Bytes);
    }

    /// A connection whose requests arrive whole, as values: the ASGI driver's.
    pub fn on_connect_typed(&mut self, conn: ConnId, remote: Option<SocketAddr>) {
        self.insert_conn(conn, remote, Feed::Values);
    }

    fn insert_conn(&mut self, conn: ConnId, remote: Option<SocketAddr>, feed: Feed) {
        let state = ConnState::Http {
            waiting: Waiting::Nothing,
        };
        let c = Conn {
            remote,
            state,
            feed,
            out: Answers::default(),
            dirty: false,
            close_after_flush: false,
        };
        self.conns.insert(conn, c);
    }

    /// The peer closed the connection, or it failed.
    pub fn on_disconnect(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.state {
            ConnState::Http {
                waiting: Waiting::Poll { key, .. },
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

    /// A parked connection misbehaved (sent too much behind its pending request): close it, and the session
    /// whose GET it was holding.
    pub fn drop_parked(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let remote = c.remote;
        self.counters.bad(BadInput::Http);
        self.report(
            Some(conn),
            remote,
            "too much input behind a pending request".into(),
        );
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnState::Http {
            waiting: Waiting::Poll { key, .. },
        } = std::mem::replace(&mut c.state, ConnState::Done)
        {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.poll_conn = None;
            }
            self.close_session(key, CloseReason::TransportError, now);
        }
        self.finish_conn(conn);
    }

    /// What `conn`'s reader may do next; None for a connection the engine does not know.
    pub fn phase(&self, conn: ConnId) -> Option<Phase> {
        Some(match &self.conns.get(&conn)?.state {
            ConnState::Http {
                waiting: Waiting::Nothing,
            } => Phase::Reading,
            ConnState::Http { .. } => Phase::Parked,
            ConnState::WebSocket { .. } => Phase::WebSocket,
            ConnState::Done => Phase::Done,
        })
    }

    // ---- requests -----------------------------------------------------------------------------------------

    /// A whole request on `conn`, parsed by the caller (the connection layer, or the ASGI server).
    pub fn on_request(&mut self, conn: ConnId, req: Request, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let reading = matches!(
            c.state,
            ConnState::Http {
                waiting: Waiting::Nothing
            }
        );
        if !reading || c.close_after_flush {
            return;
        }
        if req.body.len() > self.config.max_payload {
            return self.http_error(conn, HttpError::PayloadTooLarge);
        }
        self.handle_request(conn, req, now);
    }

    /// A request that cannot be served: its status, then close.
    pub fn http_error(&mut self, conn: ConnId, err: HttpError) {
        let msg = match err {
            HttpError::BadRequest(why) => format!("bad HTTP request: {why}"),
            HttpError::HeadersTooLarge => "HTTP headers too large".into(),
            HttpError::PayloadTooLarge => "HTTP body over max_payload".into(),
        };
        self.fail_request(conn, err.status(), msg);
    }

    /// Node's headersTimeout: a request did not arrive whole in time (408, then close).
    pub fn request_timed_out(&mut self, conn: ConnId) {
        self.fail_request(conn, 408, "HTTP request not received in time".into());
    }

    fn fail_request(&mut self, conn: ConnId, status: u16, why: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let remote = c.remote;
        c.state = ConnState::Done;
        self.counters.bad(BadInput::Http);
        self.report(Some(conn), remote, why);
        let res = Response::new(status).with_header("Connection", "close");
        self.emit(conn, |out| out.response(res));
        self.finish_conn(conn);
    }

    /// A connection with nothing to answer is closed: keep-alive idling, or a client that said nothing.
    pub fn close_idle(&mut self, conn: ConnId) {
        self.finish_conn(conn);
    }

    /// "HTTP/1.1 100 Continue", for a request whose head asked for it (curl otherwise waits a second before
    /// sending a large body).
    pub fn continue_100(&mut self, conn: ConnId) {
        self.emit(conn, Answers::continue_100);
    }

    /// The request parked on `conn` as `kind`, taken back: the connection may read its next request again.
    pub(super) fn unpark(&mut self, conn: ConnId, kind: Parked) -> Option<Box<Request>> {
        let c = self.conns.get_mut(&conn)?;
        let ConnState::Http { waiting } = &mut c.state else {
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
        if c.feed == Feed::Bytes {
            // Its reader may hold requests pipelined behind this one.
            self.resumed.push(conn);
        }
        match std::mem::replace(waiting, Waiting::Nothing) {
            Waiting::Poll { req, .. } | Waiting::Handshake(req) | Waiting::App(req) => Some(req),
            Waiting::Nothing => None,
        }
    }

    // ---- output -------------------------------------------------------------------------------------------

    /// Add an answer to `conn`'s output and name the connection to the driver. A peer that does not read is
    /// dropped rather than allowed to grow our memory without bound.
    pub(super) fn emit(&mut self, conn: ConnId, write: impl FnOnce(&mut Answers)) {
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
                c.out.abandon();
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
        if overflow {
            self.counters.slow_consumers += 1;
            let remote = c.remote;
            self.report(
                Some(conn),
                remote,
                "output buffer full: peer too slow".into(),
            );
        }
    }

    pub(super) fn respond(&mut self, conn: ConnId, req: &Request, res: Response) {
        let mut res = self.cors_headers(req, res);
        let keep = req.keep_alive();
        if !keep {
            res = res.with_header("Connection", "close");
        }
        self.emit(conn, |out| out.response(res));
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
}

#[cfg(test)]
mod tests {
    /// One per connection in the engine's table: a parked request and the answers' queue stay behind
    /// pointers, allocated only while there are some.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_is_small() {
        assert!(std::mem::size_of::<super::Conn>() <= 112);
        assert!(std::mem::size_of::<super::ConnState>() <= 24);
    }
}
