//! The long-polling transport: a GET is parked until its session has packets (answered once per batch), a POST
//! carries the client's packets.
//!
//! ```text
//! GET    packets queued: answered now with all of them; a closing session's close packet rides alone on the
//!        GET after them, so the client reads the last packets before the transport closes
//!        nothing queued, session closing: answered now with the close packet
//!        nothing queued, session open: parked (Waiting::Poll) until a send, an upgrade's noop or the close; a
//!        second GET while one is parked closes the session (Node's "overlap from client")
//! POST   answered "ok" at once; its packets are then handled in order; a malformed payload, or a binary body
//!        (but from an Engine.IO v3 client), closes the session
//! queue  bounded by max_buffered bytes of payload: past it the queue is dropped and the session closes
//!        ("transport error"), as a WebSocket that is not read is dropped
//! ```
use std::time::Instant;

use super::conn::{ConnState, Parked, Waiting};
use super::engine::Engine;
use super::packet::{self, Packet};
use super::packet_v3;
use super::session::{CloseReason, ReadyState, Upgrade};
use super::Protocol;
use crate::http::{encoding, Request, Response};
use crate::ids::{ConnId, SessionKey};
use crate::metrics::BadInput;

/// The packets waiting for a polling session's next GET, and the size of the payload they make.
#[derive(Debug, Default)]
pub struct Outbox {
    packets: Vec<Packet>,
    /// Bytes of the payload: every packet's segment and the separators between them.
    bytes: usize,
    /// Some packet may be compressed (Node compresses a response when any of its packets may be).
    pub(super) compress: bool,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The bytes the payload would have.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Queue a packet that may be compressed (Node's default).
    pub fn push(&mut self, packet: Packet) {
        self.push_flagged(packet, true);
    }

    pub fn push_flagged(&mut self, packet: Packet, compress: bool) {
        self.compress |= compress;
        let separator = usize::from(!self.packets.is_empty());
        self.bytes = (self.bytes).saturating_add(separator + packet::segment_len(&packet));
        self.packets.push(packet);
    }

    pub fn take(&mut self) -> Vec<Packet> {
        self.bytes = 0;
        self.compress = false;
        std::mem::take(&mut self.packets)
    }

    /// The payload of every packet, then `last`; the outbox is left empty.
    pub fn payload(&mut self, last: Option<Packet>) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.bytes + 2);
        for p in self.take().iter().chain(last.as_ref()) {
            packet::push_payload_segment(p, &mut body);
        }
        body
    }

    /// The answer to a GET: the payload in the session's protocol (v3's may be binary).
    pub fn response(&mut self, protocol: Protocol, last: Option<Packet>) -> Response {
        let Protocol::V3 {
            polling_binary: binary,
            ..
        } = protocol
        else {
            return Response::new(200).with_body(TEXT, self.payload(last));
        };
        let mut packets = self.take();
        packets.extend(last);
        payload_v3(&packets, binary)
    }
}

const TEXT: &str = "text/plain; charset=UTF-8";

/// A v3 payload as the response to a GET.
pub(super) fn payload_v3(packets: &[Packet], binary: bool) -> Response {
    let mut body = Vec::new();
    let content_type = match packet_v3::encode_payload(packets, binary, &mut body) {
        true => "application/octet-stream",
        false => TEXT,
    };
    Response::new(200).with_body(content_type, body)
}

impl Engine {
    pub(super) fn poll(&mut self, conn: ConnId, req: Request, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.poll_conn.is_some() {
            // Node: "overlap from client" closes the session; the new GET gets a bare 400.
            self.report_bad_input(
                conn,
                BadInput::EngineIo,
                "a second GET while one is pending".into(),
            );
            self.respond(conn, &req, Response::new(400));
            return self.close_session(key, CloseReason::TransportError, now);
        }
        let closing = matches!(s.state, ReadyState::Closing { .. });
        if s.queue.is_empty() && !closing {
            if matches!(s.upgrade(), Upgrade::Probed { .. }) {
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
        self.answer_poll(conn, &req, key);
    }

    pub(super) fn post(&mut self, conn: ConnId, req: Request, key: SessionKey, now: Instant) {
        let content_type = req.header("content-type").unwrap_or("");
        let binary_body = content_type.eq_ignore_ascii_case("application/octet-stream");
        let protocol = self.sessions.get(&key).map(|s| s.protocol);
        if binary_body && protocol == Some(Protocol::V4) {
            // v4 payloads are text; Node fails the transport ("invalid content").
            self.report_bad_input(
                conn,
                BadInput::EngineIo,
                "binary POST body (Engine.IO v4 payloads are text)".into(),
            );
            self.respond(conn, &req, Response::new(400));
            return self.close_session(key, CloseReason::TransportError, now);
        }
        let packets = match protocol {
            Some(Protocol::V3 { .. }) if binary_body => packet_v3::decode_binary_payload(&req.body),
            Some(Protocol::V3 { .. }) => packet_v3::decode_payload(&req.body),
            _ => packet::decode_payload(&req.body),
        };
        let mut res = Response::new(200).with_body("text/html", b"ok".to_vec());
        self.app_headers(conn, &req, &mut res);
        self.respond(conn, &req, res);
        match packets {
            Ok(packets) => {
                for p in packets {
                    self.on_packet(conn, key, p, now);
                }
            }
            Err(e) => {
                self.report_bad_input(
                    conn,
                    BadInput::EngineIo,
                    format!("malformed polling payload: {e}"),
                );
                self.close_session(key, CloseReason::ParseError, now);
            }
        }
    }

    pub(super) fn answer_poll(&mut self, conn: ConnId, req: &Request, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        // As Node: what was queued before the close goes out first; the close packet rides on the next GET,
        // so a client reads the last packets (a Socket.IO DISCONNECT, say) before the transport closes.
        let closing = matches!(s.state, ReadyState::Closing { .. }) && s.queue.is_empty();
        let compress = s.queue.compress || closing;
        let protocol = s.protocol;
        let mut res = if protocol == Protocol::V4 {
            let body = s.queue.payload(closing.then_some(Packet::Close));
            self.poll_response(req, body, compress)
        } else {
            // Engine.IO v3 payloads are not compressed (anysio's choice; Node compresses them too).
            s.queue.response(protocol, closing.then_some(Packet::Close))
        };
        self.app_headers(conn, req, &mut res);
        self.respond(conn, req, res);
        if closing {
            self.remove_session(key, Packet::Close);
        }
    }

    /// A GET's answer: its payload, compressed as Node's `httpCompression` does (when on, from its threshold, in
    /// the encoding the request's Accept-Encoding prefers, unless every packet in it was sent `compress(false)`).
    fn poll_response(&self, req: &Request, body: Vec<u8>, compress: bool) -> Response {
        let content_type = "text/plain; charset=UTF-8";
        let encoding = (self.config.http_compression)
            .filter(|threshold| compress && body.len() >= *threshold)
            .and_then(|_| req.header("accept-encoding"))
            .and_then(encoding::preferred);
        match encoding.and_then(|e| Some((e, e.encode(&body)?))) {
            Some((e, compressed)) => Response::new(200)
                .with_header("Content-Encoding", e.name())
                .with_body(content_type, compressed),
            None => Response::new(200).with_body(content_type, body),
        }
    }

    /// Queue `packet` for a polling session's next GET. Past `max_buffered` bytes of payload the client is not
    /// polling (or polls slower than it is sent to): the queue is dropped and the session closed as a transport
    /// error, as a WebSocket that is not read is dropped. Node has no such bound: without it, a client that
    /// answers pings but never polls grows the server's memory without end. False when the packet is dropped.
    pub(super) fn queue_for_poll(&mut self, key: SessionKey, packet: Packet) -> bool {
        let max = self.config.max_buffered;
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        s.queue.push_flagged(packet, self.compress);
        if s.queue.len() <= max {
            if s.poll_conn.is_some() {
                self.poll_ready.push(key);
            }
            return true;
        }
        let dropped = s.queue.take().len();
        let remote = s.remote;
        let why = format!(
            "polling output over max_buffered ({max} bytes, {dropped} packets): client not polling"
        );
        self.counters.slow_consumers += 1;
        self.report(None, remote, why);
        self.end_session(key, CloseReason::TransportError);
        false
    }

    /// Answer every parked GET whose session has packets: once per batch, so a burst of sends makes one payload.
    pub(super) fn flush_polls(&mut self) {
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
            self.answer_poll(conn, &req, key);
        }
    }
}
