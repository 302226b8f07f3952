//! The WebSocket transport: the opening handshake, messages in and out, the probe of an upgrade, and closing.
//!
//! ```text
//! upgrade     a session's second connection: 101, then "2probe" → "3probe", then "5" (see session.rs); anything
//!             else, a close, or upgrade_timeout drops the probe and the session stays on polling
//! closing     a close frame is echoed (code and reason, as Node's ws does); bad framing is answered with its close
//!             code; either way the session, if this WebSocket carried it, closes
//! ```
use std::time::Instant;

use super::conn::{ConnState, Feed};
use super::engine::Engine;
use super::packet::{Data, DecodeError, Packet};
use super::packet_v3;
use super::session::{ws_packet, Carrier, CloseReason, Upgrade};
use super::{Event, Protocol};
use crate::http::{Request, Response};
use crate::ids::{ConnId, SessionKey};
use crate::metrics::BadInput;
use crate::permessage_deflate::{self, BadExtensions, Params};
use crate::websocket::{self, close_code, Message};

/// What a 101 agreed on.
pub(super) struct Accepted {
    deflate: Option<Params>,
}

impl Engine {
    /// A message from the peer of `conn`'s WebSocket (after its `Answer::Accept`).
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
            return self.websocket_error(conn, err, now);
        }
        self.on_websocket_message(conn, key, msg, now);
    }

    /// Answer a WebSocket opening handshake with 101; None (after ws's 400 and a close) when it is not a
    /// valid one. Like Node's ws, versions 13 and 8 (same framing) are accepted.
    pub(super) fn answer_websocket_handshake(
        &mut self,
        conn: ConnId,
        req: &Request,
        cookie: Option<&str>,
    ) -> Option<Accepted> {
        let client_key = req.header("sec-websocket-key").unwrap_or("");
        let deflate = self.negotiate_deflate(conn, req);
        let refusal = if !websocket::is_valid_key(client_key) {
            "Missing or invalid Sec-WebSocket-Key header"
        } else if !matches!(req.header("sec-websocket-version"), Some("13" | "8")) {
            "Missing or invalid Sec-WebSocket-Version header"
        } else if deflate.is_err() {
            "Invalid or unacceptable Sec-WebSocket-Extensions header"
        } else {
            ""
        };
        if !refusal.is_empty() {
            self.report_bad_input(
                conn,
                BadInput::WebSocket,
                format!("WebSocket handshake: {refusal}"),
            );
            self.abort_upgrade(conn, 400, refusal);
            return None;
        }
        let deflate = deflate.unwrap_or_default();
        let mut res = Response::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Accept", &websocket::accept_key(client_key));
        if let Some(params) = &deflate {
            res = res.with_header("Sec-WebSocket-Extensions", &params.header());
        }
        if let Some(c) = cookie {
            res = res.with_header("Set-Cookie", c);
        }
        self.app_headers(conn, req, &mut res);
        // Node's 101 carries the CORS headers too.
        let res = self.cors_headers(req, res);
        self.emit(conn, |out| out.accept(res));
        Some(Accepted { deflate })
    }

    /// permessage-deflate for a connection whose bytes the connection layer reads, when the server has it on
    /// and the client offers it (as ws: a malformed offer is refused).
    fn negotiate_deflate(
        &self,
        conn: ConnId,
        req: &Request,
    ) -> Result<Option<Params>, BadExtensions> {
        let (Some(config), Some(offers)) = (
            self.config.per_message_deflate.as_ref(),
            req.header("sec-websocket-extensions"),
        ) else {
            return Ok(None);
        };
        if self.conns.get(&conn).is_none_or(|c| c.feed != Feed::Bytes) {
            return Ok(None);
        }
        permessage_deflate::negotiate(offers, config)
    }

    /// `conn` carries WebSocket messages for session `key` from now on (its reader sees `Phase::WebSocket`:
    /// bytes that came after the handshake are its first frames).
    pub(super) fn become_websocket(&mut self, conn: ConnId, key: SessionKey, accepted: Accepted) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::WebSocket {
                key,
                deflate: accepted.deflate,
            };
        }
    }

    /// permessage-deflate's parameters on `conn`'s WebSocket, when they were negotiated: its driver compresses
    /// and inflates with them.
    pub fn websocket_deflate(&self, conn: ConnId) -> Option<Params> {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::WebSocket { deflate, .. }) => *deflate,
            _ => None,
        }
    }

    pub(super) fn abort_upgrade(&mut self, conn: ConnId, status: u16, message: &str) {
        let res = Response::new(status)
            .with_header("Connection", "close")
            .with_body("text/html", message.as_bytes().to_vec());
        self.emit(conn, |out| out.response(res));
        self.finish_conn(conn);
    }

    /// Node accepts a WebSocket it cannot use, then closes it (the spec: "the server MUST close the WebSocket
    /// connection").
    pub(super) fn accept_and_close_websocket(&mut self, conn: ConnId, req: &Request, why: &str) {
        if self.answer_websocket_handshake(conn, req, None).is_some() {
            self.report_bad_input(
                conn,
                BadInput::WebSocket,
                format!("WebSocket closed at once: {why}"),
            );
            self.close_websocket(conn, None);
        }
    }

    pub(super) fn close_websocket(&mut self, conn: ConnId, code: Option<u16>) {
        self.emit(conn, |out| out.close(code, ""));
        self.finish_conn(conn);
    }

    /// The peer broke the WebSocket protocol: the code its close frame carries, and the session's transport failed.
    pub fn websocket_error(&mut self, conn: ConnId, err: websocket::ProtocolError, now: Instant) {
        let Some(ConnState::WebSocket { key, .. }) = self.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        let key = *key;
        self.report_bad_input(
            conn,
            BadInput::WebSocket,
            format!("WebSocket: {}", err.reason),
        );
        self.close_websocket(conn, Some(err.code));
        self.on_websocket_gone(key, conn, CloseReason::TransportError, now);
    }

    pub(super) fn on_websocket_message(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        msg: Message,
        now: Instant,
    ) {
        let packet = match msg {
            Message::Ping(payload) => {
                return self.emit(conn, |out| out.pong(payload));
            }
            Message::Pong(_) => return,
            Message::Close(code, reason) => {
                // Echo the code and reason, as Node's ws does.
                let code = code.unwrap_or(close_code::NORMAL);
                self.emit(conn, |out| out.close(Some(code), &reason));
                self.finish_conn(conn);
                return self.on_websocket_gone(key, conn, CloseReason::TransportClose, now);
            }
            Message::Binary(b) if !self.speaks_v3(key) => Packet::Message(Data::Binary(b)),
            msg => match self.decode_v3_or_text(key, msg) {
                Ok(p) => p,
                Err(e) => {
                    self.report_bad_input(
                        conn,
                        BadInput::EngineIo,
                        format!("malformed packet: {e}"),
                    );
                    if self.is_probe(key, conn) {
                        return self.drop_probe(key, conn);
                    }
                    return self.close_session(key, CloseReason::ParseError, now);
                }
            },
        };
        if self.is_probe(key, conn) {
            self.on_probe_packet(key, conn, packet);
        } else {
            self.on_packet(conn, key, packet, now);
        }
    }

    fn speaks_v3(&self, key: SessionKey) -> bool {
        (self.sessions.get(&key)).is_some_and(|s| s.protocol != Protocol::V4)
    }

    /// A text message (any session's), or an Engine.IO v3 session's binary one.
    fn decode_v3_or_text(&self, key: SessionKey, msg: Message) -> Result<Packet, DecodeError> {
        match (self.speaks_v3(key), msg) {
            (true, Message::Binary(b)) => packet_v3::decode_binary(&b),
            (true, Message::Text(t)) => packet_v3::decode_text(&t),
            (false, Message::Text(t)) => Packet::decode_text(&t),
            _ => Err(DecodeError::UnknownType),
        }
    }

    pub(super) fn is_probe(&self, key: SessionKey, conn: ConnId) -> bool {
        self.sessions
            .get(&key)
            .is_some_and(|s| s.upgrade().conn() == Some(conn))
    }

    pub(super) fn drop_probe(&mut self, key: SessionKey, conn: ConnId) {
        if let Some(Carrier::Polling { upgrade }) =
            self.sessions.get_mut(&key).map(|s| &mut s.carrier)
        {
            *upgrade = Upgrade::None;
        }
        self.close_websocket(conn, None);
    }

    pub(super) fn on_probe_packet(&mut self, key: SessionKey, conn: ConnId, packet: Packet) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        match (s.upgrade(), packet) {
            (Upgrade::Probing { deadline, .. }, Packet::Ping(p)) if p == "probe" => {
                let upgrade = Upgrade::Probed { conn, deadline };
                s.carrier = Carrier::Polling { upgrade };
                // Release the parked GET so the client can pause polling and send the upgrade packet.
                if s.poll_conn.is_some() && s.queue.is_empty() {
                    s.queue.push(Packet::Noop);
                    self.poll_ready.push(key);
                }
                self.emit(conn, |out| out.packet(Packet::Pong("probe".into())));
            }
            (Upgrade::Probed { .. }, Packet::Upgrade) => {
                s.carrier = Carrier::WebSocket { conn };
                let queued = s.queue.take();
                let protocol = s.protocol;
                if s.poll_conn.is_some() {
                    s.queue.push(Packet::Noop);
                    self.poll_ready.push(key);
                }
                if !queued.is_empty() {
                    self.emit(conn, |out| {
                        (queued.into_iter()).for_each(|p| ws_packet(out, protocol, p))
                    });
                }
                self.counters.upgrades += 1;
                self.events.push_back(Event::Upgrade { key });
            }
            _ => self.drop_probe(key, conn),
        }
    }

    /// A WebSocket connection ended: close frame or TCP close (`TransportClose`), or protocol error.
    pub(super) fn on_websocket_gone(
        &mut self,
        key: SessionKey,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.upgrade().conn() == Some(conn) {
            s.carrier = Carrier::Polling {
                upgrade: Upgrade::None,
            };
        } else if s.websocket() == Some(conn) {
            self.close_session(key, reason, now);
        }
    }
}
