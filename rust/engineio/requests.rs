//! Routing a request: the Engine.IO path or the application's, CORS preflight, Node's error answers, handshakes
//! on either transport, and requests for an existing session.
//!
//! ```text
//! requests    no sid: handshake (GET only, EIO=4 or, with allow_eio3, any other, known transport); sid: a poll (GET), data (POST) or an upgrade
//! ```
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

use super::conn::{ConnState, Waiting};
use super::engine::Engine;
use super::packet::Packet;
use super::polling::payload_v3;
use super::session::{Carrier, Session, Transport, Upgrade};
use super::{ErrorCode, Event, Protocol, RequestInfo};
use crate::http::{Method, Request, Response};
use crate::ids::{ConnId, SessionKey};
use crate::metrics::BadInput;

pub(super) fn error_response(code: ErrorCode, message: Option<&str>) -> Response {
    let body =
        serde_json::json!({"code": code as u8, "message": message.unwrap_or(code.message())});
    Response::new(code.status()).with_body("application/json", body.to_string().into_bytes())
}

/// Node's `supportsBinary` for a v3 transport: its request's `b64` absent or empty.
fn supports_binary(req: &Request) -> bool {
    req.query_param("b64").is_none_or(|b| b.is_empty())
}

pub(super) fn generate_sid(prefix: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    // Without the OS's randomness there is no safe sid; a clock-based one would be guessable, so fail loudly.
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Engine {
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
            self.report_bad_input(
                conn,
                BadInput::Http,
                format!("no Engine.IO endpoint at {:?}", req.path),
            );
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
        self.connection_error(conn, req, code, None);
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
                let message = Some("Connection limit reached");
                self.connection_error(conn, &req, ErrorCode::Forbidden, message);
                return self.reject(conn, &req, ErrorCode::Forbidden, 503, message);
            }
        }
        if !self.admit(conn, now) {
            let message = Some("Too many connections from this address");
            self.counters.rate_limited_connections += 1;
            self.connection_error(conn, &req, ErrorCode::Forbidden, message);
            return self.reject(conn, &req, ErrorCode::Forbidden, 429, message);
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

    /// Whether a handshake on `conn` is within its address's rate (`Config::connection_rate`).
    fn admit(&mut self, conn: ConnId, now: Instant) -> bool {
        let ip = self.conns.get(&conn).and_then(|c| c.remote).map(|r| r.ip());
        match (&mut self.admission, ip) {
            (Some(admission), Some(ip)) => admission.admit(ip, now),
            _ => true,
        }
    }

    /// Node checks the protocol version after the application's allowRequest, so this comes last.
    pub(super) fn finish_handshake(
        &mut self,
        conn: ConnId,
        req: &Request,
        sid: Option<String>,
        now: Instant,
    ) {
        // As Node: any EIO but 4 is the third revision ("3rd revision by default").
        let protocol = match req.query_param("EIO").as_deref() {
            Some("4") => Protocol::V4,
            _ if self.config.allow_eio3 => {
                let binary = supports_binary(req);
                Protocol::V3 {
                    polling_binary: binary,
                    ws_binary: binary,
                }
            }
            _ => return self.refuse(conn, req, ErrorCode::UnsupportedProtocolVersion),
        };
        self.open_session(conn, req, sid, protocol, now);
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
        protocol: Protocol,
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
        let open = self.open_packet(&sid, transport);
        let cookie = self.session_cookie(&sid);
        let key = self.next_key;
        self.next_key = key.next();
        let info = Arc::new(self.request_info(conn, req));
        let carrier = match transport {
            Transport::Polling => Carrier::Polling {
                upgrade: Upgrade::None,
            },
            Transport::WebSocket => Carrier::WebSocket { conn },
        };
        let heartbeat = match protocol {
            Protocol::V4 => now + self.config.ping_interval,
            Protocol::V3 { .. } => now + self.config.ping_interval + self.config.ping_timeout,
        };
        let session = Session::new(sid.clone(), carrier, info.remote, protocol, heartbeat);
        match transport {
            Transport::Polling => {
                let mut res = match protocol {
                    Protocol::V4 => {
                        let mut body = Vec::new();
                        open.encode_text(&mut body);
                        Response::new(200).with_body("text/plain; charset=UTF-8", body)
                    }
                    Protocol::V3 { polling_binary, .. } => payload_v3(&[open], polling_binary),
                };
                if let Some(c) = cookie {
                    res = res.with_header("Set-Cookie", &c);
                }
                self.app_headers(conn, req, &mut res);
                self.respond(conn, req, res);
            }
            Transport::WebSocket => {
                let Some(accepted) = self.answer_websocket_handshake(conn, req, cookie.as_deref())
                else {
                    return;
                };
                self.become_websocket(conn, key, accepted);
                self.emit(conn, |out| out.packet(open));
            }
        }
        self.sids.insert(sid.clone(), key);
        self.open_sessions += 1;
        self.timers.push(Reverse((heartbeat, key)));
        self.sessions.insert(key, session);
        self.counters.sessions_opened[usize::from(transport == Transport::WebSocket)] += 1;
        self.events.push_back(Event::Open {
            key,
            sid,
            transport,
            request: info,
        });
    }

    /// The handshake's OPEN packet.
    fn open_packet(&self, sid: &str, transport: Transport) -> Packet {
        let upgrades = if transport == Transport::Polling
            && self.config.allow_upgrades
            && self.config.websocket
        {
            r#"["websocket"]"#
        } else {
            "[]"
        };
        // Written by hand to keep Node's key order, which some clients' tests compare as text.
        Packet::Open(format!(
            r#"{{"sid":{},"upgrades":{},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            serde_json::Value::from(sid),
            upgrades,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        ))
    }

    /// The Set-Cookie value naming the session, when the configuration asks for one (Node's `cookie`).
    fn session_cookie(&self, sid: &str) -> Option<String> {
        self.config.cookie.as_ref().map(|c| {
            let mut v = format!("{}={}; Path={}", c.name, sid, c.path);
            if c.http_only {
                v.push_str("; HttpOnly");
            }
            if let Some(s) = &c.same_site {
                v.push_str("; SameSite=");
                v.push_str(s);
            }
            v
        })
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
            } else if s.carrier
                != (Carrier::Polling {
                    upgrade: Upgrade::None,
                })
            {
                "the session has a WebSocket already"
            } else if !s.is_open() || !self.config.allow_upgrades {
                "the session cannot upgrade"
            } else {
                if let Some(accepted) = self.answer_websocket_handshake(conn, &req, None) {
                    self.become_websocket(conn, key, accepted);
                    let deadline = now + self.config.upgrade_timeout;
                    if let Some(s) = self.sessions.get_mut(&key) {
                        let upgrade = Upgrade::Probing { conn, deadline };
                        s.carrier = Carrier::Polling { upgrade };
                        // The WebSocket's own request says how it takes binary (used once it carries).
                        if let Protocol::V3 { ws_binary, .. } = &mut s.protocol {
                            *ws_binary = supports_binary(&req);
                        }
                    }
                    self.timers.push(Reverse((deadline, key)));
                }
                return;
            };
            return self.accept_and_close_websocket(conn, &req, why);
        }
        if transport != s.transport() {
            return self.refuse(conn, &req, ErrorCode::BadRequest);
        }
        match req.method {
            Method::Get => self.poll(conn, req, key, now),
            Method::Post => self.post(conn, req, key, now),
            _ => {
                // Node's answer: the transport has no handler for the method.
                self.report_bad_input(
                    conn,
                    BadInput::EngineIo,
                    format!("{} request for a session", req.method.as_str()),
                );
                self.respond(conn, &req, Response::new(500))
            }
        }
    }
}
