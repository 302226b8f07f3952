//! Engine.IO v3 sessions (`Config::allow_eio3`), driven as `tests.rs` drives v4 ones, with what
//! socket.io-client 2.x sends.
use super::*;

fn v3() -> Config {
    Config {
        allow_eio3: true,
        ..config()
    }
}

fn get3(query: &str) -> String {
    get(query).replace("EIO=4", "EIO=3")
}

fn post3(sid: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /engine.io/?EIO=3&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

impl T {
    /// A v3 polling session (`query`: more of the handshake's query): (sid, key).
    fn polling3(&mut self, query: &str) -> (String, SessionKey) {
        let (_, res) = self.request(&get3(query));
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=UTF-8")
        );
        // `<length>:0{...}`: the open packet in a v3 payload.
        let (len, packet) = res.text().split_once(':').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), packet.len());
        let open: Value = serde_json::from_str(&packet[1..]).unwrap();
        assert_eq!(open["pingInterval"], 300);
        let sid = open["sid"].as_str().unwrap().to_owned();
        let key = self.e.key_of(&sid).unwrap();
        assert_eq!(
            self.e.protocol_of(key),
            Some(Protocol::V3 {
                polling_binary: !query.contains("b64=1"),
                ws_binary: !query.contains("b64=1"),
            })
        );
        self.events();
        (sid, key)
    }

    fn post3(&mut self, sid: &str, content_type: &str, body: &[u8]) -> Res {
        let c = self.connect();
        self.send(c, post3(sid, content_type, body));
        parse_response(&mut self.out(c))
    }

    fn poll3(&mut self, sid: &str) -> Res {
        self.request(&get3(&format!("sid={sid}"))).1
    }

    fn messages(&mut self) -> Vec<Data> {
        (self.events().into_iter())
            .filter_map(|e| match e {
                Event::Message { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn v3_is_refused_unless_allowed_as_node_does() {
    let mut t = T::new(config());
    for query in ["", "EIO=3&"] {
        let raw = format!("GET /engine.io/?{query}transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
        let (_, res) = t.request(&raw);
        assert_eq!(res.status, 400);
        assert_eq!(
            res.json(),
            json!({"code": 5, "message": "Unsupported protocol version"})
        );
    }
    assert_eq!(t.errors(), 2);
    // Allowed, a request without EIO is v3 too, as in Node; v4 is unchanged.
    let mut t = T::new(v3());
    let raw = "GET /engine.io/?transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(t.request(raw).1.status, 200);
    let (sid, _) = t.polling();
    assert_eq!(
        t.e.protocol_of(t.e.key_of(&sid).unwrap()),
        Some(Protocol::V4)
    );
}

#[test]
fn the_client_pings_and_the_server_pongs() {
    let mut t = T::new(v3());
    let (sid, _) = t.polling3("");
    // No ping from the server, ever: the GET stays parked past ping_interval.
    let c = t.connect();
    t.send(c, get3(&format!("sid={sid}")));
    t.advance(350);
    assert!(t.out(c).is_empty());
    assert_eq!(
        t.post3(&sid, "text/plain;charset=UTF-8", b"1:2").text(),
        "ok"
    );
    assert_eq!(parse_response(&mut t.out(c)).text(), "1:3");
    // Each ping gives the client ping_interval + ping_timeout (300 + 200 ms) more.
    t.advance(499);
    assert!(t.closes().is_empty());
    t.advance(1);
    assert_eq!(t.closes(), [CloseReason::PingTimeout]);
}

#[test]
fn a_pong_from_a_v3_client_fails_its_transport() {
    let mut t = T::new(v3());
    let (sid, _) = t.polling3("");
    t.post3(&sid, "text/plain", b"1:3");
    assert_eq!(t.closes(), [CloseReason::TransportError]);
}

#[test]
fn polling_payloads_both_ways() {
    let mut t = T::new(v3());
    let (sid, key) = t.polling3("");
    // Text only: a text payload, lengths in UTF-16 code units.
    t.e.send(key, Data::Text("€😀".into()));
    let res = t.poll3(&sid);
    assert_eq!(res.text(), "4:4€😀");
    // With a binary message: a binary payload.
    t.e.send(key, Data::Text("a".into()));
    t.e.send(key, Data::Binary(vec![1, 2]));
    let res = t.poll3(&sid);
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    assert_eq!(res.body, [0, 2, 255, b'4', b'a', 1, 3, 255, 4, 1, 2]);
    // The client's binary payload, and its text one.
    t.post3(
        &sid,
        "application/octet-stream",
        &[0, 2, 255, b'4', b'x', 1, 2, 255, 4, 7],
    );
    t.post3(
        &sid,
        "text/plain;charset=UTF-8",
        "2:4é10:b4AQIDBA==".as_bytes(),
    );
    let want = [
        Data::Text("x".into()),
        Data::Binary(vec![7]),
        Data::Text("é".into()),
        Data::Binary(vec![1, 2, 3, 4]),
    ];
    assert_eq!(t.messages(), want);
}

#[test]
fn b64_clients_get_binary_as_base64_text() {
    let mut t = T::new(v3());
    let (sid, key) = t.polling3("b64=1");
    t.e.send(key, Data::Binary(vec![1, 2, 3]));
    let res = t.poll3(&sid);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(res.text(), "6:b4AQID");
    // Node.js's XHR asks for base64, its WebSocket does not: after the upgrade, binary goes as binary.
    let ws = t.connect();
    t.send(
        ws,
        ws_request(&format!("&sid={sid}")).replace("EIO=4", "EIO=3"),
    );
    t.out(ws);
    t.send(ws, masked(Opcode::Text, b"2probe"));
    t.send(ws, masked(Opcode::Text, b"5"));
    t.out(ws);
    t.e.send(key, Data::Binary(vec![1]));
    assert_eq!(frames(&t.out(ws)), [Message::Binary(vec![4, 1])]);
}

#[test]
fn websocket_after_the_upgrade() {
    let mut t = T::new(v3());
    let (sid, key) = t.polling3("");
    let poll = t.connect();
    t.send(poll, get3(&format!("sid={sid}")));
    let ws = t.connect();
    t.send(
        ws,
        ws_request(&format!("&sid={sid}")).replace("EIO=4", "EIO=3"),
    );
    assert_eq!(parse_response(&mut t.out(ws)).status, 101);
    t.send(ws, masked(Opcode::Text, b"2probe"));
    assert_eq!(frames(&t.out(ws)), [text("3probe")]);
    assert_eq!(parse_response(&mut t.out(poll)).text(), "1:6");
    t.e.send(key, Data::Binary(vec![5]));
    t.send(ws, masked(Opcode::Text, b"5"));
    // Queued during the upgrade, a binary message goes out behind its type byte.
    assert_eq!(frames(&t.out(ws)), [Message::Binary(vec![4, 5])]);
    t.send(ws, masked(Opcode::Text, b"2"));
    assert_eq!(frames(&t.out(ws)), [text("3")]);
    t.send(ws, masked(Opcode::Binary, &[4, 6, 7]));
    t.send(ws, masked(Opcode::Text, b"b4CA=="));
    assert_eq!(
        t.messages(),
        [Data::Binary(vec![6, 7]), Data::Binary(vec![8])]
    );
    // A broadcast reaches v3 and v4 sessions each in its own form.
    let (v4, v4_key) = t.websocket();
    t.e.broadcast(&[key, v4_key], Data::Binary(vec![9]));
    assert_eq!(frames(&t.out(ws)), [Message::Binary(vec![4, 9])]);
    assert_eq!(frames(&t.out(v4)), [Message::Binary(vec![9])]);
}

#[test]
fn bad_v3_input_closes_the_session_once_reported() {
    let cases: [(&str, &[u8]); 4] = [
        ("text/plain", b"5:4hi"),
        ("text/plain", b"2:4"),
        ("application/octet-stream", &[1, 1, 255, 2]),
        ("application/octet-stream", &[0, 9, 255, b'4']),
    ];
    for (content_type, body) in cases {
        let mut t = T::new(v3());
        let (sid, key) = t.polling3("");
        let (other, _) = t.polling3("");
        assert_eq!(t.post3(&sid, content_type, body).text(), "ok");
        let events = t.events();
        let reports = events
            .iter()
            .filter(|e| matches!(e, Event::ProtocolError { .. }))
            .count();
        assert_eq!(reports, 1, "{body:?}");
        let close = Event::Close {
            key,
            reason: CloseReason::ParseError,
        };
        assert!(events.contains(&close), "{events:?}");
        // The other session is untouched.
        assert!(t.e.key_of(&other).is_some());
    }
    // A WebSocket binary frame that is not a message.
    let mut t = T::new(v3());
    let c = t.connect();
    t.send(c, ws_request("").replace("EIO=4", "EIO=3"));
    t.out(c);
    t.events();
    t.send(c, masked(Opcode::Binary, &[2, 1]));
    assert_eq!(t.closes(), [CloseReason::ParseError]);
}
