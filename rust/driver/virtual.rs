//! The socket-less driver: connections an ASGI server hands over, fed to the same `Engine` the mio driver feeds,
//! as values. The ASGI server has parsed HTTP and WebSocket framing already, so requests and messages go in
//! typed (`Engine::on_request`, `Engine::on_message`) and the answers come out typed (`Output`), with nothing
//! encoded to be parsed again.
//!
//! ```text
//! HTTP request       request(): one Request; its Output::Response ends the connection
//! WebSocket request  websocket(): a GET with Upgrade; Output::Accept turns the connection into a WebSocket,
//!                    an Output::Response refuses the handshake
//! WebSocket          message() hands each message over; the engine's come back as Output::Message, its close as
//!                    Output::Close
//! ```
//! The requests are normalised as the HTTP parser would leave them (lower-case names, trimmed Latin-1 values,
//! one Host), so sessions, upgrades and heartbeats behave the same under ASGI as standalone.
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use crate::core::{Core, Layer};
use crate::engineio::answer::ws_message;
use crate::engineio::{Answer, ConnId, Data, Engine};
use crate::http::{sanitize_field, Method, Request, Response};
use crate::ids::IdMap;
use crate::websocket::{self, Message};

/// One answer on an ASGI connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The answer to an HTTP request, or a refused WebSocket handshake. Framing is the server's: no
    /// Connection, Keep-Alive or Transfer-Encoding fields.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The WebSocket handshake was accepted; the fields to add to the server's 101 (Set-Cookie, CORS).
    Accept {
        headers: Vec<(String, String)>,
    },
    Message(Data),
    /// The engine is done with the connection: a WebSocket close code, or None when it closed without a
    /// close frame or, for HTTP, without an answer.
    Close(Option<u16>),
}

impl Output {
    /// The bytes a message output carries to the peer (others carry none that a slow peer holds up).
    fn len(&self) -> usize {
        match self {
            Output::Message(d) => d.len(),
            _ => 0,
        }
    }
}

/// Fields of a response the ASGI server writes itself.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding"];
/// Fields of a 101 the ASGI server writes itself.
const HANDSHAKE_FIELDS: &[&str] = &["upgrade", "connection", "sec-websocket-accept"];

/// The fields `res` would be written with (Content-Length included), less those the server writes.
fn fields(res: &Response, leave_out: &[&str]) -> Vec<(String, String)> {
    let given = (res.headers.iter())
        .filter(|(n, _)| !leave_out.iter().any(|d| n.eq_ignore_ascii_case(d)))
        .map(|(n, v)| {
            (
                sanitize_field(n).into_owned(),
                sanitize_field(v).into_owned(),
            )
        });
    let length = res.added_content_length();
    given
        .chain(length.map(|len| ("Content-Length".to_owned(), len.to_string())))
        .collect()
}

/// The engine's answer as what the ASGI server sends; None for what only a socket needs.
fn output(answer: Answer) -> Option<Output> {
    Some(match answer {
        Answer::Response(res) => Output::Response {
            status: res.status,
            headers: fields(&res, HOP_BY_HOP),
            body: if res.is_bodiless() {
                Vec::new()
            } else {
                res.body
            },
        },
        Answer::Accept(res) => Output::Accept {
            headers: fields(&res, HANDSHAKE_FIELDS),
        },
        Answer::Packet(packet) => Output::Message(ws_message(&packet)),
        // The ASGI server compresses as it negotiated: a message cannot tell it not to (compress(false)).
        Answer::Shared(packet) | Answer::Plain(packet) => Output::Message(ws_message(&packet)),
        Answer::Message(data) => Output::Message(data),
        // An empty close frame reads as 1000 (RFC 6455 §7.1.5 says 1005, which may not be sent).
        Answer::Close { code, .. } => Output::Close(Some(code.unwrap_or(1000))),
        // The ASGI server sends 100 Continue and answers pings itself; a closed connection says so in
        // `finish`.
        Answer::Continue | Answer::Pong(_) | Answer::Abandon => return None,
    })
}

/// Above the mio driver's ids (which start at 2^20 and count up), so both can share an engine.
const FIRST_CONN: ConnId = ConnId(1 << 62);
/// The ASGI server checked the client's key and computes Sec-WebSocket-Accept itself; the engine only needs
/// a valid one (RFC 6455's example nonce).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Fields the ASGI server owns: framing, connection management, and the WebSocket handshake (which the
/// request carries in canonical form instead).
const DROPPED_FIELDS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the answer to the request (a WebSocket handshake's: Accept or Response).
    Http,
    WebSocket,
    Done,
}

struct VirtualConn {
    phase: Phase,
    outputs: VecDeque<Output>,
    queued: bool,
    /// The bytes of the messages in `outputs`: reported to the engine as the connection's backlog.
    bytes: usize,
}

pub struct VirtualConns {
    conns: IdMap<ConnId, VirtualConn>,
    next_conn: ConnId,
    ready: Vec<ConnId>,
    dirty: Vec<ConnId>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The request the HTTP parser would have made of these parts. Bytes outside the request-target's alphabet
/// are percent-encoded, fields with an invalid name or value are left out, and exactly one Host is kept
/// (HTTP/2 requests may come without one).
fn make_request<H: AsRef<[u8]>>(
    method: &str,
    target: &str,
    headers: &[(H, H)],
    body: &[u8],
    websocket: bool,
) -> Request {
    let valid = !method.is_empty()
        && method.len() <= crate::http::MAX_METHOD_BYTES
        && method.bytes().all(is_tchar);
    let method = Method::from_token(if valid { method } else { "INVALID" }.as_bytes());
    let mut encoded = String::with_capacity(target.len() + 1);
    if !target.starts_with('/') {
        encoded.push('/');
    }
    for b in target.bytes() {
        if (0x21..=0x7e).contains(&b) {
            encoded.push(char::from(b));
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    let (path, query) = encoded.split_once('?').unwrap_or((&encoded, ""));
    let mut fields = Vec::with_capacity(headers.len() + 4);
    let mut host = false;
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        let lower = name.to_ascii_lowercase();
        let skip = name.is_empty()
            || !name.iter().copied().all(is_tchar)
            || !value
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            || DROPPED_FIELDS
                .iter()
                .any(|f| f.as_bytes() == lower.as_slice())
            || (lower == b"host" && std::mem::replace(&mut host, true));
        if !skip {
            let value = value.trim_ascii();
            fields.push((latin1(&lower), latin1(value)));
        }
    }
    let field = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    if !host {
        fields.push(field("host", "localhost"));
    }
    if websocket {
        fields.push(field("upgrade", "websocket"));
        fields.push(field("connection", "Upgrade"));
        fields.push(field("sec-websocket-key", WS_KEY));
        fields.push(field("sec-websocket-version", "13"));
    } else {
        fields.push(("content-length".to_owned(), body.len().to_string()));
    }
    Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        minor_version: 1,
        headers: fields,
        body: if websocket { Vec::new() } else { body.to_vec() },
    }
}

impl VirtualConn {
    /// Answers the engine gave; returns true when the connection is over (an HTTP answer, a refused handshake
    /// or a close).
    #[cfg(test)]
    fn feed(&mut self, answers: VecDeque<Answer>) -> bool {
        answers.into_iter().for_each(|a| self.feed_one(a));
        self.phase == Phase::Done
    }

    /// One answer of the engine as an output; nothing after the connection is done.
    fn feed_one(&mut self, answer: Answer) {
        if self.phase == Phase::Done {
            return;
        }
        let Some(output) = output(answer) else {
            return;
        };
        self.phase = match (&output, self.phase) {
            (Output::Accept { .. }, Phase::Http) => Phase::WebSocket,
            (Output::Response { .. } | Output::Close(_), _) => Phase::Done,
            (_, phase) => phase,
        };
        self.outputs.push_back(output);
    }

    /// The engine closed the connection; say so unless the last output already did.
    fn finish(&mut self) {
        if self.phase != Phase::Done {
            let code = match self.phase {
                Phase::WebSocket => Some(websocket::close_code::INTERNAL_ERROR),
                _ => None,
            };
            self.outputs.push_back(Output::Close(code));
        }
        self.phase = Phase::Done;
    }
}

impl Default for VirtualConns {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualConns {
    pub fn new() -> Self {
        VirtualConns {
            conns: IdMap::default(),
            next_conn: FIRST_CONN,
            ready: Vec::new(),
            dirty: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn open(&mut self, engine: &mut Engine, remote: Option<SocketAddr>) -> ConnId {
        let conn = self.next_conn;
        self.next_conn = conn.next();
        self.conns.insert(
            conn,
            VirtualConn {
                phase: Phase::Http,
                outputs: VecDeque::new(),
                queued: false,
                bytes: 0,
            },
        );
        engine.on_connect_typed(conn, remote);
        conn
    }

    /// A new connection carrying one HTTP request, whose body the caller has read in full. The answer may come
    /// at once (see `collect`) or later: a long-polling GET waits for packets.
    #[allow(clippy::too_many_arguments)]
    pub fn request<H: AsRef<[u8]>>(
        &mut self,
        engine: &mut Engine,
        method: &str,
        target: &str,
        headers: &[(H, H)],
        body: &[u8],
        remote: Option<SocketAddr>,
        now: Instant,
    ) -> ConnId {
        let conn = self.open(engine, remote);
        let request = make_request(method, target, headers, body, false);
        engine.on_request(conn, request, now);
        conn
    }

    /// A new connection carrying a WebSocket opening handshake.
    pub fn websocket<H: AsRef<[u8]>>(
        &mut self,
        engine: &mut Engine,
        target: &str,
        headers: &[(H, H)],
        remote: Option<SocketAddr>,
        now: Instant,
    ) -> ConnId {
        let conn = self.open(engine, remote);
        let request = make_request("GET", target, headers, &[], true);
        engine.on_request(conn, request, now);
        conn
    }

    /// A message from the peer of an accepted WebSocket. False when `conn` is no open WebSocket.
    pub fn message(&mut self, engine: &mut Engine, conn: ConnId, data: Data, now: Instant) -> bool {
        let open = self.conns.get(&conn).map(|c| c.phase);
        if open != Some(Phase::WebSocket) {
            return false;
        }
        let message = match data {
            Data::Text(t) => Message::Text(t),
            Data::Binary(b) => Message::Binary(b),
        };
        engine.on_message(conn, message, now);
        true
    }

    /// The peer went away (or the request was cancelled): the engine hears it as a dropped TCP connection.
    pub fn disconnect(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        if self.conns.remove(&conn).is_some() {
            engine.on_disconnect(conn, now);
        }
    }

    /// Take the engine's answers on our connections into outputs, and let go of the connections the engine is
    /// done with. True when one was let go: that may give the engine new events and output, so the caller
    /// settles and collects again.
    pub fn collect(&mut self, engine: &mut Engine, now: Instant) -> bool {
        let mut dirty = std::mem::take(&mut self.dirty);
        engine.take_dirty(&mut dirty);
        let mut released = false;
        for conn in dirty.drain(..) {
            let Some(vc) = self.conns.get_mut(&conn) else {
                continue;
            };
            let before = vc.outputs.len();
            // Drained rather than taken: the engine's queue keeps its memory for the connection's next answers.
            engine.drain_answers(conn, |a| vc.feed_one(a));
            if vc.outputs.len() > before {
                // Messages the ASGI writer has not taken still wait for the peer: they count against it
                // (max_buffered, buffered_amount) as a socket's unwritten bytes do.
                vc.bytes += vc
                    .outputs
                    .iter()
                    .skip(before)
                    .map(Output::len)
                    .sum::<usize>();
                engine.set_backlog(conn, vc.bytes);
            }
            let mut done = vc.phase == Phase::Done;
            if engine.should_close(conn) {
                vc.finish();
                done = true;
            }
            if done {
                engine.forget(conn, now);
                released = true;
            }
            if vc.outputs.len() > before && !vc.queued {
                vc.queued = true;
                self.ready.push(conn);
            }
        }
        self.dirty = dirty;
        released
    }

    /// Run the core until it is quiet: its timers due at `now`, its events through every layer, output into
    /// the virtual connections (letting one go can close a session, which makes more events and output).
    pub fn settle<L: Layer>(&mut self, core: &mut Core<L>, now: Instant) {
        loop {
            core.settle(now);
            if !self.collect(&mut core.engine, now) && !core.engine.has_events() {
                return;
            }
        }
    }

    /// Connections with outputs waiting since the last call.
    pub fn take_ready(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.ready)
    }

    /// Outputs of `conn`, oldest first. A connection whose last output was taken after the engine let it go is
    /// forgotten; an unknown `conn` gives nothing.
    pub fn take(&mut self, engine: &mut Engine, conn: ConnId) -> Vec<Output> {
        let Some(vc) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        vc.queued = false;
        if vc.bytes > 0 {
            vc.bytes = 0;
            engine.set_backlog(conn, 0);
        }
        let out: Vec<Output> = vc.outputs.drain(..).collect();
        if matches!(vc.phase, Phase::Done) {
            self.conns.remove(&conn);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EngineOnly;
    use crate::engineio::{Config, Event, Packet};

    const NO_HEADERS: &[(&[u8], &[u8])] = &[];

    struct Harness {
        vc: VirtualConns,
        core: Core<EngineOnly>,
        now: Instant,
    }

    impl Harness {
        fn new() -> Self {
            let mut config = Config::default();
            config.set_path("/engine.io");
            Harness {
                vc: VirtualConns::new(),
                core: Core::new(Engine::new(config), EngineOnly::default()),
                now: Instant::now(),
            }
        }

        fn settle(&mut self) {
            self.vc.settle(&mut self.core, self.now);
        }

        fn request(&mut self, method: &str, query: &str, body: &[u8]) -> ConnId {
            let (engine, target) = (&mut self.core.engine, format!("/engine.io/?EIO=4&{query}"));
            let conn = (self.vc).request(engine, method, &target, NO_HEADERS, body, None, self.now);
            self.settle();
            conn
        }

        fn websocket(&mut self, query: &str, headers: &[(&[u8], &[u8])]) -> ConnId {
            let target = format!("/engine.io/?EIO=4&{query}");
            let conn = self
                .vc
                .websocket(&mut self.core.engine, &target, headers, None, self.now);
            self.settle();
            conn
        }

        fn message(&mut self, conn: ConnId, data: Data) -> bool {
            let sent = self.vc.message(&mut self.core.engine, conn, data, self.now);
            self.settle();
            sent
        }

        fn saw(&mut self, what: impl Fn(&Event) -> bool) -> bool {
            std::iter::from_fn(|| self.core.poll_event()).any(|e| what(&e))
        }

        /// A polling session; its sid.
        fn handshake(&mut self) -> String {
            let conn = self.request("GET", "transport=polling", b"");
            assert_eq!(self.vc.take_ready(), vec![conn]);
            let body = text(&self.vc.take(&mut self.core.engine, conn)[0]);
            assert!(body.starts_with("0{\"sid\":"), "{body}");
            assert!(self.vc.is_empty(), "an answered request is let go");
            let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
            open["sid"].as_str().unwrap().to_owned()
        }
    }

    fn text(o: &Output) -> String {
        match o {
            Output::Response { body, .. } => String::from_utf8_lossy(body).into_owned(),
            Output::Message(Data::Text(t)) => t.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn polling_handshake_post_and_parked_get() {
        let mut h = Harness::new();
        let sid = h.handshake();
        let get = h.request("GET", &format!("transport=polling&sid={sid}"), b"");
        assert!(
            h.vc.take(&mut h.core.engine, get).is_empty(),
            "the GET is parked"
        );
        let key = h.core.engine.key_of(&sid).unwrap();
        h.core.engine.send(key, Data::Text("hi".into()));
        h.settle();
        assert_eq!(h.vc.take_ready(), vec![get]);
        assert_eq!(text(&h.vc.take(&mut h.core.engine, get)[0]), "4hi");
        let post = h.request("POST", &format!("transport=polling&sid={sid}"), b"4yo");
        assert_eq!(text(&h.vc.take(&mut h.core.engine, post)[0]), "ok");
        assert!(h.saw(|e| matches!(e, Event::Message { data: Data::Text(t), .. } if t == "yo")));
    }

    #[test]
    fn dropping_a_parked_get_is_a_transport_error() {
        let mut h = Harness::new();
        let sid = h.handshake();
        let get = h.request("GET", &format!("transport=polling&sid={sid}"), b"");
        h.vc.disconnect(&mut h.core.engine, get, h.now);
        h.settle();
        assert!(h.saw(|e| matches!(e, Event::Close { .. })));
        assert!(h.vc.is_empty());
    }

    #[test]
    fn websocket_session_frames_both_ways_and_close() {
        let mut h = Harness::new();
        let headers: &[(&[u8], &[u8])] = &[(b"host", b"x"), (b"sec-websocket-key", b"?")];
        let ws = h.websocket("transport=websocket", headers);
        let out = h.vc.take(&mut h.core.engine, ws);
        assert!(matches!(&out[0], Output::Accept { headers } if headers.is_empty()));
        assert!(text(&out[1]).starts_with("0{"));
        assert!(h.message(ws, Data::Text("4hello".into())));
        assert!(h.message(ws, Data::Binary(vec![1, 2])));
        let events: Vec<Event> = std::iter::from_fn(|| h.core.poll_event()).collect();
        let Some(Event::Open { key, .. }) = events.first() else {
            panic!("{events:?}")
        };
        assert!(matches!(&events[1], Event::Message { data: Data::Text(t), .. } if t == "hello"));
        assert!(matches!(&events[2], Event::Message { data: Data::Binary(b), .. } if b == &[1, 2]));
        h.core.engine.send(*key, Data::Binary(vec![9]));
        h.core.engine.close(*key, h.now);
        h.settle();
        let out = h.vc.take(&mut h.core.engine, ws);
        assert_eq!(out[0], Output::Message(Data::Binary(vec![9])));
        assert!(matches!(out.last(), Some(Output::Close(Some(_)))));
        assert!(h.vc.is_empty());
        assert!(!h.message(ws, Data::Text("4late".into())));
    }

    #[test]
    fn upgrade_from_polling_to_websocket() {
        let mut h = Harness::new();
        let sid = h.handshake();
        let get = h.request("GET", &format!("transport=polling&sid={sid}"), b"");
        let ws = h.websocket(&format!("transport=websocket&sid={sid}"), NO_HEADERS);
        assert!(matches!(
            h.vc.take(&mut h.core.engine, ws).as_slice(),
            [Output::Accept { .. }]
        ));
        h.message(ws, Data::Text("2probe".into()));
        assert_eq!(text(&h.vc.take(&mut h.core.engine, ws)[0]), "3probe");
        assert_eq!(
            text(&h.vc.take(&mut h.core.engine, get)[0]),
            "6",
            "the parked GET is released"
        );
        h.message(ws, Data::Text("5".into()));
        assert!(h.saw(|e| matches!(e, Event::Upgrade { .. })));
        h.core
            .engine
            .send(h.core.engine.key_of(&sid).unwrap(), Data::Text("x".into()));
        h.settle();
        assert_eq!(text(&h.vc.take(&mut h.core.engine, ws)[0]), "4x");
    }

    /// The engine's limits hold for values as for bytes: max_payload bounds a POST body and a message.
    #[test]
    fn max_payload_bounds_typed_bodies_and_messages() {
        let mut h = Harness::new();
        h.core.engine.config.max_payload = 8;
        let sid = h.handshake();
        let post = h.request(
            "POST",
            &format!("transport=polling&sid={sid}"),
            b"4123456789",
        );
        assert!(matches!(
            h.vc.take(&mut h.core.engine, post)[0],
            Output::Response { status: 413, .. }
        ));
        let ws = h.websocket("transport=websocket", NO_HEADERS);
        assert!(matches!(
            h.vc.take(&mut h.core.engine, ws)[0],
            Output::Accept { .. }
        ));
        assert!(h.message(ws, Data::Text("4123456789".into())));
        let out = h.vc.take(&mut h.core.engine, ws);
        assert_eq!(out.last(), Some(&Output::Close(Some(1009))), "{out:?}");
        assert!(h.saw(|e| matches!(e, Event::Close { .. })));
    }

    #[test]
    fn the_asgi_server_negotiates_permessage_deflate_not_the_engine() {
        let mut h = Harness::new();
        h.core.engine.config.per_message_deflate = Some(Default::default());
        let headers: &[(&[u8], &[u8])] = &[(
            b"sec-websocket-extensions",
            b"permessage-deflate; client_max_window_bits",
        )];
        let ws = h.websocket("transport=websocket", headers);
        let out = h.vc.take(&mut h.core.engine, ws);
        assert!(
            matches!(&out[0], Output::Accept { headers } if headers.is_empty()),
            "{out:?}"
        );
    }

    #[test]
    fn refused_websocket_handshake_is_a_response() {
        let mut h = Harness::new();
        let ws = h.websocket("transport=websocket&sid=nope", NO_HEADERS);
        let out = h.vc.take(&mut h.core.engine, ws);
        assert!(
            matches!(&out[0], Output::Response { status: 400, .. }),
            "{out:?}"
        );
        assert!(out.len() == 1 || matches!(out[1], Output::Close(None)));
    }

    #[test]
    fn hostile_request_parts_still_make_one_request() {
        let headers: &[(&[u8], &[u8])] = &[
            (b"X-Ok", b" 1 "),
            (b"bad name", b"v"),
            (b"x-split", b"a\r\nInjected: yes"),
            (b"content-length", b"999"),
            (b"transfer-encoding", b"chunked"),
            (b"host", b"a"),
            (b"Host", b"b"),
            (b"x-latin", b"caf\xe9"),
        ];
        let req = make_request("G ET", "p ath\r\n?q=\u{e9}", headers, b"xy", false);
        let field = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let want = Request {
            method: Method::Other("INVALID".into()),
            path: "/p%20ath%0D%0A".into(),
            query: "q=%C3%A9".into(),
            minor_version: 1,
            headers: vec![
                field("x-ok", "1"),
                field("host", "a"),
                field("x-latin", "caf\u{e9}"),
                field("content-length", "2"),
            ],
            body: b"xy".to_vec(),
        };
        assert_eq!(req, want);
        let long = "M".repeat(crate::http::MAX_METHOD_BYTES + 1);
        let req = make_request(&long, "/", headers, b"", true);
        assert_eq!(req.method, Method::Other("INVALID".into()));
        let req = make_request("GET", "/x", &[] as &[(&[u8], &[u8])], b"", true);
        assert!(req.is_websocket_upgrade() && req.header("host") == Some("localhost"));
    }

    #[test]
    fn outputs_end_the_connection_once() {
        let mut c = VirtualConn {
            phase: Phase::Http,
            outputs: VecDeque::new(),
            queued: false,
            bytes: 0,
        };
        let accept = Answer::Accept(Response::new(101));
        let hello = Answer::Packet(Packet::Message(Data::Text("hi".into())));
        let close = Answer::Close {
            code: None,
            reason: String::new(),
        };
        assert!(!c.feed([accept, hello.clone(), Answer::Continue].into()));
        assert_eq!(c.phase, Phase::WebSocket);
        assert!(c.feed([close, hello].into()));
        assert_eq!(c.outputs.len(), 3, "nothing after the close");
        c.finish();
        assert_eq!(c.outputs.back(), Some(&Output::Close(Some(1000))));

        let mut c = VirtualConn {
            phase: Phase::WebSocket,
            outputs: VecDeque::new(),
            queued: false,
            bytes: 0,
        };
        c.finish();
        let code = Some(websocket::close_code::INTERNAL_ERROR);
        assert_eq!(c.outputs.pop_front(), Some(Output::Close(code)));
    }

    /// An ASGI answer carries what the encoded one would, less what the server frames itself.
    #[test]
    fn answers_become_what_the_asgi_server_sends() {
        let res = Response::new(200)
            .with_header("Connection", "close")
            .with_header("X-Split", "a\r\nInjected: yes")
            .with_body("text/plain", b"ok".to_vec());
        let accept = Response::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Accept", "x")
            .with_header("Set-Cookie", "io=1");
        let field = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let want = Output::Response {
            status: 200,
            headers: vec![
                field("X-Split", "a  Injected: yes"),
                field("Content-Type", "text/plain"),
                field("Content-Length", "2"),
            ],
            body: b"ok".to_vec(),
        };
        assert_eq!(output(Answer::Response(res)), Some(want));
        let headers = vec![field("Set-Cookie", "io=1")];
        assert_eq!(
            output(Answer::Accept(accept)),
            Some(Output::Accept { headers })
        );
        let shared = std::sync::Arc::new(Packet::Message(Data::Binary(vec![1])));
        let message = Output::Message(Data::Binary(vec![1]));
        assert_eq!(output(Answer::Shared(shared)), Some(message));
        assert_eq!(output(Answer::Pong(vec![])), None);
        assert_eq!(output(Answer::Abandon), None);
    }
}
