//! The Engine driven the way the socket driver drives it (through its connection layer, `driver::wire`),
//! without sockets or sleeping: raw request bytes in, the bytes it writes out, and `Instant`s the tests
//! construct. Wire examples come from tests/vectors/engineio_server.json, which the Python e2e tests replay
//! over real sockets.
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::driver::wire::Wire;
use crate::websocket::{self, ClientDecoder, Message, Opcode};

const VECTORS: &str = include_str!("../../tests/vectors/engineio_server.json");
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The vector file's configuration: the spec's test-suite server.
fn config() -> Config {
    let v = &vectors()["config"];
    let ms = |k: &str| Duration::from_millis(v[k].as_u64().unwrap());
    Config {
        ping_interval: ms("ping_interval_ms"),
        ping_timeout: ms("ping_timeout_ms"),
        max_payload: v["max_payload"].as_u64().unwrap() as usize,
        path: v["path"].as_str().unwrap().into(),
        cors: Some(Cors {
            origin: CorsOrigin::Any,
            credentials: false,
        }),
        ..Config::default()
    }
}

#[derive(Debug)]
struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} twice in {self:?}");
        first
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One response off the front of `bytes` (Content-Length framing, which is all the engine writes).
fn parse_response(bytes: &mut Vec<u8>) -> Res {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8(bytes[..end - 4].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let body = bytes[end..end + len].to_vec();
    bytes.drain(..end + len);
    Res {
        status,
        headers,
        body,
    }
}

fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut d = ClientDecoder::new(usize::MAX);
    d.feed(bytes);
    std::iter::from_fn(|| d.next_message().unwrap()).collect()
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

fn masked(op: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    websocket::encode_frame_masked(op, payload, [1, 2, 3, 4], &mut out);
    out
}

fn get(query: &str) -> String {
    format!("GET /engine.io/?EIO=4&transport=polling&{query} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn post(sid: &str, body: &str) -> String {
    format!(
        "POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn ws_request(query: &str) -> String {
    format!(
        "GET /engine.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// An engine with the socket driver's connection layer, a clock and connection ids.
struct T {
    e: Engine,
    wire: Wire,
    now: Instant,
    next: ConnId,
    /// Events `echo` saw but did not consume.
    seen: Vec<Event>,
}

impl T {
    fn new(config: Config) -> T {
        T {
            e: Engine::new(config),
            wire: Wire::new(),
            now: Instant::now(),
            next: ConnId(1),
            seen: Vec::new(),
        }
    }

    fn connect(&mut self) -> ConnId {
        self.next = self.next.next();
        self.wire.connect(&mut self.e, self.next, None, None);
        self.next
    }

    fn send(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        self.wire.input(&mut self.e, conn, bytes.as_ref(), self.now);
    }

    /// What the engine has written to `conn` so far (after answering parked GETs and reading the requests
    /// pipelined behind them, as the driver does).
    fn out(&mut self, conn: ConnId) -> Vec<u8> {
        let mut dirty = Vec::new();
        self.wire.take_dirty(&mut self.e, self.now, &mut dirty);
        let out = (self.wire.output(&mut self.e, conn)).map_or_else(Vec::new, <[u8]>::to_vec);
        self.wire.written(&mut self.e, conn, out.len());
        out
    }

    /// Send a request on a fresh connection; its one response.
    fn request(&mut self, raw: &str) -> (ConnId, Res) {
        let c = self.connect();
        self.send(c, raw);
        let mut out = self.out(c);
        let res = parse_response(&mut out);
        assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
        (c, res)
    }

    fn events(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.seen);
        events.extend(std::iter::from_fn(|| self.e.poll_event()));
        events
    }

    /// Reports of bad input: refusals with Node's errors and the rest.
    fn errors(&mut self) -> usize {
        let events = self.events();
        events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ProtocolError { .. } | Event::ConnectionError { .. }
                )
            })
            .count()
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.e.handle_timeout(self.now);
        self.wire.handle_timeout(&mut self.e, self.now);
    }

    /// A polling session: (sid, key).
    fn polling(&mut self) -> (String, SessionKey) {
        let (_, res) = self.request(&get(""));
        let open: Value = serde_json::from_str(&res.text()[1..]).unwrap();
        let sid = open["sid"].as_str().unwrap().to_owned();
        let key = self.e.key_of(&sid).unwrap();
        self.events();
        (sid, key)
    }

    /// A WebSocket-only session: (conn, key).
    fn websocket(&mut self) -> (ConnId, SessionKey) {
        let c = self.connect();
        self.send(c, ws_request(""));
        let mut out = self.out(c);
        assert_eq!(parse_response(&mut out).status, 101);
        let Some(Event::Open { key, .. }) = self.e.poll_event() else {
            panic!("no open event");
        };
        (c, key)
    }

    /// Echo every message, as the vector file's server does.
    fn echo(&mut self) {
        for ev in self.events() {
            match ev {
                Event::Message { key, data } => _ = self.e.send(key, data),
                other => self.seen.push(other),
            }
        }
    }

    fn closes(&mut self) -> Vec<CloseReason> {
        let events = self.events();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Close { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn polling_handshake() {
    let v = &vectors()["handshake"]["polling"];
    let mut t = T::new(config());
    let (c, res) = t.request(v["request"].as_str().unwrap());
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), v["content_type"].as_str());
    let sid = res.text()[9..29].to_owned();
    assert_eq!(
        res.text(),
        v["body"].as_str().unwrap().replace("<sid>", &sid)
    );
    assert!(sid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(!t.e.should_close(c));
    assert_eq!(t.e.session_count(), 1);
    let key = t.e.key_of(&sid).unwrap();
    assert!(
        matches!(&t.events()[..], [Event::Open { key: k, transport: Transport::Polling, .. }] if *k == key)
    );
}

#[test]
fn websocket_handshake_and_pipelined_frame() {
    let v = &vectors()["handshake"]["websocket"];
    let mut t = T::new(config());
    let c = t.connect();
    let mut bytes = v["request"].as_str().unwrap().as_bytes().to_vec();
    bytes.extend(masked(Opcode::Text, b"4early"));
    t.send(c, bytes);
    let mut out = t.out(c);
    let res = parse_response(&mut out);
    assert_eq!(res.status, 101);
    assert_eq!(res.header("sec-websocket-accept"), v["accept"].as_str());
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let events = t.events();
    let Event::Open { sid, key, .. } = &events[0] else {
        panic!("{events:?}")
    };
    let first = v["first_frame"].as_str().unwrap().replace("<sid>", sid);
    assert_eq!(frames(&out), [text(&first)]);
    // The frame sent together with the handshake is not left waiting for more bytes.
    let msg = Event::Message {
        key: *key,
        data: Data::Text("early".into()),
    };
    assert_eq!(events[1], msg);
}

#[test]
fn every_error_response() {
    for case in vectors()["errors"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut t = T::new(config());
        let mut request = case["request"].as_str().unwrap().to_owned();
        if case["session"] == true {
            request = request.replace("<sid>", &t.polling().0);
        }
        let (c, res) = t.request(&request);
        assert_eq!(res.status, case["status"], "{name}");
        if let Some(body) = case.get("json") {
            assert_eq!(res.json(), *body, "{name}");
            assert_eq!(
                res.header("content-type"),
                Some("application/json"),
                "{name}"
            );
            assert_eq!(
                res.header("access-control-allow-origin"),
                Some("*"),
                "{name}"
            );
        } else {
            assert_eq!(res.text(), case["text"].as_str().unwrap(), "{name}");
        }
        let close = case["close"] == true;
        assert_eq!(t.e.should_close(c), close, "{name}");
        assert_eq!(res.header("connection") == Some("close"), close, "{name}");
        assert_eq!(t.errors(), 1, "{name}: one report per bad input");
    }
}

#[test]
fn refused_websocket_for_the_polling_transport_is_closed_after_101() {
    let mut t = T::new(config());
    let c = t.connect();
    t.send(
        c,
        ws_request("").replace("transport=websocket", "transport=polling"),
    );
    let mut out = t.out(c);
    assert_eq!(parse_response(&mut out).status, 101);
    assert_eq!(frames(&out), [Message::Close(None, String::new())]);
    assert!(t.e.should_close(c));
    assert_eq!(t.e.session_count(), 0);
    assert_eq!(t.errors(), 1);
}

#[test]
fn get_parks_until_there_is_something_to_send() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    assert!(t.out(c).is_empty());
    // Sends between two driver turns make one payload.
    assert!(t.e.send(key, Data::Text("a".into())));
    assert!(t.e.send(key, Data::Binary(vec![1, 2, 3])));
    let res = parse_response(&mut t.out(c));
    assert_eq!((res.status, res.text()), (200, "4a\u{1e}bAQID"));
    // Queued while no GET waits, answered at once by the next one.
    t.e.send(key, Data::Text("b".into()));
    t.send(c, get(&format!("sid={sid}")));
    assert_eq!(parse_response(&mut t.out(c)).text(), "4b");
}

#[test]
fn post_delivers_messages_in_order() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let (_, res) = t.request(&post(&sid, "4hello\u{1e}bAQID\u{1e}4€"));
    assert_eq!((res.status, res.text()), (200, "ok"));
    let data: Vec<Data> = t
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { key: k, data } if k == key => Some(data),
            _ => None,
        })
        .collect();
    let expected = [
        Data::Text("hello".into()),
        Data::Binary(vec![1, 2, 3]),
        Data::Text("€".into()),
    ];
    assert_eq!(data, expected);
}

#[test]
fn chunked_post() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let head = post(&sid, "").replace("Content-Length: 0", "Transfer-Encoding: chunked");
    t.request(&format!("{head}3\r\n4he\r\n4\r\nllo!\r\n0\r\n\r\n"));
    let msg = Event::Message {
        key,
        data: Data::Text("hello!".into()),
    };
    assert_eq!(t.events(), [msg]);
}

#[test]
fn expect_100_continue() {
    let mut t = T::new(config());
    let (sid, _) = t.polling();
    let c = t.connect();
    let head = post(&sid, "4hello").replace("Host: x\r\n", "Host: x\r\nExpect: 100-continue\r\n");
    let (head, body) = head.split_at(head.len() - 6);
    t.send(c, head);
    let mut out = t.out(c);
    assert_eq!(parse_response(&mut out).status, 100);
    t.send(c, body);
    assert_eq!(parse_response(&mut t.out(c)).text(), "ok");
}

#[test]
fn post_vectors() {
    for case in vectors()["posts"].as_array().unwrap() {
        let body = case["body"].as_str().unwrap();
        let mut t = T::new(config());
        let (sid, _) = t.polling();
        let mut raw = post(&sid, body);
        if let Some(ct) = case["content_type"].as_str() {
            raw = raw.replace("Host: x\r\n", &format!("Host: x\r\nContent-Type: {ct}\r\n"));
        }
        let (_, res) = t.request(&raw);
        assert_eq!(
            u64::from(res.status),
            case["status"].as_u64().unwrap_or(200),
            "{body:?}"
        );
        t.echo();
        let closes = t.closes();
        if let Some(reason) = case["close"].as_str() {
            let reasons: Vec<&str> = closes.iter().map(|r| r.as_str()).collect();
            assert_eq!(reasons, [reason], "{body:?}");
            let (_, res) = t.request(&get(&format!("sid={sid}")));
            assert_eq!(res.json()["code"], 1, "{body:?}: the sid is forgotten");
            continue;
        }
        assert!(closes.is_empty(), "{body:?}");
        let c = t.connect();
        t.send(c, get(&format!("sid={sid}")));
        match case["echo"].as_str() {
            Some(echo) => assert_eq!(parse_response(&mut t.out(c)).text(), echo),
            None => assert!(
                t.out(c).is_empty(),
                "{body:?}: nothing to send, the GET waits"
            ),
        }
    }
}

#[test]
fn websocket_frame_vectors() {
    for case in vectors()["ws_frames"].as_array().unwrap() {
        let mut t = T::new(config());
        let (c, key) = t.websocket();
        t.out(c);
        let frame = match (case["text"].as_str(), case["binary"].as_str()) {
            (Some(s), _) => masked(Opcode::Text, s.as_bytes()),
            (_, Some(h)) => masked(Opcode::Binary, &hex(h)),
            _ => unreachable!(),
        };
        t.send(c, frame);
        t.echo();
        let out = frames(&t.out(c));
        let closes = t.closes();
        if let Some(reason) = case["close"].as_str() {
            let reasons: Vec<&str> = closes.iter().map(|r| r.as_str()).collect();
            assert_eq!(reasons, [reason], "{case}");
            assert_eq!(out, [Message::Close(None, String::new())], "{case}");
            assert!(t.e.should_close(c));
            continue;
        }
        assert!(closes.is_empty(), "{case}");
        let echo = &case["echo"];
        let expected: Vec<Message> = match (echo["text"].as_str(), echo["binary"].as_str()) {
            (Some(s), _) => vec![text(s)],
            (_, Some(h)) => vec![Message::Binary(hex(h))],
            _ => vec![],
        };
        assert_eq!(out, expected, "{case}");
        assert!(t.e.send(key, Data::Text("still".into())), "{case}");
    }
}

#[test]
fn upgrade_releases_the_parked_get_with_noop() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let poll = t.connect();
    t.send(poll, get(&format!("sid={sid}")));
    let ws = t.connect();
    t.send(ws, ws_request(&format!("&sid={sid}")));
    let mut out = t.out(ws);
    assert_eq!(parse_response(&mut out).status, 101);
    assert!(out.is_empty(), "no open packet on an upgrade");
    t.send(ws, masked(Opcode::Text, b"2probe"));
    assert_eq!(frames(&t.out(ws)), [text("3probe")]);
    assert_eq!(parse_response(&mut t.out(poll)).text(), "6");
    // Sent during the upgrade: queued, then delivered on the WebSocket once it completes.
    t.e.send(key, Data::Text("queued".into()));
    t.send(ws, masked(Opcode::Text, b"5"));
    assert_eq!(frames(&t.out(ws)), [text("4queued")]);
    assert!(t.events().contains(&Event::Upgrade { key }));
    assert_eq!(t.e.transport_of(key), Some(Transport::WebSocket));
    t.e.send(key, Data::Binary(vec![9]));
    assert_eq!(frames(&t.out(ws)), [Message::Binary(vec![9])]);
    // Polling is over for this session: Node answers "Bad request" (transport mismatch).
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!(res.json()["code"], 3);
    // And a second WebSocket is accepted and closed at once.
    let again = t.connect();
    t.send(again, ws_request(&format!("&sid={sid}")));
    let mut out = t.out(again);
    assert_eq!(parse_response(&mut out).status, 101);
    assert_eq!(frames(&out), [Message::Close(None, String::new())]);
    assert!(t.e.send(key, Data::Text("still".into())));
}

#[test]
fn a_probe_that_does_not_finish_in_time_is_dropped() {
    let mut t = T::new(Config {
        upgrade_timeout: Duration::from_millis(100),
        ping_interval: Duration::from_secs(60),
        ..config()
    });
    let (sid, key) = t.polling();
    let ws = t.connect();
    t.send(ws, ws_request(&format!("&sid={sid}")));
    t.out(ws);
    t.send(ws, masked(Opcode::Text, b"2probe"));
    t.out(ws);
    t.advance(99);
    assert!(!t.e.should_close(ws));
    t.advance(1);
    assert_eq!(frames(&t.out(ws)), [Message::Close(None, String::new())]);
    assert_eq!(t.e.transport_of(key), Some(Transport::Polling));
    // A probe that sends anything but 2probe is dropped too; the session stays.
    let ws = t.connect();
    t.send(ws, ws_request(&format!("&sid={sid}")));
    t.out(ws);
    t.send(ws, masked(Opcode::Text, b"4x"));
    assert_eq!(frames(&t.out(ws)), [Message::Close(None, String::new())]);
    assert!(t.closes().is_empty());
    assert!(t.e.send(key, Data::Text("still".into())));
}

#[test]
fn ping_schedule_and_timeout_on_polling() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    assert_eq!(t.e.next_timeout(), Some(t.now + Duration::from_millis(300)));
    t.advance(299);
    assert!(t.out(c).is_empty());
    t.advance(1);
    assert_eq!(parse_response(&mut t.out(c)).text(), "2");
    // The pong arrives in time: the next ping is one interval after it.
    t.advance(150);
    t.request(&post(&sid, "3"));
    t.send(c, get(&format!("sid={sid}")));
    t.advance(299);
    assert!(t.out(c).is_empty());
    t.advance(1);
    assert_eq!(parse_response(&mut t.out(c)).text(), "2");
    // No pong: closed after ping_timeout, the waiting GET gets the close packet, the sid is forgotten.
    t.send(c, get(&format!("sid={sid}")));
    t.advance(199);
    assert!(t.closes().is_empty());
    t.advance(1);
    assert_eq!(t.closes(), [CloseReason::PingTimeout]);
    assert_eq!(parse_response(&mut t.out(c)).text(), "1");
    assert_eq!(t.e.sid_of(key), None);
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!(res.json()["code"], 1);
}

#[test]
fn an_unsolicited_pong_does_not_postpone_the_ping() {
    let mut t = T::new(config());
    let (sid, _) = t.polling();
    t.advance(200);
    t.request(&post(&sid, "3"));
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    t.advance(100);
    assert_eq!(parse_response(&mut t.out(c)).text(), "2");
}

#[test]
fn ping_timeout_on_websocket() {
    let mut t = T::new(config());
    let (c, _) = t.websocket();
    t.out(c);
    t.advance(300);
    assert_eq!(frames(&t.out(c)), [text("2")]);
    t.send(c, masked(Opcode::Text, b"3"));
    t.advance(300);
    assert_eq!(frames(&t.out(c)), [text("2")]);
    t.advance(200);
    assert_eq!(t.closes(), [CloseReason::PingTimeout]);
    assert_eq!(frames(&t.out(c)), [Message::Close(None, String::new())]);
    assert!(t.e.should_close(c));
    assert_eq!(t.e.session_count(), 0);
}

#[test]
fn server_close_on_polling() {
    let mut t = T::new(config());
    // With a GET waiting: it carries what is queued, then the close packet.
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    t.e.send(key, Data::Text("bye".into()));
    t.e.close(key, t.now);
    assert_eq!(parse_response(&mut t.out(c)).text(), "4bye\u{1e}1");
    assert_eq!(t.closes(), [CloseReason::ForcedClose]);
    assert_eq!(t.e.session_count(), 0);
    // Without one: the next GET gets the close packet, the one after is refused.
    let (sid, key) = t.polling();
    t.e.close(key, t.now);
    assert_eq!(t.closes(), [CloseReason::ForcedClose]);
    assert_eq!(t.e.session_count(), 0);
    assert!(!t.e.send(key, Data::Text("late".into())));
    assert_eq!(t.request(&get(&format!("sid={sid}"))).1.text(), "1");
    assert_eq!(t.request(&get(&format!("sid={sid}"))).1.json()["code"], 1);
    // A client that never comes back is forgotten after ping_timeout.
    let (sid, key) = t.polling();
    t.e.close(key, t.now);
    t.advance(200);
    assert_eq!(t.request(&get(&format!("sid={sid}"))).1.json()["code"], 1);
}

#[test]
fn server_close_on_websocket() {
    let mut t = T::new(config());
    let (c, key) = t.websocket();
    t.out(c);
    t.e.close(key, t.now);
    assert_eq!(frames(&t.out(c)), [Message::Close(None, String::new())]);
    assert!(t.e.should_close(c));
    assert_eq!(t.closes(), [CloseReason::ForcedClose]);
}

#[test]
fn client_close_on_polling() {
    let mut t = T::new(config());
    let (sid, _) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    t.request(&post(&sid, "1"));
    assert_eq!(t.closes(), [CloseReason::TransportClose]);
    assert_eq!(parse_response(&mut t.out(c)).text(), "6");
    // A GET that disconnects while parked: Node's "poll connection closed prematurely".
    let (sid, _) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    t.wire.disconnect(&mut t.e, c, t.now);
    assert_eq!(t.closes(), [CloseReason::TransportError]);
    assert_eq!(t.e.key_of(&sid), None);
}

#[test]
fn client_close_on_websocket() {
    let mut t = T::new(config());
    let (c, _) = t.websocket();
    t.out(c);
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend(b"bye");
    t.send(c, masked(Opcode::Close, &close));
    assert_eq!(
        frames(&t.out(c)),
        [Message::Close(Some(1000), "bye".into())]
    );
    assert!(t.e.should_close(c));
    assert_eq!(t.closes(), [CloseReason::TransportClose]);
    let (c, _) = t.websocket();
    t.wire.disconnect(&mut t.e, c, t.now);
    assert_eq!(t.closes(), [CloseReason::TransportClose]);
    assert_eq!(t.e.session_count(), 0);
}

#[test]
fn a_second_get_closes_the_session() {
    let mut t = T::new(config());
    let (sid, _) = t.polling();
    let first = t.connect();
    t.send(first, get(&format!("sid={sid}")));
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!((res.status, res.text()), (400, ""));
    assert_eq!(parse_response(&mut t.out(first)).text(), "1");
    let events = t.events();
    assert!(events.contains(&Event::Close {
        key: SessionKey(1),
        reason: CloseReason::TransportError
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::ProtocolError { .. }))
            .count(),
        1
    );
}

#[test]
fn payload_too_large() {
    let mut t = T::new(Config {
        max_payload: 100,
        ..config()
    });
    let (sid, key) = t.polling();
    let (_, res) = t.request(&post(&sid, &format!("4{}", "x".repeat(99))));
    assert_eq!(res.status, 200);
    let (c, res) = t.request(&post(&sid, &format!("4{}", "x".repeat(100))));
    assert_eq!(res.status, 413);
    assert!(t.e.should_close(c));
    assert_eq!(t.errors(), 1);
    assert!(t.e.send(key, Data::Text("the session lives".into())));
    let (c, _) = t.websocket();
    t.out(c);
    t.send(c, masked(Opcode::Text, &[b'4'; 100]));
    assert!(t
        .events()
        .iter()
        .any(|e| matches!(e, Event::Message { .. })));
    t.send(c, masked(Opcode::Binary, &[0; 101]));
    assert_eq!(
        frames(&t.out(c)),
        [Message::Close(Some(1009), String::new())]
    );
    let events = t.events();
    assert!(matches!(
        &events[..],
        [
            Event::ProtocolError { .. },
            Event::Close {
                reason: CloseReason::TransportError,
                ..
            }
        ]
    ));
}

#[test]
fn connection_limit() {
    let mut t = T::new(Config {
        max_connections: Some(1),
        ..config()
    });
    let (_, key) = t.polling();
    let (_, res) = t.request(&get(""));
    assert_eq!(res.status, 503);
    assert_eq!(
        res.json(),
        json!({"code": 4, "message": "Connection limit reached"})
    );
    t.e.close(key, t.now);
    assert_eq!(t.request(&get("")).1.status, 200);
}

#[test]
fn deferred_handshakes() {
    let mut t = T::new(Config {
        defer_handshakes: true,
        ..config()
    });
    let c = t.connect();
    t.send(c, get(""));
    assert!(t.out(c).is_empty());
    let Some(Event::Handshake { conn, request }) = t.e.poll_event() else {
        panic!()
    };
    assert_eq!(
        (conn, request.query.as_str()),
        (c, "EIO=4&transport=polling&")
    );
    t.e.refuse_handshake(c, ErrorCode::Forbidden, Some("go away"));
    let res = parse_response(&mut t.out(c));
    assert_eq!(res.status, 403);
    assert_eq!(res.json(), json!({"code": 4, "message": "go away"}));
    // Accepted with the application's sid; the same sid again is a bad request.
    for (sid, status) in [("my-id", 200), ("my-id", 400)] {
        let c = t.connect();
        t.send(c, get(""));
        t.e.accept_handshake(c, Some(sid.into()), t.now);
        let res = parse_response(&mut t.out(c));
        assert_eq!(res.status, status);
    }
    assert!(t.e.key_of("my-id").is_some());
    // As in Node, the protocol version is checked after the application agreed.
    let c = t.connect();
    t.send(c, get("").replace("EIO=4", "EIO=3"));
    assert!(matches!(t.events().last(), Some(Event::Handshake { .. })));
    t.e.accept_handshake(c, None, t.now);
    assert_eq!(parse_response(&mut t.out(c)).json()["code"], 5);
    // A refused WebSocket handshake gets Node's abortUpgrade answer.
    let c = t.connect();
    t.send(c, ws_request(""));
    t.e.refuse_handshake(c, ErrorCode::Forbidden, None);
    let res = parse_response(&mut t.out(c));
    assert_eq!((res.status, res.text()), (400, "Forbidden"));
    assert!(t.e.should_close(c));
}

#[test]
fn cors_vectors() {
    for case in vectors()["cors"].as_array().unwrap() {
        let origin = match &case["origins"] {
            Value::Null => None,
            Value::String(s) if s == "*" => Some(CorsOrigin::Any),
            Value::Array(list) => Some(CorsOrigin::List(
                list.iter().map(|o| o.as_str().unwrap().into()).collect(),
            )),
            other => panic!("{other}"),
        };
        let mut t = T::new(Config {
            cors: origin.map(|origin| Cors {
                origin,
                credentials: case["credentials"] == true,
            }),
            ..config()
        });
        let mut raw = get("");
        if let Some(o) = case["origin"].as_str() {
            raw = raw.replace("Host: x\r\n", &format!("Host: x\r\nOrigin: {o}\r\n"));
        }
        let (_, res) = t.request(&raw);
        for (name, value) in case["headers"].as_object().unwrap() {
            assert_eq!(res.header(name), value.as_str(), "{case}");
        }
    }
    let v = &vectors()["preflight"];
    let mut t = T::new(config());
    let (_, res) = t.request(v["request"].as_str().unwrap());
    assert_eq!(res.status, v["status"]);
    for (name, value) in v["headers"].as_object().unwrap() {
        assert_eq!(res.header(name), value.as_str(), "{name}");
    }
}

#[test]
fn cookie() {
    let mut t = T::new(config());
    assert_eq!(t.request(&get("")).1.header("set-cookie"), None);
    let mut t = T::new(Config {
        cookie: Some(Cookie::default()),
        ..config()
    });
    let expected = vectors()["cookie"]["set_cookie"]
        .as_str()
        .unwrap()
        .to_owned();
    let (sid, _) = t.polling();
    let key = t.e.key_of(&sid).unwrap();
    t.e.close(key, t.now);
    let (_, res) = t.request(&get(""));
    let sid = res.text()[9..29].to_owned();
    assert_eq!(
        res.header("set-cookie"),
        Some(&*expected.replace("<sid>", &sid))
    );
    let c = t.connect();
    t.send(c, ws_request(""));
    let res = parse_response(&mut t.out(c));
    let sid = t.e.sid_of(SessionKey(3)).unwrap().to_string();
    assert_eq!(
        res.header("set-cookie"),
        Some(&*expected.replace("<sid>", &sid))
    );
}

#[test]
fn broadcast_reaches_both_transports() {
    let mut t = T::new(config());
    let (sid, polling) = t.polling();
    let (ws, websocket) = t.websocket();
    t.out(ws);
    t.e.broadcast(
        &[polling, websocket, SessionKey(999)],
        Data::Binary(vec![7]),
    );
    assert_eq!(frames(&t.out(ws)), [Message::Binary(vec![7])]);
    assert_eq!(t.request(&get(&format!("sid={sid}"))).1.text(), "bBw==");
}

#[test]
fn too_much_input_behind_a_parked_get() {
    let mut t = T::new(Config {
        max_payload: 1000,
        ..config()
    });
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    let junk = vec![b'x'; 4096];
    for _ in 0..4 {
        t.send(c, &junk);
        assert!(!t.e.should_close(c));
    }
    t.send(c, &junk);
    assert!(t.e.should_close(c));
    let events = t.events();
    assert!(matches!(
        &events[..],
        [
            Event::ProtocolError { .. },
            Event::Close {
                reason: CloseReason::TransportError,
                ..
            }
        ]
    ));
    assert_eq!(t.e.sid_of(key), None);
}

#[test]
fn a_connection_closed_inside_a_request_is_reported() {
    let mut t = T::new(config());
    let c = t.connect();
    t.send(c, "GET /engine.io/?EIO=4&tra");
    t.wire.disconnect(&mut t.e, c, t.now);
    assert_eq!(t.errors(), 1);
    // Between requests, closing is what keep-alive clients do.
    let (c, _) = t.request(&get(""));
    t.wire.disconnect(&mut t.e, c, t.now);
    assert_eq!(t.errors(), 0);
}

#[test]
fn http_errors_close_the_connection() {
    let mut t = T::new(config());
    let (c, res) = t.request("GET /engine.io/?EIO=4&transport=polling HTTP/1.0\r\n\r\n");
    assert_eq!((res.status, res.header("connection")), (200, Some("close")));
    assert!(t.e.should_close(c));
    let big = format!(
        "GET /engine.io/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17_000)
    );
    let (c, res) = t.request(&big);
    assert_eq!(res.status, 431);
    assert!(t.e.should_close(c));
    let ok = format!(
        "{}X-Big: {}\r\n\r\n",
        &get("")[..get("").len() - 2],
        "a".repeat(16_000)
    );
    assert_eq!(t.request(&ok).1.status, 200);
}

#[test]
fn shutdown_closes_everything() {
    let mut t = T::new(config());
    let (sid, _) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    let (ws, _) = t.websocket();
    t.out(ws);
    t.e.shutdown(t.now);
    assert_eq!(parse_response(&mut t.out(c)).text(), "1");
    assert_eq!(frames(&t.out(ws)), [Message::Close(None, String::new())]);
    assert_eq!(t.closes(), [CloseReason::ServerShuttingDown; 2]);
    assert!(t.e.should_close(c) && t.e.should_close(ws));
    assert_eq!(t.e.session_count(), 0);
}

proptest! {
    #[test]
    fn messages_round_trip_through_polling(msgs in proptest::collection::vec(prop_oneof![
        "[^\u{1e}]{0,40}".prop_map(Data::Text),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Data::Binary),
    ], 1..6)) {
        let mut t = T::new(config());
        let (sid, key) = t.polling();
        let mut body = Vec::new();
        for m in &msgs {
            packet::push_payload_segment(&Packet::Message(m.clone()), &mut body);
        }
        let c = t.connect();
        let head = format!(
            "POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        t.send(c, [head.as_bytes(), &body].concat());
        let got: Vec<Data> = t.events().into_iter().filter_map(|e| match e {
            Event::Message { data, .. } => Some(data),
            _ => None,
        }).collect();
        prop_assert_eq!(&got, &msgs);
        for m in &msgs {
            t.e.send(key, m.clone());
        }
        let (_, res) = t.request(&get(&format!("sid={sid}")));
        let back: Vec<Packet> = packet::decode_payload(&res.body).unwrap();
        let sent: Vec<Packet> = msgs.into_iter().map(Packet::Message).collect();
        prop_assert_eq!(back, sent);
    }

    #[test]
    fn messages_round_trip_through_websocket(msgs in proptest::collection::vec(prop_oneof![
        ".{0,200}".prop_map(Data::Text),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Data::Binary),
    ], 1..6), piece in 1usize..100) {
        let mut t = T::new(config());
        let (c, key) = t.websocket();
        t.out(c);
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(match m {
                Data::Text(s) => masked(Opcode::Text, format!("4{s}").as_bytes()),
                Data::Binary(b) => masked(Opcode::Binary, b),
            });
        }
        for chunk in bytes.chunks(piece) {
            t.send(c, chunk);
        }
        let got: Vec<Data> = t.events().into_iter().filter_map(|e| match e {
            Event::Message { data, .. } => Some(data),
            _ => None,
        }).collect();
        prop_assert_eq!(&got, &msgs);
        for m in &msgs {
            t.e.send(key, m.clone());
        }
        let expected: Vec<Message> = msgs.into_iter().map(|m| match m {
            Data::Text(s) => Message::Text(format!("4{s}")),
            Data::Binary(b) => Message::Binary(b),
        }).collect();
        prop_assert_eq!(frames(&t.out(c)), expected);
    }

    #[test]
    fn any_bytes_in_any_pieces_never_panic(
        prefix in prop_oneof![Just(String::new()), Just(ws_request("")), Just(get(""))],
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let mut t = T::new(config());
        let (sid, _) = t.polling();
        let c = t.connect();
        t.send(c, prefix.replace("transport=polling&", &format!("transport=polling&sid={sid}&")));
        for chunk in &chunks {
            t.send(c, chunk);
            t.out(c);
            t.advance(100);
        }
        t.wire.disconnect(&mut t.e, c, t.now);
        t.events();
    }
}

/// Node's headersTimeout and keepAliveTimeout: a connection the server waits on cannot be held forever.
#[test]
fn http_timeouts_close_connections_that_are_waited_on() {
    let mut t = T::new(config());
    let request_timeout = t.e.config.request_timeout;
    let keep_alive = t.e.config.keep_alive_timeout;
    let ms = |d: Duration| d.as_millis() as u64;

    // A client that drips a request: 408 once request_timeout has passed since its first byte.
    t.next = t.next.next();
    let drip = t.next;
    t.wire.connect(&mut t.e, drip, None, Some(t.now));
    t.send(drip, "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\n");
    t.advance(ms(request_timeout) - 1);
    t.send(drip, "Host: x\r\n");
    assert!(t.out(drip).is_empty() && !t.e.should_close(drip), "not yet");
    t.advance(1);
    let mut out = t.out(drip);
    assert_eq!(parse_response(&mut out).status, 408);
    assert!(t.e.should_close(drip));
    assert_eq!(t.errors(), 1, "logged once");

    // A client that connects and says nothing: closed without an answer after request_timeout.
    t.next = t.next.next();
    let silent = t.next;
    t.wire.connect(&mut t.e, silent, None, Some(t.now));
    t.advance(ms(request_timeout));
    assert!(t.out(silent).is_empty() && t.e.should_close(silent));

    // Keep-alive: idle keep_alive after its answer, then closed; a parked GET is never timed out.
    let mut t = T::new(Config {
        ping_interval: request_timeout * 10,
        ping_timeout: request_timeout * 10,
        ..config()
    });
    let (sid, key) = t.polling();
    t.next = t.next.next();
    let conn = t.next;
    t.wire.connect(&mut t.e, conn, None, Some(t.now));
    t.send(conn, get(&format!("&sid={sid}")));
    t.advance(ms(request_timeout) * 2);
    assert!(
        !t.e.should_close(conn),
        "a parked poll waits for the session, not for a timer"
    );
    assert!(t.out(conn).is_empty(), "the GET is still parked");
    assert!(t.e.send(key, Data::Text("x".into())));
    let mut out = t.out(conn);
    assert_eq!(parse_response(&mut out).status, 200);
    t.advance(ms(keep_alive) - 1);
    assert!(!t.e.should_close(conn));
    t.advance(1);
    assert!(t.e.should_close(conn), "idle keep-alive closed");
}

/// A method outside HTTP's usual ones reaches the application as sent (Node's `req.method`), not as a
/// placeholder; one longer than any real method is refused.
#[test]
fn unusual_methods_reach_the_application_by_name() {
    let mut t = T::new(Config {
        serve_other_paths: true,
        ..config()
    });
    let c = t.connect();
    t.send(c, "PROPFIND /files HTTP/1.1\r\nHost: x\r\n\r\n");
    let events = t.events();
    let [Event::Request { conn, request, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!((*conn, request.method.as_str()), (c, "PROPFIND"));

    let long = "M".repeat(crate::http::MAX_METHOD_BYTES + 1);
    let (_, res) = t.request(&format!("{long} /files HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(res.status, 400);
}

/// A keep-alive client may send its next request behind a parked GET: it is read once the GET is answered,
/// on the same connection, in order.
#[test]
fn requests_pipelined_behind_a_parked_get_wait_for_it() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(
        c,
        format!("{}{}", get(&format!("sid={sid}")), post(&sid, "4later")),
    );
    assert!(t.out(c).is_empty(), "the GET is parked");
    assert!(t.events().is_empty(), "the POST behind it is not read yet");
    t.e.send(key, Data::Text("now".into()));
    let mut out = t.out(c);
    assert_eq!(parse_response(&mut out).text(), "4now");
    assert_eq!(parse_response(&mut out).text(), "ok");
    let msg = Event::Message {
        key,
        data: Data::Text("later".into()),
    };
    assert_eq!(t.events(), [msg]);
}

/// Frames pipelined behind a WebSocket handshake the application decides later are read once it accepts.
#[test]
fn frames_behind_a_deferred_websocket_handshake_are_read_after_it() {
    let mut t = T::new(Config {
        defer_handshakes: true,
        ..config()
    });
    let c = t.connect();
    let mut bytes = ws_request("").into_bytes();
    bytes.extend(masked(Opcode::Text, b"4early"));
    t.send(c, bytes);
    let Some(Event::Handshake { conn, .. }) = t.e.poll_event() else {
        panic!("no handshake event");
    };
    t.e.accept_handshake(conn, None, t.now);
    let mut out = t.out(c);
    assert_eq!(parse_response(&mut out).status, 101);
    let events = t.events();
    let [Event::Open { key, .. }, Event::Message { data, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(data, &Data::Text("early".into()));
    assert_eq!(t.e.transport_of(*key), Some(Transport::WebSocket));
}

/// A peer that does not read is dropped once max_buffered bytes wait for it, counting what its driver took but
/// could not write; nothing more is written to it, and its session closes with the connection.
#[test]
fn a_peer_that_does_not_read_is_dropped() {
    let mut t = T::new(Config {
        max_buffered: 100,
        ..config()
    });
    let (c, key) = t.websocket();
    t.e.set_backlog(c, 60);
    assert!(t.e.is_writable(key));
    assert!(t.e.send(key, Data::Text("x".repeat(30))));
    assert!(!t.e.should_close(c));
    t.e.send(key, Data::Text("x".repeat(30)));
    assert!(t.e.should_close(c), "over max_buffered");
    assert_eq!(t.errors(), 1, "logged once");
    let mut stale = b"unwritten".to_vec();
    for answer in t.e.take_answers(c) {
        crate::driver::wire::encode(&answer, &mut stale, None);
    }
    assert!(stale.is_empty(), "what was buffered is dropped too");
    t.wire.disconnect(&mut t.e, c, t.now);
    assert_eq!(t.closes(), [CloseReason::TransportClose]);
}

#[test]
fn refusals_are_connection_errors_with_nodes_code_and_the_request() {
    let mut t = T::new(Config {
        defer_handshakes: true,
        ..config()
    });
    t.request(&get("sid=nope"));
    let events = t.events();
    let [Event::ConnectionError {
        code,
        detail,
        request,
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!((*code, detail.as_deref()), (ErrorCode::UnknownSid, None));
    assert!(request.query.contains("sid=nope"), "{request:?}");
    // The application's refusal (allowRequest) is one too, with its message.
    let c = t.connect();
    t.send(c, get(""));
    t.events();
    t.e.refuse_handshake(c, ErrorCode::Forbidden, Some("go away"));
    assert!(matches!(
        t.events().as_slice(),
        [Event::ConnectionError { code: ErrorCode::Forbidden, detail: Some(d), .. }] if d == "go away"
    ));
}

#[test]
fn headers_hook_changes_the_responses_that_carry_a_session() {
    let mut t = T::new(Config {
        cookie: Some(Cookie::default()),
        ..config()
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    t.e.set_headers_hook(Some(Box::new(move |initial, request, headers| {
        log.lock()
            .unwrap()
            .push((initial, request.method.clone(), headers.clone()));
        headers.retain(|(n, _)| n != "Set-Cookie");
        headers.push(("Set-Cookie".into(), "mine=1".into()));
        headers.push(("X-Initial".into(), initial.to_string()));
    })));
    let (_, res) = t.request(&get(""));
    assert_eq!(
        (res.header("set-cookie"), res.header("x-initial")),
        (Some("mine=1"), Some("true"))
    );
    let open: Value = serde_json::from_str(&res.text()[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let (_, res) = t.request(&post(&sid, "4hi"));
    assert_eq!(res.header("x-initial"), Some("false"));
    let key = t.e.key_of(&sid).unwrap();
    t.e.send(key, Data::Text("x".into()));
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!((res.text(), res.header("x-initial")), ("4x", Some("false")));
    // The WebSocket upgrade's 101 gets them too; an error answer does not.
    let c = t.connect();
    t.send(c, ws_request(&format!("&sid={sid}")));
    assert_eq!(
        parse_response(&mut t.out(c)).header("x-initial"),
        Some("false")
    );
    let (_, res) = t.request(&get("sid=unknown"));
    assert_eq!((res.status, res.header("x-initial")), (400, None));
    let seen = seen.lock().unwrap();
    let cookie = seen[0].2.clone();
    assert!(cookie[0].1.starts_with(&format!("io={sid}")), "{cookie:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");
}

/// A polling client that does not GET: what waits for it is bounded by max_buffered bytes of payload, counted
/// as its GET would carry them (separators, a binary message in base64). Past the bound the queue is dropped,
/// the overflow reported once, and the session closed as a transport error; a broadcast counts the same way.
#[test]
fn a_polling_queue_is_bounded_by_max_buffered() {
    let mut t = T::new(Config {
        max_buffered: 1000,
        ..config()
    });
    let (sid, key) = t.polling();
    // "4" + 495 bytes, twice with a separator: 993; then a separator and "b" + base64 of 3 bytes: 999 (the
    // handshake's own answer must fit too).
    assert!(t.e.send(key, Data::Text("x".repeat(495))));
    t.e.broadcast(&[key], Data::Text("y".repeat(495)));
    assert!(t.e.send(key, Data::Binary(vec![1, 2, 3])));
    assert_eq!(t.events(), []);
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!(res.body.len(), 999, "{}", res.text());
    assert!(res.text().ends_with("\u{1e}bAQID"));

    for _ in 0..2 {
        assert!(t.e.send(key, Data::Text("x".repeat(495))));
    }
    assert!(t.e.send(key, Data::Binary(vec![1, 2, 3])));
    t.e.broadcast(&[key], Data::Text(String::new()));
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], Event::ProtocolError { conn: None, message, .. }
        if message.contains("max_buffered"))
    );
    assert_eq!(
        events[1],
        Event::Close {
            key,
            reason: CloseReason::TransportError
        }
    );
    assert!(
        !t.e.send(key, Data::Text("x".into())),
        "the session is gone"
    );
    let (_, res) = t.request(&get(&format!("sid={sid}")));
    assert_eq!(res.status, 400);
}

/// A GET parked when the queue overflows is answered with the close packet alone: what was queued is dropped.
#[test]
fn a_parked_get_hears_of_the_overflow() {
    let mut t = T::new(Config {
        max_buffered: 1000,
        ..config()
    });
    let (sid, key) = t.polling();
    let c = t.connect();
    t.send(c, get(&format!("sid={sid}")));
    assert!(t.out(c).is_empty(), "parked");
    t.e.broadcast(&[key], Data::Text("x".repeat(2000)));
    let mut out = t.out(c);
    assert_eq!(parse_response(&mut out).text(), "1");
    assert_eq!(t.closes(), [CloseReason::TransportError]);
}

fn ws_offering(extensions: &str) -> String {
    let plain = ws_request("");
    let head = plain.strip_suffix("\r\n").unwrap();
    format!("{head}Sec-WebSocket-Extensions: {extensions}\r\n\r\n")
}

fn deflating() -> Config {
    Config {
        per_message_deflate: Some(crate::permessage_deflate::DeflateConfig::default()),
        ..config()
    }
}

/// The client's half: inflates the server's messages, compresses its own (contexts kept, 15-bit windows).
fn client_deflate() -> crate::permessage_deflate::PerMessageDeflate {
    use crate::permessage_deflate::{Deflater, Inflater, PerMessageDeflate};
    PerMessageDeflate {
        inflater: Inflater::new(15, false),
        deflater: Deflater::new(6, 15, false),
        threshold: 0,
    }
}

#[test]
fn permessage_deflate_both_ways_from_the_threshold() {
    let mut t = T::new(deflating());
    let c = t.connect();
    t.send(c, ws_offering("permessage-deflate; client_max_window_bits"));
    let mut out = t.out(c);
    let res = parse_response(&mut out);
    assert_eq!(res.status, 101);
    assert_eq!(
        res.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let mut client = ClientDecoder::with_deflate(usize::MAX, client_deflate());
    client.feed(&out);
    assert!(
        matches!(client.next_message(), Ok(Some(Message::Text(open))) if open.starts_with("0{"))
    );
    assert_eq!(out[0] & 0x40, 0, "the open packet is under the threshold");
    let big = format!("4{}", "x".repeat(2000));
    let mut compressed = Vec::new();
    client
        .deflate_mut()
        .unwrap()
        .deflater
        .compress(big.as_bytes(), &mut compressed);
    let mut frame = Vec::new();
    websocket::encode_compressed_masked(Opcode::Text, &compressed, [1, 2, 3, 4], &mut frame);
    t.send(c, &frame);
    t.send(c, masked(Opcode::Text, b"4small"));
    t.echo();
    let out = t.out(c);
    assert_eq!(
        out[0] & 0x40,
        0x40,
        "the echo of the big message is compressed"
    );
    assert!(out.len() < 100, "{}", out.len());
    client.feed(&out);
    assert_eq!(client.next_message(), Ok(Some(text(&big))));
    assert_eq!(client.next_message(), Ok(Some(text("4small"))));
}

#[test]
fn permessage_deflate_is_answered_only_when_on_and_well_formed() {
    let mut t = T::new(config());
    let c = t.connect();
    t.send(c, ws_offering("permessage-deflate"));
    let res = parse_response(&mut t.out(c));
    assert_eq!(
        (res.status, res.header("sec-websocket-extensions")),
        (101, None)
    );
    let mut compressed = Vec::new();
    client_deflate()
        .deflater
        .compress(b"4hello", &mut compressed);
    let mut frame = Vec::new();
    websocket::encode_compressed_masked(Opcode::Text, &compressed, [1, 2, 3, 4], &mut frame);
    t.send(c, &frame);
    assert_eq!(
        frames(&t.out(c)),
        vec![Message::Close(Some(1002), String::new())]
    );

    let mut t = T::new(deflating());
    let (_, res) = t.request(&ws_offering("permessage-deflate; server_max_window_bits=3"));
    assert_eq!(res.status, 400);
    assert_eq!(
        res.text(),
        "Invalid or unacceptable Sec-WebSocket-Extensions header"
    );
    assert_eq!(t.errors(), 1);
    let c = t.connect();
    t.send(c, ws_offering("x-webkit-deflate-frame"));
    let res = parse_response(&mut t.out(c));
    assert_eq!(
        (res.status, res.header("sec-websocket-extensions")),
        (101, None)
    );
}

#[test]
fn polling_responses_are_compressed_unless_every_packet_said_not_to() {
    let mut t = T::new(config());
    let (sid, key) = t.polling();
    let big = "x".repeat(2000);
    let gzip_get = |sid: &str| {
        format!(
            "GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
             Accept-Encoding: gzip\r\n\r\n"
        )
    };
    t.e.with_compress(false, |e| e.send(key, Data::Text(big.clone())));
    let (_, res) = t.request(&gzip_get(&sid));
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.text(), format!("4{big}"));
    t.e.with_compress(false, |e| e.send(key, Data::Text(big.clone())));
    t.e.send(key, Data::Text("small".into()));
    let (_, res) = t.request(&gzip_get(&sid));
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    let mut body = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&res.body[..]), &mut body)
        .unwrap();
    assert_eq!(body, format!("4{big}\x1e4small"));
    // Under the threshold (1024 by default), nothing is compressed.
    t.e.send(key, Data::Text("small".into()));
    let (_, res) = t.request(&gzip_get(&sid));
    assert_eq!(
        (res.header("content-encoding"), res.text()),
        (None, "4small")
    );
}

#[path = "tests_v3.rs"]
mod v3;
