//! `SocketIo` driven together with a real `Engine`, sans-IO: sessions are opened and fed through raw Engine.IO
//! long-polling HTTP requests, and what the client would read is taken from the parked GETs' answers. The
//! transport does not matter at this layer, so the WebSocket cases of Node's reference capture
//! (tests/vectors/sio_reference.json) are replayed over polling and must get the same packets back.
use super::*;
use crate::core::Core;
use crate::driver::wire::Wire;
use crate::engineio::{Config, ConnId, Engine};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;

const REFERENCE: &str = include_str!("../../tests/vectors/sio_reference.json");

/// One Engine.IO record as the client reads it from a polling answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Text(String),
    Bin(Vec<u8>),
}

fn text(s: &str) -> Rec {
    Rec::Text(s.to_owned())
}

struct Harness {
    core: Core<SocketIo>,
    wire: Wire,
    now: Instant,
    next_conn: ConnId,
    out: HashMap<ConnId, Vec<u8>>,
    parked: HashMap<String, ConnId>,
    events: Vec<Event>,
    /// Every event ever pumped, for checks at the end.
    log: Vec<Event>,
    nsp_of: HashMap<SocketKey, Arc<str>>,
}

impl Harness {
    fn new(connect_timeout: Duration) -> Self {
        let mut config = Config::default();
        config.set_path("/socket.io");
        let mut sio = SocketIo::new(connect_timeout);
        sio.add_namespace("/");
        sio.add_namespace("/custom");
        Harness {
            core: Core::new(Engine::new(config), sio),
            wire: Wire::new(),
            now: Instant::now(),
            next_conn: ConnId(1),
            out: HashMap::new(),
            parked: HashMap::new(),
            events: Vec::new(),
            log: Vec::new(),
            nsp_of: HashMap::new(),
        }
    }

    fn request(&mut self, raw: &[u8]) -> ConnId {
        let conn = self.next_conn;
        self.next_conn = conn.next();
        self.wire.connect(&mut self.core.engine, conn, None, None);
        self.wire.input(&mut self.core.engine, conn, raw, self.now);
        self.pump();
        conn
    }

    fn pump(&mut self) {
        self.core.settle(self.now);
        while let Some(ev) = self.core.poll_event() {
            if let Event::Connect { socket, nsp, .. } = &ev {
                self.nsp_of.insert(*socket, nsp.clone());
            }
            self.log.push(ev.clone());
            self.events.push(ev);
        }
        let mut dirty = Vec::new();
        self.wire
            .take_dirty(&mut self.core.engine, self.now, &mut dirty);
        for conn in dirty {
            if let Some(out) = self.wire.output(&mut self.core.engine, conn) {
                let bytes = out.to_vec();
                self.wire.written(&mut self.core.engine, conn, bytes.len());
                self.out.entry(conn).or_default().extend(bytes);
            }
        }
    }

    /// The body of the complete HTTP response written to `conn`, if there is one.
    fn response(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let raw = self.out.get(&conn)?;
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let body = raw.get(end + 4..end + 4 + len)?.to_vec();
        self.out.remove(&conn);
        self.wire.disconnect(&mut self.core.engine, conn, self.now);
        Some(body)
    }

    /// A polling handshake: the session's key and sid.
    fn open(&mut self) -> (SessionKey, String) {
        let conn =
            self.request(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
        let body = self.response(conn).expect("handshake answered");
        let open: Value = serde_json::from_slice(&body[1..]).unwrap();
        let sid = open["sid"].as_str().unwrap().to_owned();
        let key = self.core.engine.key_of(&sid).unwrap();
        let events = self.take_events();
        assert!(
            matches!(events.as_slice(), [Event::Open { client, .. }] if *client == key),
            "{events:?}"
        );
        (key, sid)
    }

    /// POST one Engine.IO packet; a binary one is sent as polling's "b<base64>".
    fn post(&mut self, sid: &str, rec: &Rec) {
        let body = match rec {
            Rec::Text(t) => t.clone(),
            Rec::Bin(b) => format!("b{}", B64.encode(b)),
        };
        self.post_body(sid, 4, &body);
    }

    /// POST a polling payload of Engine.IO revision `eio`.
    fn post_body(&mut self, sid: &str, eio: u8, body: &str) {
        let raw = format!(
            "POST /socket.io/?EIO={eio}&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let conn = self.request(raw.as_bytes());
        self.response(conn);
    }

    /// Send the Socket.IO packet `sio` as an Engine.IO message.
    fn send(&mut self, sid: &str, sio: &str) {
        self.post(sid, &Rec::Text(format!("4{sio}")));
    }

    /// What a GET reads now; an empty answer leaves the GET parked, to be read by the next call.
    fn recv(&mut self, sid: &str) -> Vec<Rec> {
        self.pump();
        let conn = match self.parked.remove(sid) {
            Some(conn) => conn,
            None => {
                let get = format!(
                    "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
                );
                self.request(get.as_bytes())
            }
        };
        let Some(body) = self.response(conn) else {
            self.parked.insert(sid.to_owned(), conn);
            return Vec::new();
        };
        body.split(|b| *b == 0x1e)
            .map(|seg| match seg.split_first() {
                Some((b'b', b64)) => Rec::Bin(B64.decode(b64).unwrap()),
                _ => Rec::Text(String::from_utf8(seg.to_vec()).unwrap()),
            })
            .collect()
    }

    /// What the client reads up to the close: polling delivers the close packet on the GET after the one
    /// that carries the packets queued before it, as Node does.
    fn recv_closed(&mut self, sid: &str) -> Vec<Rec> {
        let mut got = self.recv(sid);
        if !got.is_empty() && got.last() != Some(&Rec::Text("1".into())) {
            got.extend(self.recv(sid));
        }
        got
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.pump();
        std::mem::take(&mut self.events)
            .into_iter()
            .filter(|e| {
                !matches!(
                    e,
                    Event::ProtocolError { .. }
                        | Event::Engine(engineio::Event::ProtocolError { .. })
                )
            })
            .collect()
    }

    /// CONNECT to `nsp` and accept it: the socket's key and id.
    fn connect(&mut self, sid: &str, nsp: &str) -> (SocketKey, String) {
        let packet = if nsp == "/" {
            "0".to_owned()
        } else {
            format!("0{nsp},")
        };
        self.send(sid, &packet);
        let socket = self.connecting_socket();
        assert!(self.core.layer.accept(socket, &mut self.core.engine));
        let id = self.core.layer.sid_of(socket).unwrap().to_string();
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        assert_eq!(
            self.recv(sid),
            vec![Rec::Text(format!("40{prefix}{{\"sid\":\"{id}\"}}"))]
        );
        (socket, id)
    }

    fn connecting_socket(&mut self) -> SocketKey {
        match self.take_events().as_slice() {
            [Event::Connect { socket, .. }] => *socket,
            other => panic!("expected one Connect, got {other:?}"),
        }
    }

    fn emit(&mut self, socket: SocketKey, data: &str) -> bool {
        self.core
            .layer
            .emit_to(socket, data, Vec::new(), None, false, &mut self.core.engine)
    }

    fn is_open(&self, sid: &str) -> bool {
        self.core.engine.key_of(sid).is_some()
    }
}

fn harness() -> Harness {
    Harness::new(Duration::from_secs(45))
}

fn disconnects(events: &[Event]) -> Vec<(SocketKey, &'static str)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnect { socket, reason } => Some((*socket, reason.as_str())),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Close { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn connect_event_and_ack_both_ways() {
    let mut h = harness();
    let (client, sid) = h.open();
    h.send(&sid, r#"0{"token":"abc"}"#);
    let events = h.take_events();
    let [Event::Connect {
        client: c,
        socket,
        nsp,
        auth,
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(
        (*c, &**nsp, auth.as_deref()),
        (client, "/", Some(r#"{"token":"abc"}"#))
    );
    let socket = *socket;
    assert!(h.core.layer.accept(socket, &mut h.core.engine));
    assert!(
        !h.core.layer.accept(socket, &mut h.core.engine),
        "a socket is accepted once"
    );
    let id = h.core.layer.sid_of(socket).unwrap().to_string();
    assert_eq!(
        h.recv(&sid),
        vec![Rec::Text(format!("40{{\"sid\":\"{id}\"}}"))]
    );

    h.send(&sid, r#"21["chat",{"a":[1,2]}]"#);
    let events = h.take_events();
    assert_eq!(
        events,
        vec![Event::Event {
            socket,
            name: Some("chat".into()),
            args: r#"[{"a":[1,2]}]"#.into(),
            argc: 1,
            id: Some(1),
            attachments: vec![]
        }]
    );
    h.core.layer.emit_to(
        socket,
        r#"["ok"]"#,
        vec![],
        Some(1),
        true,
        &mut h.core.engine,
    );
    h.core.layer.emit_to(
        socket,
        r#"["ping"]"#,
        vec![],
        Some(7),
        false,
        &mut h.core.engine,
    );
    assert_eq!(
        h.recv(&sid),
        vec![text(r#"431["ok"]"#), text(r#"427["ping"]"#)]
    );
    h.send(&sid, r#"37["pong",2]"#);
    assert_eq!(
        h.take_events(),
        vec![Event::Ack {
            socket,
            id: 7,
            data: r#"["pong",2]"#.into(),
            attachments: vec![]
        }]
    );
}

#[test]
fn binary_packets_are_reassembled_and_framed() {
    let mut h = harness();
    let (_, sid) = h.open();
    let (socket, _) = h.connect(&sid, "/custom");
    h.send(
        &sid,
        r#"52-/custom,3["up",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]"#,
    );
    assert_eq!(
        h.take_events(),
        vec![],
        "nothing before the last attachment"
    );
    h.post(&sid, &Rec::Bin(vec![1, 2, 3]));
    assert_eq!(h.take_events(), vec![]);
    h.post(&sid, &Rec::Bin(vec![]));
    let events = h.take_events();
    assert_eq!(
        events,
        vec![Event::Event {
            socket,
            name: Some("up".into()),
            args: r#"[{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]"#.into(),
            argc: 2,
            id: Some(3),
            attachments: vec![vec![1, 2, 3], vec![]],
        }]
    );
    // A BINARY_ACK too, and the layer keeps working after a reassembly.
    h.send(&sid, r#"61-/custom,4[{"_placeholder":true,"num":0}]"#);
    h.post(&sid, &Rec::Bin(vec![9]));
    assert!(matches!(h.take_events().as_slice(),
        [Event::Ack { id: 4, attachments, .. }] if attachments == &vec![vec![9]]));

    // Outgoing: the header packet, then each attachment as a binary message.
    let ph = r#"{"_placeholder":true,"num":0}"#;
    h.core.layer.emit_to(
        socket,
        &format!(r#"["down",{ph}]"#),
        vec![vec![0xff, 0]],
        None,
        false,
        &mut h.core.engine,
    );
    h.core.layer.emit_to(
        socket,
        &format!("[{ph}]"),
        vec![vec![7]],
        Some(3),
        true,
        &mut h.core.engine,
    );
    assert_eq!(
        h.recv(&sid),
        vec![
            Rec::Text(format!(r#"451-/custom,["down",{ph}]"#)),
            Rec::Bin(vec![0xff, 0]),
            Rec::Text(format!(r#"461-/custom,3[{ph}]"#)),
            Rec::Bin(vec![7]),
        ]
    );
}

#[test]
fn wrong_attachment_counts_close_the_session() {
    for (header, then) in [
        (None, Some(Rec::Bin(vec![1]))), // binary with no header
        (
            Some(r#"51-["a",{"_placeholder":true,"num":0}]"#),
            Some(text(r#"42["x"]"#)),
        ), // text instead
        (Some(r#"50-["a"]"#), None),     // zero attachments
        (Some(r#"511-["a"]"#), None),    // over the limit of 10
        (Some(r#"51["a"]"#), None),      // no dash
    ] {
        let mut h = harness();
        let (_, sid) = h.open();
        let (socket, _) = h.connect(&sid, "/");
        if let Some(header) = header {
            h.send(&sid, header);
        }
        if let Some(then) = then {
            h.post(&sid, &then);
        }
        let events = h.take_events();
        assert_eq!(
            disconnects(&events),
            vec![(socket, "forced close")],
            "{header:?}"
        );
        assert_eq!(closed(&events), Some(CloseReason::ForcedClose));
        assert_eq!(
            h.recv(&sid),
            vec![text("1")],
            "the client reads the close packet"
        );
        assert!(!h.is_open(&sid));
    }
}

#[test]
fn unknown_namespace_is_refused_and_the_session_stays() {
    let mut h = harness();
    let (_, sid) = h.open();
    h.send(&sid, "0/nope,");
    assert_eq!(h.take_events(), vec![]);
    assert_eq!(
        h.recv(&sid),
        vec![text(r#"44/nope,{"message":"Invalid namespace"}"#)]
    );
    assert!(h.is_open(&sid));
    h.connect(&sid, "/custom");
}

#[test]
fn refused_socket_gets_connect_error_and_is_forgotten() {
    let mut h = harness();
    let (_, sid) = h.open();
    h.send(&sid, "0/custom,");
    let socket = h.connecting_socket();
    assert!(
        h.emit(socket, r#"["held"]"#),
        "emits to a connecting socket wait"
    );
    h.core.layer.refuse(
        socket,
        r#"{"message":"not allowed","data":{"code":7}}"#,
        &mut h.core.engine,
    );
    assert_eq!(
        h.recv(&sid),
        vec![text(
            r#"44/custom,{"message":"not allowed","data":{"code":7}}"#
        )]
    );
    assert!(!h.core.layer.accept(socket, &mut h.core.engine));
    assert!(!h.emit(socket, r#"["late"]"#));
    assert_eq!(h.core.layer.socket_count("/custom"), 0);
    // The namespace may be tried again; anything else for it is a violation, as in Node.
    let (again, _) = h.connect(&sid, "/custom");
    assert_ne!(again, socket);
}

#[test]
fn emits_while_connecting_follow_the_connect_packet() {
    let mut h = harness();
    let (_, sid) = h.open();
    h.send(&sid, "0");
    let socket = h.connecting_socket();
    h.emit(socket, r#"["first"]"#);
    h.emit(socket, r#"["second"]"#);
    assert_eq!(h.recv(&sid), vec![]);
    h.core.layer.accept(socket, &mut h.core.engine);
    let id = h.core.layer.sid_of(socket).unwrap().to_string();
    assert_eq!(
        h.recv(&sid),
        vec![
            Rec::Text(format!("40{{\"sid\":\"{id}\"}}")),
            text(r#"42["first"]"#),
            text(r#"42["second"]"#)
        ]
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom: splitting it would hide the order it checks
fn rooms_broadcasts_and_exceptions() {
    let mut h = harness();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (_, sid) = h.open();
        let (socket, id) = h.connect(&sid, "/");
        clients.push((sid, socket, id));
    }
    let [(s0, k0, id0), (s1, k1, _), (s2, k2, _)] = clients.as_slice() else {
        unreachable!()
    };
    h.core.layer.join(*k0, "red");
    h.core.layer.join(*k1, "red");
    h.core.layer.join(*k1, "blue");
    h.core.layer.join(*k2, "blue");
    let mut rooms: Vec<String> = h
        .core
        .layer
        .rooms_of(*k1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms.len(), 3, "its own id, red and blue: {rooms:?}");

    let sorted = |mut v: Vec<SocketKey>| {
        v.sort_unstable();
        v
    };
    let s = |v: &[&str]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    assert_eq!(
        sorted(h.core.layer.targets("/", &s(&["red"]), &[])),
        sorted(vec![*k0, *k1])
    );
    assert_eq!(
        sorted(
            h.core
                .layer
                .targets("/", &s(&["red", "blue"]), &s(&["red"]))
        ),
        vec![*k2]
    );
    assert_eq!(
        sorted(h.core.layer.targets("/", &[], &s(&[id0]))),
        sorted(vec![*k1, *k2])
    );
    assert!(h.core.layer.targets("/custom", &[], &[]).is_empty());
    assert!(h.core.layer.targets("/unknown", &[], &[]).is_empty());

    let reached = h.core.layer.broadcast(
        "/",
        &s(&["blue"]),
        &s(&["red"]),
        r#"["b"]"#,
        vec![],
        None,
        &mut h.core.engine,
    );
    assert_eq!(reached, vec![*k2]);
    let ph = r#"{"_placeholder":true,"num":0}"#;
    let reached = h.core.layer.broadcast(
        "/",
        &[],
        &[],
        &format!("[\"all\",{ph}]"),
        vec![vec![5]],
        Some(9),
        &mut h.core.engine,
    );
    assert_eq!(sorted(reached), sorted(vec![*k0, *k1, *k2]));
    let all = [Rec::Text(format!("451-9[\"all\",{ph}]")), Rec::Bin(vec![5])];
    assert_eq!(h.recv(s0), all);
    assert_eq!(h.recv(s1), all);
    assert_eq!(
        h.recv(s2),
        [vec![text(r#"42["b"]"#)], all.to_vec()].concat()
    );

    h.core.layer.leave(*k1, "red");
    assert_eq!(h.core.layer.targets("/", &s(&["red"]), &[]), vec![*k0]);
    // Leaving the namespace leaves every room.
    h.send(s0, "1");
    assert_eq!(
        disconnects(&h.take_events()),
        vec![(*k0, "client namespace disconnect")]
    );
    assert!(h.core.layer.targets("/", &s(&["red"]), &[]).is_empty());
    assert!(h.core.layer.rooms_of(*k0).is_empty());
    assert_eq!(h.core.layer.socket_count("/"), 2);
    assert!(h.is_open(s0), "the session outlives its sockets");
}

#[test]
fn connecting_sockets_are_not_broadcast_targets() {
    let mut h = harness();
    let (_, sid) = h.open();
    h.send(&sid, "0");
    let socket = h.connecting_socket();
    h.core.layer.join(socket, "room");
    assert_eq!(h.core.layer.socket_count("/"), 0);
    assert!(h.core.layer.targets("/", &[], &[]).is_empty());
    assert!(h.core.layer.targets("/", &["room".into()], &[]).is_empty());
    assert!(h
        .core
        .layer
        .broadcast("/", &[], &[], r#"["x"]"#, vec![], None, &mut h.core.engine)
        .is_empty());
    h.core.layer.accept(socket, &mut h.core.engine);
    assert_eq!(
        h.core.layer.targets("/", &["room".into()], &[]),
        vec![socket]
    );
    assert_eq!(
        h.recv(&sid).len(),
        1,
        "only the CONNECT: the broadcast did not wait for it"
    );
}

#[test]
fn server_disconnect_with_and_without_close() {
    let mut h = harness();
    let (_, sid) = h.open();
    let (main, _) = h.connect(&sid, "/");
    let (custom, _) = h.connect(&sid, "/custom");
    h.core
        .layer
        .disconnect(custom, false, &mut h.core.engine, h.now);
    assert_eq!(
        disconnects(&h.take_events()),
        vec![(custom, "server namespace disconnect")]
    );
    assert_eq!(h.recv(&sid), vec![text("41/custom,")]);
    assert!(h.is_open(&sid));

    let (custom, _) = h.connect(&sid, "/custom");
    // Node's disconnect(true): every socket of the client gets DISCONNECT, then the session closes.
    h.core
        .layer
        .disconnect(main, true, &mut h.core.engine, h.now);
    let events = h.take_events();
    let mut gone = disconnects(&events);
    gone.sort_unstable();
    assert_eq!(
        gone,
        vec![
            (main, "server namespace disconnect"),
            (custom, "server namespace disconnect")
        ]
    );
    assert_eq!(closed(&events), Some(CloseReason::ForcedClose));
    let mut got = h.recv_closed(&sid);
    assert_eq!(got.pop(), Some(text("1")));
    got.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(got, vec![text("41"), text("41/custom,")]);
}

#[test]
fn disconnecting_a_connecting_socket_does_nothing() {
    let mut h = harness();
    let (_, sid) = h.open();
    h.send(&sid, "0");
    let socket = h.connecting_socket();
    h.core
        .layer
        .disconnect(socket, true, &mut h.core.engine, h.now);
    assert!(h.is_open(&sid));
    assert!(h.core.layer.accept(socket, &mut h.core.engine));
}

#[test]
fn session_close_disconnects_every_socket() {
    let mut h = harness();
    let (client, sid) = h.open();
    let (a, _) = h.connect(&sid, "/");
    let (b, _) = h.connect(&sid, "/custom");
    h.send(&sid, "0"); // already connected to "/": a violation
    let events = h.take_events();
    let mut gone = disconnects(&events);
    gone.sort_unstable();
    assert_eq!(gone, vec![(a, "forced close"), (b, "forced close")]);
    assert!(
        matches!(events.last(), Some(Event::Close { client: c, reason: CloseReason::ForcedClose }) if *c == client)
    );
    assert_eq!(
        h.core.layer.socket_count("/") + h.core.layer.socket_count("/custom"),
        0
    );
    assert!(!h.emit(a, r#"["x"]"#));
}

#[test]
fn connect_timeout_closes_clients_without_a_connected_socket() {
    let timeout = Duration::from_secs(1);
    let mut h = Harness::new(timeout);
    let (_, idle) = h.open();
    let (_, joined) = h.open();
    h.connect(&joined, "/");
    let (_, refused) = h.open();
    h.send(&refused, "0");
    let socket = h.connecting_socket();
    h.core
        .layer
        .refuse(socket, r#"{"message":"no"}"#, &mut h.core.engine);
    let (_, pending) = h.open();
    h.send(&pending, "0/custom,");
    let pending_socket = h.connecting_socket();
    h.take_events();

    assert!(h
        .core
        .layer
        .next_timeout()
        .is_some_and(|at| at <= h.now + timeout));
    h.core
        .layer
        .handle_timeout(&mut h.core.engine, h.now + timeout / 2);
    assert_eq!(h.take_events(), vec![]);
    h.now += timeout;
    h.core.layer.handle_timeout(&mut h.core.engine, h.now);
    let events = h.take_events();
    let closes = events.iter().filter(|e| {
        matches!(
            e,
            Event::Close {
                reason: CloseReason::ForcedClose,
                ..
            }
        )
    });
    assert_eq!(closes.count(), 3, "{events:?}");
    for sid in [&idle, &refused, &pending] {
        assert_eq!(h.recv_closed(sid).last(), Some(&text("1")));
        assert!(!h.is_open(sid));
    }
    assert!(h.is_open(&joined));
    assert!(
        !h.core.layer.accept(pending_socket, &mut h.core.engine),
        "its session is gone"
    );
    assert_eq!(h.core.layer.next_timeout(), None);
}

#[test]
fn violations_close_the_session_and_spare_the_others() {
    for bad in [
        r#"2/custom,["message","x"]"#, // an EVENT for a namespace it is not in
        "2[",
        "2{}",
        r#"2["connect"]"#,
        "9",
        r#"2/custom["a"]"#,
        r#"4{"message":"x"}"#,
        "1/custom,",
        "1{}",
        "31{}",
        "",
        r#"3abc"#,
    ] {
        let mut h = harness();
        let (_, other) = h.open();
        let (bystander, _) = h.connect(&other, "/");
        let (_, sid) = h.open();
        let (socket, _) = h.connect(&sid, "/");
        h.send(&sid, bad);
        let events = h.take_events();
        assert_eq!(
            disconnects(&events),
            vec![(socket, "forced close")],
            "{bad:?}"
        );
        assert_eq!(closed(&events), Some(CloseReason::ForcedClose), "{bad:?}");
        assert!(h.is_open(&other));
        h.send(&other, r#"21["still"]"#);
        assert!(
            matches!(h.take_events().as_slice(), [Event::Event { socket, .. }] if *socket == bystander)
        );
    }
}

#[test]
fn packets_without_data_are_handled_as_node_does() {
    let mut h = harness();
    let (_, sid) = h.open();
    let (socket, _) = h.connect(&sid, "/");
    h.send(&sid, "2");
    h.send(&sid, "25");
    assert_eq!(
        h.take_events(),
        vec![],
        "an EVENT without data dispatches nothing"
    );
    h.send(&sid, "36");
    h.send(&sid, "3[]");
    assert_eq!(
        h.take_events(),
        vec![Event::Ack {
            socket,
            id: 6,
            data: "[]".into(),
            attachments: vec![]
        }],
        "an ACK without data has no arguments; one without id matches nothing"
    );
    assert!(h.is_open(&sid));
}

#[test]
fn ack_ids_over_2_pow_53_are_echoed_as_node_does() {
    let mut h = harness();
    let (_, sid) = h.open();
    let (socket, _) = h.connect(&sid, "/");
    let event_id = |h: &mut Harness| match h.take_events().as_slice() {
        [Event::Event { id: Some(id), .. }] if *id > packet::MAX_ID => *id,
        other => panic!("{other:?}"),
    };
    h.send(&sid, r#"21234567890123456789012345["a"]"#);
    let id = event_id(&mut h);
    assert!(h
        .core
        .layer
        .emit_to(socket, "[1]", vec![], Some(id), true, &mut h.core.engine));
    assert!(
        !h.core
            .layer
            .emit_to(socket, "[2]", vec![], Some(id), true, &mut h.core.engine),
        "answered once"
    );
    h.send(
        &sid,
        r#"51-9007199254740993["b",{"_placeholder":true,"num":0}]"#,
    );
    h.post(&sid, &Rec::Bin(vec![1]));
    let id = event_id(&mut h);
    assert!(h
        .core
        .layer
        .emit_to(socket, "[3]", vec![], Some(id), true, &mut h.core.engine));
    assert_eq!(
        h.recv(&sid),
        vec![
            text("431.2345678901234568e+24[1]"),
            text("439007199254740992[3]")
        ]
    );
    // Unanswered stand-ins are bounded: the oldest are forgotten.
    let ids: Vec<u64> = (0..MAX_JS_IDS + 4)
        .map(|_| {
            h.send(&sid, r#"29007199254740999["c"]"#);
            event_id(&mut h)
        })
        .collect();
    assert!(!h
        .core
        .layer
        .emit_to(socket, "[]", vec![], Some(ids[0]), true, &mut h.core.engine));
    assert!(h.core.layer.emit_to(
        socket,
        "[]",
        vec![],
        Some(ids[ids.len() - 1]),
        true,
        &mut h.core.engine
    ));
    assert!(h.is_open(&sid));
}

/// The replies Node's reference server gives: "auth" on connect, "message" echoed, "message-with-ack" acked.
fn reference_app(h: &mut Harness) {
    for ev in h.take_events() {
        match ev {
            Event::Connect { socket, auth, .. } => {
                h.core.layer.accept(socket, &mut h.core.engine);
                let auth = auth.unwrap_or_else(|| "{}".into());
                h.emit(socket, &format!(r#"["auth",{auth}]"#));
            }
            Event::Event {
                socket,
                name,
                args,
                id,
                attachments,
                ..
            } if h.nsp_of.get(&socket).is_some_and(|n| &**n == "/") => {
                let mut args: Vec<Value> = serde_json::from_str(&args).unwrap();
                match (name.as_deref(), id) {
                    (Some("message"), _) => {
                        args.insert(0, "message-back".into());
                        let data = Value::from(args).to_string();
                        h.core.layer.emit_to(
                            socket,
                            &data,
                            attachments,
                            None,
                            false,
                            &mut h.core.engine,
                        );
                    }
                    (Some("message-with-ack"), Some(id)) => {
                        let data = Value::from(args).to_string();
                        h.core.layer.emit_to(
                            socket,
                            &data,
                            attachments,
                            Some(id),
                            true,
                            &mut h.core.engine,
                        );
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Replays every WebSocket case of Node's capture over polling: same packets back, same disconnect reasons.
#[test]
#[allow(clippy::too_many_lines)] // one loop over Node's capture; its steps share the harness state
fn replays_nodes_reference_capture() {
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    let mut replayed = 0;
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let steps = case["steps"].as_array().unwrap();
        let websocket = steps[0]["request"]
            .as_str()
            .is_some_and(|r| r.contains("transport=websocket"));
        // Engine.IO's heartbeat is not this layer's.
        if !websocket || name == "ping_timeout" {
            continue;
        }
        let connect_timeout = reference["server_config"]["connectTimeout"]
            .as_u64()
            .unwrap();
        let mut h = Harness::new(Duration::from_millis(connect_timeout));
        let (_, sid) = h.open();
        let mut session_closed = false;
        // steps[0] is the WebSocket handshake and steps[1] starts with the open packet.
        for (i, step) in steps.iter().enumerate().filter(|(i, _)| *i > 0) {
            if let Some(frame) = step.get("ws_send") {
                let rec = match frame["op"].as_str().unwrap() {
                    "binary" => Rec::Bin(hex(frame["frame"].as_str().unwrap())),
                    _ => text(frame["frame"].as_str().unwrap()),
                };
                h.post(&sid, &rec);
                // The client's own close packet: nothing is left to poll.
                session_closed |= rec == text("1");
                reference_app(&mut h);
                continue;
            }
            let Some(expected) = step.get("ws_recv").and_then(Value::as_array) else {
                continue;
            };
            let mut want = Vec::new();
            let late = expected
                .iter()
                .any(|f| f["at_ms"].as_u64() >= Some(connect_timeout));
            // The open packet (first of step 1) is the engine's, not Socket.IO's.
            let first = usize::from(i == 1);
            for f in expected.get(first..).unwrap_or_default() {
                match f["op"].as_str() {
                    Some("text") => want.push(text(f["text"].as_str().unwrap())),
                    Some("binary") => want.push(Rec::Bin(hex(f["hex"].as_str().unwrap()))),
                    // A WebSocket close frame is the close packet on polling.
                    Some("close") => want.push(text("1")),
                    _ => {}
                }
            }
            if late {
                h.now += Duration::from_millis(connect_timeout);
                h.core.layer.handle_timeout(&mut h.core.engine, h.now);
            }
            let mut got = if session_closed || (i == 1 && want.is_empty()) {
                Vec::new()
            } else if want.last() == Some(&text("1")) {
                h.recv_closed(&sid)
            } else {
                h.recv(&sid)
            };
            reference_app(&mut h);
            let ids: Vec<String> = h
                .log
                .iter()
                .filter_map(|e| match e {
                    Event::Connect { sid, .. } => Some(sid.to_string()),
                    _ => None,
                })
                .collect();
            session_closed |= got.last() == Some(&text("1"));
            for rec in &mut got {
                if let Rec::Text(t) = rec {
                    *t = t.replace(&sid, "<sid>");
                    for (i, id) in ids.iter().enumerate() {
                        let n = if i == 0 {
                            String::new()
                        } else {
                            (i + 1).to_string()
                        };
                        *t = t.replace(id, &format!("<sio_sid{n}>"));
                    }
                }
            }
            assert_eq!(got, want, "{name}");
        }
        h.take_events();
        let ours: Vec<&str> = disconnects(&h.log)
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| *r != "transport close")
            .collect();
        let node: Vec<&str> = case["server_log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["event"] == "disconnect" && l["reason"] != "transport close")
            .map(|l| l["reason"].as_str().unwrap())
            .collect();
        // "transport close" is left out: Node's log has it whenever its test client hung up.
        assert_eq!(ours, node, "{name}: disconnect reasons");
        replayed += 1;
    }
    assert!(replayed >= 35, "replayed {replayed} cases");
}

#[test]
fn volatile_broadcasts_skip_sessions_not_ready_to_send() {
    let mut h = harness();
    let (_, parked) = h.open();
    let (k_parked, _) = h.connect(&parked, "/");
    let (_, idle) = h.open();
    let (k_idle, _) = h.connect(&idle, "/");
    // `parked` has a GET waiting (nothing to read yet, so it stays parked); `idle` has none.
    assert_eq!(h.recv(&parked), vec![]);
    let reached =
        h.core
            .layer
            .broadcast_volatile("/", &[], &[], r#"["tick"]"#, vec![], &mut h.core.engine);
    assert_eq!(reached, vec![k_parked]);
    assert_eq!(h.recv(&parked), vec![text(r#"42["tick"]"#)]);
    // The idle session never gets the volatile packet, even on its next GET (which parks: nothing queued).
    assert_eq!(h.recv(&idle), vec![]);
    // A regular broadcast is queued for both.
    let reached = h.core.layer.broadcast(
        "/",
        &[],
        &[],
        r#"["kept"]"#,
        vec![],
        None,
        &mut h.core.engine,
    );
    assert_eq!(reached.len(), 2);
    assert!(reached.contains(&k_idle));
    assert_eq!(h.recv(&idle), vec![text(r#"42["kept"]"#)]);
}

#[test]
fn dynamic_namespaces_go_to_the_application_and_are_made_on_accept() {
    let mut h = harness();
    h.core.layer.dynamic_namespaces = true;
    let (_, sid) = h.open();
    h.send(&sid, "0/dyn-1,");
    let socket = h.connecting_socket();
    assert!(h.core.layer.namespace("/dyn-1").is_none());
    assert!(h.core.layer.accept(socket, &mut h.core.engine));
    let id = h.core.layer.sid_of(socket).unwrap().to_string();
    assert_eq!(
        h.recv(&sid),
        vec![Rec::Text(format!("40/dyn-1,{{\"sid\":\"{id}\"}}"))]
    );
    assert_eq!(h.core.layer.socket_count("/dyn-1"), 1);
    h.send(&sid, r#"2/dyn-1,["hi"]"#);
    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [Event::Event { socket: s, .. }] if *s == socket),
        "{events:?}"
    );
    assert!(!h.core.layer.remove_namespace("/dyn-1"), "it has a socket");
    // The application refuses what no parent namespace matches, as Rust would have.
    h.send(&sid, "0/other,");
    let other = h.connecting_socket();
    h.core.layer.refuse(
        other,
        r#"{"message":"Invalid namespace"}"#,
        &mut h.core.engine,
    );
    assert_eq!(
        h.recv(&sid),
        vec![text(r#"44/other,{"message":"Invalid namespace"}"#)]
    );
    h.send(&sid, "1/dyn-1,");
    h.take_events();
    assert!(h.core.layer.remove_namespace("/dyn-1"));
    assert!(h.core.layer.namespace("/dyn-1").is_none());
    assert!(h.is_open(&sid));
}

/// The offset a stamped event carries: its last argument.
fn offset_of(rec: &Rec) -> String {
    let Rec::Text(t) = rec else {
        panic!("not a text packet: {rec:?}")
    };
    let args = &t[t.find('[').unwrap()..];
    let v: Vec<Value> = serde_json::from_str(args).unwrap();
    v.last().unwrap().as_str().unwrap().to_owned()
}

/// A socket connected to "/" with recovery on, in room "room": its session's sid, key, id and pid.
fn recoverable_socket(h: &mut Harness) -> (String, SocketKey, String, String) {
    let (_, sid) = h.open();
    h.send(&sid, "0");
    let socket = h.connecting_socket();
    assert!(h.core.layer.accept(socket, &mut h.core.engine));
    let id = h.core.layer.sid_of(socket).unwrap().to_string();
    let pid = h.core.layer.pid_of(socket).unwrap().to_string();
    let reply = format!(r#"40{{"sid":"{id}","pid":"{pid}"}}"#);
    assert_eq!(
        h.recv(&sid),
        vec![Rec::Text(reply)],
        "Node's reply: sid and pid"
    );
    h.core.layer.join(socket, "room");
    (sid, socket, id, pid)
}

/// A recovery harness whose socket got one event, then lost its transport: its key, id, pid and that offset.
fn broken_socket() -> (Harness, SocketKey, String, String, String) {
    let mut h = harness();
    h.core.layer.enable_recovery(Duration::from_secs(60));
    let (sid, socket, id, pid) = recoverable_socket(&mut h);
    assert!(h.emit(socket, r#"["a"]"#));
    let got = h.recv(&sid);
    let offset = offset_of(&got[0]);
    assert_eq!(got, vec![text(&format!(r#"42["a","{offset}"]"#))]);
    h.post(&sid, &text("1"));
    assert_eq!(
        disconnects(&h.take_events()),
        vec![(socket, "transport close")]
    );
    assert_eq!(h.core.layer.disconnected_count(), 1);
    (h, socket, id, pid, offset)
}

fn broadcast(h: &mut Harness, rooms: &[&str], except: &[&str], data: &str, att: Vec<Vec<u8>>) {
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    let except: Vec<String> = except.iter().map(|r| r.to_string()).collect();
    let (sio, engine) = (&mut h.core.layer, &mut h.core.engine);
    sio.broadcast("/", &rooms, &except, data, att, None, engine);
}

#[test]
fn a_socket_recovers_its_id_rooms_and_the_packets_it_missed() {
    let (mut h, _, id, pid, offset) = broken_socket();
    // Meanwhile: to its room, to everyone but its room, to it alone (binary), and one with an ack id.
    broadcast(&mut h, &["room"], &[], r#"["b",1]"#, vec![]);
    broadcast(&mut h, &[], &["room"], r#"["c"]"#, vec![]);
    let placeholder = r#"["d",{"_placeholder":true,"num":0}]"#;
    broadcast(&mut h, &[&id], &[], placeholder, vec![vec![1, 2]]);
    let (sio, engine) = (&mut h.core.layer, &mut h.core.engine);
    sio.broadcast("/", &[], &[], r#"["e"]"#, vec![], Some(7), engine);
    // It comes back on a new session.
    let (_, sid2) = h.open();
    h.send(&sid2, &format!(r#"0{{"pid":"{pid}","offset":"{offset}"}}"#));
    let s2 = h.connecting_socket();
    let (sio, engine) = (&mut h.core.layer, &mut h.core.engine);
    assert_eq!(
        sio.restore(s2, &pid, &offset, engine, h.now).as_deref(),
        Some(&*id)
    );
    assert!(h.core.layer.accept(s2, &mut h.core.engine));
    let got = h.recv(&sid2);
    let (b, d) = (offset_of(&got[0]), offset_of(&got[1]));
    // The missed packets, then the CONNECT reply: Node's order.
    let want = vec![
        text(&format!(r#"42["b",1,"{b}"]"#)),
        text(&format!(
            r#"451-["d",{{"_placeholder":true,"num":0}},"{d}"]"#
        )),
        Rec::Bin(vec![1, 2]),
        text(&format!(r#"40{{"sid":"{id}","pid":"{pid}"}}"#)),
    ];
    assert_eq!(got, want);
    let mut rooms: Vec<String> = h
        .core
        .layer
        .rooms_of(s2)
        .iter()
        .map(|r| r.to_string())
        .collect();
    rooms.sort();
    let mut want = vec![id.clone(), "room".to_owned()];
    want.sort();
    assert_eq!(rooms, want);
    assert_eq!(h.core.layer.disconnected_count(), 0);
    // Taken once; and the next break is recovered from the offset of the last packet replayed.
    assert!(h.core.layer.take_session("/", &pid, &d, h.now).is_none());
    h.post(&sid2, &text("1"));
    h.take_events();
    assert!(
        h.core.layer.take_session("/", &pid, &b, h.now).is_none(),
        "not the last offset"
    );
    assert!(h.core.layer.take_session("/", &pid, &d, h.now).is_some());
}

#[test]
fn a_disconnected_socket_expires_at_its_deadline() {
    let (mut h, _, _, pid, offset) = broken_socket();
    h.now += Duration::from_secs(59);
    assert!(h
        .take_events()
        .iter()
        .all(|e| !matches!(e, Event::Expired { .. })));
    h.now += Duration::from_secs(1);
    let events = h.take_events();
    assert!(
        events.contains(&Event::Expired {
            pid: pid.clone().into()
        }),
        "{events:?}"
    );
    assert_eq!(h.core.layer.disconnected_count(), 0);
    assert!(h
        .core
        .layer
        .take_session("/", &pid, &offset, h.now)
        .is_none());
}

#[test]
fn only_a_broken_transport_keeps_a_socket() {
    let mut h = harness();
    h.core.layer.enable_recovery(Duration::from_secs(60));
    let (sid, socket, _, _) = recoverable_socket(&mut h);
    h.send(&sid, "1"); // the client leaves the namespace: nothing to recover, as in Node
    assert_eq!(
        disconnects(&h.take_events()),
        vec![(socket, "client namespace disconnect")]
    );
    assert_eq!(h.core.layer.disconnected_count(), 0);
    // With an ack id an event carries no offset (Node keeps no such packet).
    let (sid, socket, _, _) = recoverable_socket(&mut h);
    let (sio, engine) = (&mut h.core.layer, &mut h.core.engine);
    assert!(sio.emit_to(socket, r#"["q"]"#, vec![], Some(3), false, engine));
    assert_eq!(h.recv(&sid), vec![text(r#"423["q"]"#)]);
}

#[test]
fn recovery_off_changes_nothing_on_the_wire() {
    let mut h = harness();
    let (sid, socket) = {
        let (_, sid) = h.open();
        let (socket, _) = h.connect(&sid, "/"); // asserts the CONNECT reply has no pid
        (sid, socket)
    };
    h.core.layer.join(socket, "room");
    assert!(h.emit(socket, r#"["a",1]"#));
    broadcast(&mut h, &["room"], &[], r#"["b"]"#, vec![]);
    assert_eq!(h.recv(&sid), vec![text(r#"42["a",1]"#), text(r#"42["b"]"#)]);
    assert_eq!(h.core.layer.pid_of(socket), None);
    h.post(&sid, &text("1"));
    assert_eq!(
        disconnects(&h.take_events()),
        vec![(socket, "transport close")]
    );
    assert_eq!(h.core.layer.disconnected_count(), 0, "nothing kept");
}

/// What `/metrics` reads (crate::metrics): counted where it happens, the same whatever drives the core; and a
/// socket's `buffered_amount`, which on long-polling is the payload waiting for the next GET.
#[test]
fn counters_and_buffered_amount() {
    let mut h = harness();
    let (_, sid_a) = h.open();
    let (a, _) = h.connect(&sid_a, "/");
    let (_, sid_b) = h.open();
    let (b, _) = h.connect(&sid_b, "/");
    h.send(&sid_a, "0/nope,");
    h.recv(&sid_a);
    let sio = &h.core.layer.counters;
    assert_eq!(
        sio.connects,
        [2, 0, 1],
        "accepted, refused, invalid namespace"
    );
    let engine = &h.core.engine.counters;
    assert_eq!(engine.sessions_opened, [2, 0]);
    // In: two CONNECTs and one to a namespace that does not exist; out: their answers.
    assert_eq!((engine.packets_in, engine.packets_out), (3, 3));
    assert_eq!(engine.bytes_in, 1 + 1 + 7);

    // Nothing waits for b; a broadcast's packet does until b's next GET, and counts once per target.
    assert_eq!(h.core.layer.buffered_amount(b, &h.core.engine), Some(0));
    let bytes_out = engine.bytes_out;
    let reached = h.core.layer.broadcast(
        "/",
        &[],
        &[],
        r#"["hi"]"#,
        Vec::new(),
        None,
        &mut h.core.engine,
    );
    assert_eq!(reached.len(), 2);
    h.pump();
    let waiting = r#"42["hi"]"#.len();
    assert_eq!(
        h.core.layer.buffered_amount(b, &h.core.engine),
        Some(waiting)
    );
    assert_eq!(h.core.layer.sockets_by_transport(&h.core.engine), [2, 0]);
    let (sio, engine) = (&h.core.layer.counters, &h.core.engine.counters);
    assert_eq!((sio.broadcasts, sio.deliveries), (1, 2));
    assert_eq!(engine.packets_out, 3 + 2);
    // The message's data: the Socket.IO packet without Engine.IO's type digit.
    assert_eq!(engine.bytes_out - bytes_out, 2 * (waiting as u64 - 1));
    assert_eq!(h.recv(&sid_b), vec![text(r#"42["hi"]"#)]);
    assert_eq!(h.core.layer.buffered_amount(b, &h.core.engine), Some(0));

    // A packet the protocol refuses closes the session: counted as bad input, and the disconnect by reason.
    h.send(&sid_a, "9");
    h.pump();
    let engine = &h.core.engine.counters;
    assert_eq!(
        engine.bad_input[crate::metrics::BadInput::SocketIo as usize],
        1
    );
    assert_eq!(
        h.core.layer.buffered_amount(a, &h.core.engine),
        None,
        "gone"
    );
    assert_eq!(
        h.core.layer.counters.disconnects.get("forced close"),
        Some(&1)
    );
}

#[path = "tests_v3.rs"]
mod v3;
