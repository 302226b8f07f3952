//! The half of `Engine` that answers HTTP requests: routing, CORS, Node's error responses, handshakes on
//! either transport, long-polling GETs and POSTs, and WebSocket upgrades.
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{error_response, generate_sid, ConnState, Engine, Waiting};
use crate::engineio::packet::{self, Packet};
use crate::engineio::session::{
    CloseReason, ConnId, ReadyState, Session, SessionKey, Transport, Upgrade,
};
use crate::engineio::{CorsOrigin, ErrorCode, Event, RequestInfo};
use crate::http::{HttpError, Method, Request, Response};
use crate::websocket;

impl Engine {
    // ---- HTTP ----------------------------------------------------------------------------------------------

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

    pub(super) fn report(&mut self, conn: ConnId, remote: Option<SocketAddr>, message: String) {
        self.events.push_back(Event::ProtocolError {
            conn,
            remote,
            message,
        });
    }

    /// One `ProtocolError` per bad input, so the application logs each once.
    pub(super) fn report_bad_input(&mut self, conn: ConnId, message: String) {
        let remote = self.conns.get(&conn).and_then(|c| c.remote);
        self.report(conn, remote, message);
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

    pub(super) fn handle_request(&mut self, conn: ConnId, req: Request, now: Instant) {
        if !req.path.starts_with(&self.config.path) {
            if self.config.serve_other_paths {
                let info = Arc::new(self.request_info(conn, &req));
                let mut req = req;
                let body = std::mem::take(&mut req.body);
                if let Some(ConnState::Http { waiting, .. }) =
                    self.conns.get_mut(&conn).map(|c| &mut c.state)
                {
                    *waiting = Waiting::App(Box::new(req));
                }
                self.events.push_back(Event::Request {
                    conn,
                    request: info,
                    body,
                });
                return;
            }
            self.report_bad_input(conn, format!("no Engine.IO endpoint at {:?}", req.path));
            let res = Response::new(404).with_body("text/plain", b"Not Found".to_vec());
            return self.respond(conn, &req, res);
        }
        if req.method == Method::Options && self.config.cors.is_some() {
            let mut res = Response::new(204).with_header(
                "Access-Control-Allow-Methods",
                "GET,HEAD,PUT,PATCH,POST,DELETE",
            );
            if let Some(h) = req.header("access-control-request-headers") {
                res = res
                    .with_header("Access-Control-Allow-Headers", h)
                    .with_header("Vary", "Access-Control-Request-Headers");
            }
            return self.respond(conn, &req, res.with_header("Content-Length", "0"));
        }
        let transport = req
            .query_param("transport")
            .and_then(|t| Transport::from_name(&t))
            .filter(|t| self.config.handles_transport(*t));
        let Some(transport) = transport else {
            return self.refuse(conn, &req, ErrorCode::UnknownTransport);
        };
        match req.query_param("sid") {
            None => self.handshake(conn, req, transport, now),
            Some(sid) => match self.sids.get(sid.as_str()).copied() {
                None => self.refuse(conn, &req, ErrorCode::UnknownSid),
                Some(key) => self.session_request(conn, req, key, transport, now),
            },
        }
    }

    pub(super) fn refuse(&mut self, conn: ConnId, req: &Request, code: ErrorCode) {
        self.report_bad_input(conn, format!("refused: {}", code.message()));
        self.reject(conn, req, code, code.status(), None);
    }

    /// Answer a request with one of Node's errors: JSON for HTTP; for a WebSocket handshake, Node's
    /// `abortUpgrade` (400, the message as text/html, then close), as no HTTP response object exists there.
    pub(super) fn reject(
        &mut self,
        conn: ConnId,
        req: &Request,
        code: ErrorCode,
        status: u16,
        message: Option<&str>,
    ) {
        let message = message.unwrap_or(code.message());
        if req.is_websocket_upgrade() {
            let status = if status == 403 { 400 } else { status };
            return self.abort_upgrade(conn, status, message);
        }
        let mut res = error_response(code, Some(message));
        res.status = status;
        self.respond(conn, req, res);
    }

    pub(super) fn abort_upgrade(&mut self, conn: ConnId, status: u16, message: &str) {
        let res = Response::new(status)
            .with_header("Connection", "close")
            .with_body("text/html", message.as_bytes().to_vec());
        self.emit(conn, |out| out.response(&res));
        self.finish_conn(conn);
    }

    /// Node accepts a WebSocket it cannot use, then closes it (the spec: "the server MUST close the WebSocket
    /// connection").
    pub(super) fn accept_and_close_websocket(&mut self, conn: ConnId, req: &Request, why: &str) {
        if self.answer_websocket_handshake(conn, req, None) {
            self.report_bad_input(conn, format!("WebSocket closed at once: {why}"));
            self.close_websocket(conn, None);
        }
    }

    pub(super) fn handshake(
        &mut self,
        conn: ConnId,
        req: Request,
        transport: Transport,
        now: Instant,
    ) {
        if req.method != Method::Get {
            return self.refuse(conn, &req, ErrorCode::BadHandshakeMethod);
        }
        let upgrade = req.is_websocket_upgrade();
        if transport == Transport::WebSocket && !upgrade {
            return self.refuse(conn, &req, ErrorCode::BadRequest);
        }
        if transport == Transport::Polling && upgrade {
            return self.accept_and_close_websocket(
                conn,
                &req,
                "it asked for the polling transport",
            );
        }
        if let Some(max) = self.config.max_connections {
            if self.open_sessions >= max {
                self.report_bad_input(conn, "refused: connection limit reached".into());
                let message = Some("Connection limit reached");
                return self.reject(conn, &req, ErrorCode::Forbidden, 503, message);
            }
        }
        if self.config.defer_handshakes {
            let info = self.request_info(conn, &req);
            if let Some(ConnState::Http { waiting, .. }) =
                self.conns.get_mut(&conn).map(|c| &mut c.state)
            {
                *waiting = Waiting::Handshake(Box::new(req));
            }
            self.events.push_back(Event::Handshake {
                conn,
                request: Arc::new(info),
            });
            return;
        }
        self.finish_handshake(conn, &req, None, now);
    }

    /// Node checks the protocol version after the application's allowRequest, so this comes last.
    pub(super) fn finish_handshake(
        &mut self,
        conn: ConnId,
        req: &Request,
        sid: Option<String>,
        now: Instant,
    ) {
        if req.query_param("EIO").as_deref() != Some("4") {
            return self.refuse(conn, req, ErrorCode::UnsupportedProtocolVersion);
        }
        self.open_session(conn, req, sid, now);
    }

    pub(super) fn request_info(&self, conn: ConnId, req: &Request) -> RequestInfo {
        RequestInfo {
            method: req.method.as_str().to_owned(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            remote: self.conns.get(&conn).and_then(|c| c.remote),
        }
    }

    pub(super) fn open_session(
        &mut self,
        conn: ConnId,
        req: &Request,
        sid: Option<String>,
        now: Instant,
    ) {
        // `handshake` has checked that the transport asked for is the one the request can carry.
        let transport = if req.is_websocket_upgrade() {
            Transport::WebSocket
        } else {
            Transport::Polling
        };
        let sid = sid.unwrap_or_else(|| generate_sid(&self.config.sid_prefix));
        if self.sids.contains_key(sid.as_str()) {
            return self.refuse(conn, req, ErrorCode::BadRequest);
        }
        let sid: Arc<str> = sid.into();
        let upgrades = if transport == Transport::Polling
            && self.config.allow_upgrades
            && self.config.websocket
        {
            r#"["websocket"]"#
        } else {
            "[]"
        };
        // Written by hand to keep Node's key order, which some clients' tests compare as text.
        let open = format!(
            r#"{{"sid":{},"upgrades":{},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            serde_json::Value::from(&*sid),
            upgrades,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        );
        let open = Packet::Open(open);
        let cookie = self.config.cookie.as_ref().map(|c| {
            let mut v = format!("{}={}; Path={}", c.name, sid, c.path);
            if c.http_only {
                v.push_str("; HttpOnly");
            }
            if let Some(s) = &c.same_site {
                v.push_str("; SameSite=");
                v.push_str(s);
            }
            v
        });
        let key = self.next_key;
        self.next_key = key.next();
        let info = Arc::new(self.request_info(conn, req));
        let mut session = Session::new(
            sid.clone(),
            transport,
            info.clone(),
            now + self.config.ping_interval,
        );
        match transport {
            Transport::Polling => {
                let mut body = Vec::new();
                open.encode_text(&mut body);
                let mut res = Response::new(200).with_body("text/plain; charset=UTF-8", body);
                if let Some(c) = cookie {
                    res = res.with_header("Set-Cookie", &c);
                }
                self.respond(conn, req, res);
            }
            Transport::WebSocket => {
                if !self.answer_websocket_handshake(conn, req, cookie.as_deref()) {
                    return;
                }
                self.become_websocket(conn, key);
                session.ws_conn = Some(conn);
                self.emit(conn, |out| out.packet(&open));
            }
        }
        self.sids.insert(sid.clone(), key);
        self.open_sessions += 1;
        self.timers
            .push(Reverse((now + self.config.ping_interval, key)));
        self.sessions.insert(key, session);
        self.events.push_back(Event::Open {
            key,
            sid,
            transport,
            request: info,
        });
        if transport == Transport::WebSocket {
            // Frames the client pipelined behind its handshake.
            self.process_websocket(conn, now);
        }
    }

    /// Answer a WebSocket opening handshake with 101; false (after ws's 400 and a close) when it is not a
    /// valid one. Like Node's ws, versions 13 and 8 (same framing) are accepted.
    pub(super) fn answer_websocket_handshake(
        &mut self,
        conn: ConnId,
        req: &Request,
        cookie: Option<&str>,
    ) -> bool {
        let client_key = req.header("sec-websocket-key").unwrap_or("");
        let refusal = if !websocket::is_valid_key(client_key) {
            "Missing or invalid Sec-WebSocket-Key header"
        } else if !matches!(req.header("sec-websocket-version"), Some("13" | "8")) {
            "Missing or invalid Sec-WebSocket-Version header"
        } else {
            ""
        };
        if !refusal.is_empty() {
            self.report_bad_input(conn, format!("WebSocket handshake: {refusal}"));
            self.abort_upgrade(conn, 400, refusal);
            return false;
        }
        let mut res = Response::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Accept", &websocket::accept_key(client_key));
        if let Some(c) = cookie {
            res = res.with_header("Set-Cookie", c);
        }
        // Node's 101 carries the CORS headers too.
        let res = self.cors_headers(req, res);
        self.emit(conn, |out| out.accept(&res));
        true
    }

    /// `conn` carries WebSocket frames for session `key` from now on; bytes that came after the handshake
    /// are its first frames.
    pub(super) fn become_websocket(&mut self, conn: ConnId, key: SessionKey) {
        let max = self.config.max_payload;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let leftover = match &mut c.state {
            ConnState::Http { parser, .. } => parser.take_buffered(),
            _ => Vec::new(),
        };
        let mut decoder = websocket::Decoder::new(max);
        decoder.feed(&leftover);
        c.state = ConnState::WebSocket { decoder, key };
    }

    pub(super) fn session_request(
        &mut self,
        conn: ConnId,
        req: Request,
        key: SessionKey,
        transport: Transport,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get(&key) else {
            return self.refuse(conn, &req, ErrorCode::UnknownSid);
        };
        if req.is_websocket_upgrade() {
            let why = if transport != Transport::WebSocket {
                "it asked for the polling transport"
            } else if s.transport != Transport::Polling || s.upgrade != Upgrade::None {
                "the session has a WebSocket already"
            } else if !s.is_open() || !self.config.allow_upgrades {
                "the session cannot upgrade"
            } else {
                if self.answer_websocket_handshake(conn, &req, None) {
                    self.become_websocket(conn, key);
                    let deadline = now + self.config.upgrade_timeout;
                    if let Some(s) = self.sessions.get_mut(&key) {
                        s.upgrade = Upgrade::Probing { conn, deadline };
                    }
                    self.timers.push(Reverse((deadline, key)));
                    self.process_websocket(conn, now);
                }
                return;
            };
            return self.accept_and_close_websocket(conn, &req, why);
        }
        if transport != s.transport {
            return self.refuse(conn, &req, ErrorCode::BadRequest);
        }
        match req.method {
            Method::Get => self.poll(conn, req, key, now),
            Method::Post => self.post(conn, req, key, now),
            _ => {
                // Node's answer: the transport has no handler for the method.
                self.report_bad_input(
                    conn,
                    format!("{} request for a session", req.method.as_str()),
                );
                self.respond(conn, &req, Response::new(500))
            }
        }
    }

    pub(super) fn poll(&mut self, conn: ConnId, req: Request, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.poll_conn.is_some() {
            // Node: "overlap from client" closes the session; the new GET gets a bare 400.
            self.report_bad_input(conn, "a second GET while one is pending".into());
            self.respond(conn, &req, Response::new(400));
            return self.close_session(key, CloseReason::TransportError, now);
        }
        let closing = matches!(s.state, ReadyState::Closing { .. });
        if s.queue.is_empty() && !closing {
            if matches!(s.upgrade, Upgrade::Probed { .. }) {
                s.queue.push(Packet::Noop);
            } else {
                s.poll_conn = Some(conn);
                if let Some(ConnState::Http { waiting, .. }) =
                    self.conns.get_mut(&conn).map(|c| &mut c.state)
                {
                    *waiting = Waiting::Poll {
                        key,
                        req: Box::new(req),
                    };
                }
                return;
            }
        }
        self.answer_poll(conn, &req, key, now);
    }

    pub(super) fn post(&mut self, conn: ConnId, req: Request, key: SessionKey, now: Instant) {
        let content_type = req.header("content-type").unwrap_or("");
        if content_type.eq_ignore_ascii_case("application/octet-stream") {
            // v4 payloads are text; Node fails the transport ("invalid content").
            self.report_bad_input(
                conn,
                "binary POST body (Engine.IO v4 payloads are text)".into(),
            );
            self.respond(conn, &req, Response::new(400));
            return self.close_session(key, CloseReason::TransportError, now);
        }
        let packets = packet::decode_payload(&req.body);
        self.respond(
            conn,
            &req,
            Response::new(200).with_body("text/html", b"ok".to_vec()),
        );
        match packets {
            Ok(packets) => {
                for p in packets {
                    self.on_packet(conn, key, p, now);
                }
            }
            Err(e) => {
                self.report_bad_input(conn, format!("malformed polling payload: {e}"));
                self.close_session(key, CloseReason::ParseError, now);
            }
        }
    }

    pub(super) fn answer_poll(
        &mut self,
        conn: ConnId,
        req: &Request,
        key: SessionKey,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut body = Vec::new();
        for p in s.queue.drain(..) {
            packet::push_payload_segment(&p, &mut body);
        }
        // As Node: what was queued before the close goes out first; the close packet rides on the next GET,
        // so a client reads the last packets (a Socket.IO DISCONNECT, say) before the transport closes.
        let closing = matches!(s.state, ReadyState::Closing { .. }) && body.is_empty();
        if closing {
            packet::push_payload_segment(&Packet::Close, &mut body);
        }
        let res = Response::new(200).with_body("text/plain; charset=UTF-8", body);
        self.respond(conn, req, res);
        if closing {
            self.remove_session(key, Packet::Close, now);
        }
    }
}
