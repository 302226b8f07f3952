//! The socket-less driver: connections whose bytes come from somewhere else (an ASGI server), fed to the same
//! `Engine` the mio driver feeds.
//!
//! ```text
//! HTTP request       request() writes it to the engine as HTTP/1.1 (framing and hop-by-hop fields are ours);
//!                    the engine's response is parsed back into Output::Response; then the connection is done
//! WebSocket request  websocket() writes a GET with Upgrade; a 101 becomes Output::Accept and the connection
//!                    turns into a WebSocket, any other answer is an Output::Response (the handshake is refused)
//! WebSocket          message() re-frames each message as a client frame; the engine's frames come back as
//!                    Output::Message, its close frame (or its closing the connection) as Output::Close
//! ```
//! The ASGI server has already parsed HTTP and WebSocket framing; re-encoding costs a copy but keeps one state
//! machine for both drivers, so sessions, upgrades and heartbeats behave the same under ASGI as standalone.
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use crate::core::{Core, Layer};
use crate::engineio::{ConnId, Data, Engine};
use crate::websocket::{self, Message, Opcode};

/// Above the mio driver's ids (which start at 2^20 and count up), so both can share an engine.
const FIRST_CONN: ConnId = ConnId(1 << 62);
/// The ASGI server checked the client's key and computes Sec-WebSocket-Accept itself; the engine only needs
/// a valid one (RFC 6455's example nonce).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// A client frame's mask key. All zeros leaves the payload as it is, which is legal and saves a pass over it;
/// masking protects intermediaries, and there are none between the ASGI server and the engine.
const ZERO_MASK: [u8; 4] = [0; 4];

/// Fields the driver owns: framing, connection management, and the WebSocket handshake it writes itself.
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
/// Fields of the engine's answers the ASGI server writes itself.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding"];
const HANDSHAKE_FIELDS: &[&str] = &["upgrade", "connection", "sec-websocket-accept"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The answer to an HTTP request, or a refused WebSocket handshake.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The WebSocket handshake was accepted; the fields to add to the ASGI server's 101 (Set-Cookie).
    Accept {
        headers: Vec<(String, String)>,
    },
    Message(Data),
    /// The engine is done with the connection: a WebSocket close code, or None when it closed without a
    /// close frame or, for HTTP, without an answer.
    Close(Option<u16>),
}

enum Phase {
    /// Collecting the engine's HTTP response.
    Http {
        buf: Vec<u8>,
        websocket: bool,
    },
    WebSocket(websocket::ClientDecoder),
    Done,
}

struct VirtualConn {
    phase: Phase,
    outputs: VecDeque<Output>,
    queued: bool,
}

pub struct VirtualConns {
    conns: HashMap<ConnId, VirtualConn>,
    next_conn: ConnId,
    ready: Vec<ConnId>,
    dirty: Vec<ConnId>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The HTTP/1.1 request the engine parses. Whatever the caller passes, the result is one well-formed request:
/// bytes outside the request-target's alphabet are percent-encoded, fields with an invalid name or value are
/// left out, and exactly one Host is sent (HTTP/2 requests may come without one).
fn write_request<H: AsRef<[u8]>>(
    method: &str,
    target: &str,
    headers: &[(H, H)],
    body: &[u8],
    websocket: bool,
    out: &mut Vec<u8>,
) {
    let method = match method.bytes().all(is_tchar) && !method.is_empty() {
        true => method,
        false => "INVALID",
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if !target.starts_with('/') {
        out.push(b'/');
    }
    for b in target.bytes() {
        if (0x21..=0x7e).contains(&b) {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
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
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !host {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    if websocket {
        let _ = write!(
            out,
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
    } else {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    if !websocket {
        out.extend_from_slice(body);
    }
}

struct ParsedHead {
    status: u16,
    headers: Vec<(String, String)>,
    content_length: usize,
    /// Bytes of the status line and fields, including the blank line.
    len: usize,
}

/// A response head as `http::Response::encode` writes it. None: incomplete (or not HTTP, which the engine
/// never writes; the connection then waits for the engine to close it).
fn parse_head(buf: &[u8]) -> Option<ParsedHead> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(buf.get(..end)?);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut content_length = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Some(ParsedHead {
        status,
        headers,
        content_length,
        len: end + 4,
    })
}

fn without(headers: Vec<(String, String)>, names: &[&str]) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(n, _)| !names.iter().any(|d| n.eq_ignore_ascii_case(d)))
        .collect()
}

impl VirtualConn {
    /// Bytes the engine wrote; returns true when the engine is done with this connection (an HTTP answer is
    /// complete, or the WebSocket sent its close frame).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        match &mut self.phase {
            Phase::Http { buf, websocket } => {
                buf.extend_from_slice(bytes);
                let Some(head) = parse_head(buf) else {
                    return false;
                };
                if *websocket && head.status == 101 {
                    let rest = buf.get(head.len..).unwrap_or_default().to_vec();
                    self.outputs.push_back(Output::Accept {
                        headers: without(head.headers, HANDSHAKE_FIELDS),
                    });
                    // The engine's frames are trusted: no message limit beyond what it wrote.
                    self.phase = Phase::WebSocket(websocket::ClientDecoder::new(usize::MAX));
                    return self.feed(&rest);
                }
                let bodiless = matches!(head.status, 100..=199 | 204 | 304);
                let body_len = if bodiless { 0 } else { head.content_length };
                let Some(body) = buf.get(head.len..head.len.saturating_add(body_len)) else {
                    return false;
                };
                self.outputs.push_back(Output::Response {
                    status: head.status,
                    headers: without(head.headers, HOP_BY_HOP),
                    body: body.to_vec(),
                });
                self.phase = Phase::Done;
                true
            }
            Phase::WebSocket(decoder) => {
                decoder.feed(bytes);
                loop {
                    match decoder.next_message() {
                        Ok(None) => return false,
                        Ok(Some(Message::Text(t))) => {
                            self.outputs.push_back(Output::Message(Data::Text(t)))
                        }
                        Ok(Some(Message::Binary(b))) => {
                            self.outputs.push_back(Output::Message(Data::Binary(b)))
                        }
                        // The ASGI server answers the peer's pings itself; the engine sends none.
                        Ok(Some(Message::Ping(_) | Message::Pong(_))) => {}
                        Ok(Some(Message::Close(code, _))) => {
                            self.outputs
                                .push_back(Output::Close(Some(code.unwrap_or(1000))));
                            self.phase = Phase::Done;
                            return true;
                        }
                        Err(e) => {
                            self.outputs.push_back(Output::Close(Some(e.code)));
                            self.phase = Phase::Done;
                            return true;
                        }
                    }
                }
            }
            Phase::Done => true,
        }
    }

    /// The engine closed the connection; say so unless the last output already did.
    fn finish(&mut self) {
        let said = matches!(
            self.outputs.back(),
            Some(Output::Close(_) | Output::Response { .. })
        ) && matches!(self.phase, Phase::Done);
        if !said {
            let code = match self.phase {
                Phase::WebSocket(_) => Some(websocket::close_code::INTERNAL_ERROR),
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
            conns: HashMap::new(),
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

    fn open(&mut self, engine: &mut Engine, remote: Option<SocketAddr>, websocket: bool) -> ConnId {
        let conn = self.next_conn;
        self.next_conn = conn.next();
        self.conns.insert(
            conn,
            VirtualConn {
                phase: Phase::Http {
                    buf: Vec::new(),
                    websocket,
                },
                outputs: VecDeque::new(),
                queued: false,
            },
        );
        engine.on_connect(conn, remote);
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
        let conn = self.open(engine, remote, false);
        let mut bytes = Vec::with_capacity(256 + body.len());
        write_request(method, target, headers, body, false, &mut bytes);
        engine.on_bytes(conn, &bytes, now);
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
        let conn = self.open(engine, remote, true);
        let mut bytes = Vec::with_capacity(256);
        write_request("GET", target, headers, &[], true, &mut bytes);
        engine.on_bytes(conn, &bytes, now);
        conn
    }

    /// A message from the peer of an accepted WebSocket. False when `conn` is no open WebSocket.
    pub fn message(
        &mut self,
        engine: &mut Engine,
        conn: ConnId,
        data: &Data,
        now: Instant,
    ) -> bool {
        let open = self.conns.get(&conn).map(|c| &c.phase);
        if !matches!(open, Some(Phase::WebSocket(_))) {
            return false;
        }
        let (opcode, payload) = match data {
            Data::Text(t) => (Opcode::Text, t.as_bytes()),
            Data::Binary(b) => (Opcode::Binary, b.as_slice()),
        };
        let mut frame = Vec::with_capacity(payload.len() + 14);
        websocket::encode_frame_masked(opcode, payload, ZERO_MASK, &mut frame);
        engine.on_bytes(conn, &frame, now);
        true
    }

    /// The peer went away (or the request was cancelled): the engine hears it as a dropped TCP connection.
    pub fn disconnect(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        if self.conns.remove(&conn).is_some() {
            engine.on_disconnect(conn, now);
        }
    }

    /// Parse what the engine wrote to our connections into outputs, and let go of the connections the engine
    /// is done with. True when one was let go: that may give the engine new events and output, so the caller
    /// pumps events and collects again.
    pub fn collect(&mut self, engine: &mut Engine, now: Instant) -> bool {
        let mut dirty = std::mem::take(&mut self.dirty);
        engine.take_dirty(now, &mut dirty);
        let mut released = false;
        for conn in dirty.drain(..) {
            let Some(vc) = self.conns.get_mut(&conn) else {
                continue;
            };
            let before = vc.outputs.len();
            let bytes = engine.output(conn).map(std::mem::take).unwrap_or_default();
            let mut done = vc.feed(&bytes);
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
    pub fn take(&mut self, conn: ConnId) -> Vec<Output> {
        let Some(vc) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        vc.queued = false;
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
    use crate::engineio::{Config, Event};

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
            let sent = self
                .vc
                .message(&mut self.core.engine, conn, &data, self.now);
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
            let body = text(&self.vc.take(conn)[0]);
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
        assert!(h.vc.take(get).is_empty(), "the GET is parked");
        let key = h.core.engine.key_of(&sid).unwrap();
        h.core.engine.send(key, Data::Text("hi".into()));
        h.settle();
        assert_eq!(h.vc.take_ready(), vec![get]);
        assert_eq!(text(&h.vc.take(get)[0]), "4hi");
        let post = h.request("POST", &format!("transport=polling&sid={sid}"), b"4yo");
        assert_eq!(text(&h.vc.take(post)[0]), "ok");
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
        let out = h.vc.take(ws);
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
        let out = h.vc.take(ws);
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
        assert!(matches!(h.vc.take(ws).as_slice(), [Output::Accept { .. }]));
        h.message(ws, Data::Text("2probe".into()));
        assert_eq!(text(&h.vc.take(ws)[0]), "3probe");
        assert_eq!(text(&h.vc.take(get)[0]), "6", "the parked GET is released");
        h.message(ws, Data::Text("5".into()));
        assert!(h.saw(|e| matches!(e, Event::Upgrade { .. })));
        h.core
            .engine
            .send(h.core.engine.key_of(&sid).unwrap(), Data::Text("x".into()));
        h.settle();
        assert_eq!(text(&h.vc.take(ws)[0]), "4x");
    }

    #[test]
    fn refused_websocket_handshake_is_a_response() {
        let mut h = Harness::new();
        let ws = h.websocket("transport=websocket&sid=nope", NO_HEADERS);
        let out = h.vc.take(ws);
        assert!(
            matches!(&out[0], Output::Response { status: 400, .. }),
            "{out:?}"
        );
        assert!(out.len() == 1 || matches!(out[1], Output::Close(None)));
    }

    #[test]
    fn hostile_request_parts_still_make_one_request() {
        let mut out = Vec::new();
        let headers: &[(&[u8], &[u8])] = &[
            (b"x-ok", b"1"),
            (b"bad name", b"v"),
            (b"x-split", b"a\r\nInjected: yes"),
            (b"content-length", b"999"),
            (b"transfer-encoding", b"chunked"),
            (b"host", b"a"),
            (b"Host", b"b"),
        ];
        write_request(
            "G ET",
            "p ath\r\n?q=\u{e9}",
            headers,
            b"xy",
            false,
            &mut out,
        );
        let want = "INVALID /p%20ath%0D%0A?q=%C3%A9 HTTP/1.1\r\nx-ok: 1\r\nhost: a\r\n\
                    Content-Length: 2\r\n\r\nxy";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn response_heads_parse_or_wait() {
        let conn = || VirtualConn {
            phase: Phase::Http {
                buf: Vec::new(),
                websocket: false,
            },
            outputs: VecDeque::new(),
            queued: false,
        };
        let mut c = conn();
        assert!(!c.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nab"));
        assert!(c.outputs.is_empty());
        assert!(c.feed(b"cd"));
        let want = Output::Response {
            status: 200,
            headers: vec![("Content-Length".into(), "4".into())],
            body: b"abcd".to_vec(),
        };
        assert_eq!(c.outputs.pop_front(), Some(want));
        let mut c = conn();
        assert!(!c.feed(b"garbage\r\n\r\n"));
        c.finish();
        assert_eq!(c.outputs.pop_front(), Some(Output::Close(None)));
    }
}
