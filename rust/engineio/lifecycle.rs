//! The half of `Engine` that follows a session once it exists: packets in, packets out on whichever transport
//! carries it, the WebSocket frames, the heartbeat and upgrade timers, and closing.
use std::cmp::Reverse;
use std::time::Instant;

use super::{ConnState, Engine, Parked};
use crate::engineio::output::Out;
use crate::engineio::packet::{self, Data, Packet};
use crate::engineio::session::{CloseReason, ConnId, ReadyState, SessionKey, Transport, Upgrade};
use crate::engineio::Event;
use crate::http::Response;
use crate::websocket::{self, close_code, Message, Opcode};

impl Engine {
    pub(super) fn send_packet(&mut self, key: SessionKey, packet: Packet) -> bool {
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        if !s.is_open() && packet != Packet::Close {
            return false;
        }
        match (s.transport, s.ws_conn) {
            (Transport::WebSocket, Some(conn)) => self.emit(conn, |out| out.packet(&packet)),
            _ => {
                s.queue.push(packet);
                if s.poll_conn.is_some() {
                    self.poll_ready.push(key);
                }
            }
        }
        true
    }

    /// Answer every parked GET whose session has packets: once per batch, so a burst of sends makes one payload.
    pub(super) fn flush_polls(&mut self, now: Instant) {
        let ready = std::mem::take(&mut self.poll_ready);
        for key in ready {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            let Some(conn) = s.poll_conn else {
                continue;
            };
            if s.queue.is_empty() && s.is_open() {
                continue;
            }
            s.poll_conn = None;
            let Some(req) = self.unpark(conn, Parked::Poll) else {
                continue;
            };
            self.answer_poll(conn, &req, key, now);
            // A keep-alive connection may have pipelined its next request behind the poll.
            self.process_http(conn, now);
        }
    }

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

    pub(super) fn close_websocket(&mut self, conn: ConnId, code: Option<u16>) {
        self.emit(conn, |out| out.close(code, ""));
        self.finish_conn(conn);
    }

    pub(super) fn process_websocket(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let ConnState::WebSocket { decoder, key } = &mut c.state else {
                return;
            };
            let key = *key;
            match decoder.next_message() {
                Ok(None) => return,
                Ok(Some(msg)) => self.on_websocket_message(conn, key, msg, now),
                Err(err) => return self.websocket_error(conn, key, err, now),
            }
        }
    }

    /// The peer broke the WebSocket protocol: the code its close frame carries, and the session's transport failed.
    pub(super) fn websocket_error(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        err: websocket::ProtocolError,
        now: Instant,
    ) {
        self.report_bad_input(conn, format!("WebSocket: {}", err.reason));
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
                let mut frame = Vec::new();
                websocket::encode_frame(Opcode::Pong, &payload, &mut frame);
                return self.emit(conn, |out| out.wire_only(&frame));
            }
            Message::Pong(_) => return,
            Message::Close(code, reason) => {
                // Echo the code and reason, as Node's ws does.
                let code = code.unwrap_or(close_code::NORMAL);
                self.emit(conn, |out| out.close(Some(code), &reason));
                self.finish_conn(conn);
                return self.on_websocket_gone(key, conn, CloseReason::TransportClose, now);
            }
            Message::Binary(b) => Packet::Message(Data::Binary(b)),
            Message::Text(t) => match Packet::decode_text(&t) {
                Ok(p) => p,
                Err(e) => {
                    self.report_bad_input(conn, format!("malformed packet: {e}"));
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

    fn is_probe(&self, key: SessionKey, conn: ConnId) -> bool {
        self.sessions
            .get(&key)
            .is_some_and(|s| s.upgrade.conn() == Some(conn))
    }

    fn drop_probe(&mut self, key: SessionKey, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&key) {
            s.upgrade = Upgrade::None;
        }
        self.close_websocket(conn, None);
    }

    fn on_probe_packet(&mut self, key: SessionKey, conn: ConnId, packet: Packet) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        match (s.upgrade, packet) {
            (Upgrade::Probing { deadline, .. }, Packet::Ping(p)) if p == "probe" => {
                s.upgrade = Upgrade::Probed { conn, deadline };
                // Release the parked GET so the client can pause polling and send the upgrade packet.
                if s.poll_conn.is_some() && s.queue.is_empty() {
                    s.queue.push(Packet::Noop);
                    self.poll_ready.push(key);
                }
                self.emit(conn, |out| out.packet(&Packet::Pong("probe".into())));
            }
            (Upgrade::Probed { .. }, Packet::Upgrade) => {
                s.upgrade = Upgrade::None;
                s.transport = Transport::WebSocket;
                s.ws_conn = Some(conn);
                let queued = std::mem::take(&mut s.queue);
                if s.poll_conn.is_some() {
                    s.queue.push(Packet::Noop);
                    self.poll_ready.push(key);
                }
                if !queued.is_empty() {
                    self.emit(conn, |out| queued.iter().for_each(|p| out.packet(p)));
                }
                self.events.push_back(Event::Upgrade { key });
            }
            _ => self.drop_probe(key, conn),
        }
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
            Packet::Message(data) => self.events.push_back(Event::Message { key, data }),
            // A pong nobody asked for changes nothing: it must not postpone the next ping.
            Packet::Pong(_) if s.pong_deadline.is_some() => {
                s.pong_deadline = None;
                let at = now + self.config.ping_interval;
                s.next_ping = Some(at);
                self.timers.push(Reverse((at, key)));
            }
            Packet::Close => self.close_session(key, CloseReason::TransportClose, now),
            Packet::Ping(_) => {
                // In v4 only the server pings; Node fails the transport ("invalid heartbeat direction").
                self.report_bad_input(conn, "ping from the client".into());
                self.close_session(key, CloseReason::TransportError, now);
            }
            // Upgrade packets mean something only on a probe; Node ignores them here, and noops everywhere.
            Packet::Pong(_) | Packet::Upgrade | Packet::Noop | Packet::Open(_) => {}
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
        if s.upgrade.conn() == Some(conn) {
            s.upgrade = Upgrade::None;
        } else if s.ws_conn == Some(conn) {
            s.ws_conn = None;
            self.close_session(key, reason, now);
        }
    }

    pub(super) fn session_timers(&mut self, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if let ReadyState::Closing { deadline } = s.state {
            if deadline <= now {
                return self.remove_session(key, Packet::Close, now);
            }
        }
        if let Upgrade::Probing { conn, deadline } | Upgrade::Probed { conn, deadline } = s.upgrade
        {
            if deadline <= now {
                self.drop_probe(key, conn);
            }
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.pong_deadline.is_some_and(|d| d <= now) {
            return self.close_session(key, CloseReason::PingTimeout, now);
        }
        if s.next_ping.is_some_and(|d| d <= now) {
            s.next_ping = None;
            let deadline = now + self.config.ping_timeout;
            s.pong_deadline = Some(deadline);
            self.timers.push(Reverse((deadline, key)));
            self.send_packet(key, Packet::Ping(String::new()));
        }
    }

    /// Close a session for `reason`. The application hears of it at once. A polling client hears of it on its
    /// parked GET; when the server closed the session and no GET is parked, on its next GET (the session
    /// lingers as Closing for one ping_timeout to answer it). Otherwise the sid is forgotten at once, as in Node.
    pub(super) fn close_session(&mut self, key: SessionKey, reason: CloseReason, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if !s.is_open() {
            return;
        }
        let deadline = now + self.config.ping_timeout;
        s.state = ReadyState::Closing { deadline };
        s.next_ping = None;
        s.pong_deadline = None;
        self.open_sessions -= 1;
        if let Some(conn) = s.upgrade.conn() {
            s.upgrade = Upgrade::None;
            self.close_websocket(conn, None);
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        self.events.push_back(Event::Close { key, reason });
        match (s.transport, s.ws_conn) {
            (Transport::WebSocket, Some(conn)) => {
                let queued = std::mem::take(&mut s.queue);
                self.emit(conn, |out| queued.iter().for_each(|p| out.packet(p)));
                self.close_websocket(conn, None);
                self.remove_session(key, Packet::Close, now);
            }
            (Transport::WebSocket, None) => self.remove_session(key, Packet::Close, now),
            (Transport::Polling, _)
                if reason == CloseReason::ForcedClose && s.poll_conn.is_none() =>
            {
                self.timers.push(Reverse((deadline, key)));
            }
            // Node answers the GET of a client that sent the close packet itself with a noop.
            (Transport::Polling, _) if reason == CloseReason::TransportClose => {
                self.remove_session(key, Packet::Noop, now)
            }
            (Transport::Polling, _) => self.remove_session(key, Packet::Close, now),
        }
    }

    /// Forget a session. A parked GET is answered with what is queued and then `last`.
    pub(super) fn remove_session(&mut self, key: SessionKey, last: Packet, now: Instant) {
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
        let mut body = Vec::new();
        for p in s.queue.drain(..).chain([last]) {
            packet::push_payload_segment(&p, &mut body);
        }
        let res = Response::new(200).with_body("text/plain; charset=UTF-8", body);
        self.respond(conn, &req, res);
        // A keep-alive connection may have pipelined its next request behind the poll.
        self.process_http(conn, now);
    }
}
