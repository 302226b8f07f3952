//! Socket.IO v4 over Engine.IO v3 (socket.io-client 2.x), as Node's socket.io 4.x serves it with allowEIO3.
use super::*;
use crate::engineio::packet_v3;

fn v3_harness() -> Harness {
    let mut h = harness();
    h.core.engine.config.allow_eio3 = true;
    h
}

impl Harness {
    fn open3(&mut self) -> (SessionKey, String) {
        let conn =
            self.request(b"GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
        let body = self.response(conn).expect("handshake answered");
        let open = match &packet_v3::decode_payload(&body).unwrap()[..] {
            [engineio::Packet::Open(json)] => serde_json::from_str::<Value>(json).unwrap(),
            other => panic!("{other:?}"),
        };
        let sid = open["sid"].as_str().unwrap().to_owned();
        (self.core.engine.key_of(&sid).unwrap(), sid)
    }

    fn send3(&mut self, sid: &str, sio: &str) {
        self.post_body(sid, 3, &format!("{}:4{sio}", 1 + sio.len()));
    }

    /// The Socket.IO packets a GET reads now.
    fn recv3(&mut self, sid: &str) -> Vec<String> {
        let get = format!(
            "GET /socket.io/?EIO=3&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let conn = self.request(get.as_bytes());
        let body = self.response(conn).expect("something to read");
        (packet_v3::decode_payload(&body).unwrap().into_iter())
            .map(|p| match p {
                engineio::Packet::Message(Data::Text(t)) => t,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// The one Connect event: its socket, namespace, id and auth.
    fn connect_event(&mut self) -> (SocketKey, String, String, Option<String>) {
        let events = self.take_events();
        let connects: Vec<_> = (events.into_iter())
            .filter_map(|e| match e {
                Event::Connect {
                    socket,
                    nsp,
                    sid,
                    auth,
                    ..
                } => Some((socket, nsp.to_string(), sid.to_string(), auth)),
                _ => None,
            })
            .collect();
        assert_eq!(connects.len(), 1, "{connects:?}");
        connects.into_iter().next().unwrap()
    }
}

#[test]
fn a_v3_client_is_in_the_main_namespace_without_asking() {
    let mut h = v3_harness();
    let (_, sid) = h.open3();
    let (socket, nsp, id, auth) = h.connect_event();
    // The socket's id is the Engine.IO sid, which socket.io-client 2.x takes as its own.
    assert_eq!((nsp.as_str(), id.as_str(), auth), ("/", sid.as_str(), None));
    assert!(h.core.layer.accept(socket, &mut h.core.engine));
    // CONNECT without the v5 reply's data.
    assert_eq!(h.recv3(&sid), ["0"]);
    assert!(h.emit(socket, r#"["hi",1]"#));
    assert_eq!(h.recv3(&sid), [r#"2["hi",1]"#]);
}

#[test]
fn a_namespace_query_is_the_auth() {
    let mut h = v3_harness();
    let (_, sid) = h.open3();
    h.connect_event();
    h.send3(&sid, "0/custom?token=a%20b&x=1&x=2,");
    let (socket, nsp, id, auth) = h.connect_event();
    assert_eq!((nsp.as_str(), id), ("/custom", format!("/custom#{sid}")));
    assert_eq!(auth.as_deref(), Some(r#"{"token":"a b","x":"2"}"#));
    h.core.layer.accept(socket, &mut h.core.engine);
    assert_eq!(h.recv3(&sid), ["0/custom,"]);
    // Events name the namespace without the query.
    h.send3(&sid, r#"2/custom,["e"]"#);
    assert!(matches!(&h.take_events()[..], [Event::Event { name: Some(n), .. }] if n == "e"));
}

#[test]
fn refusals_as_node_sends_them_to_v3_clients() {
    let mut h = v3_harness();
    let (_, sid) = h.open3();
    h.connect_event();
    let cases = [
        (r#"{"message":"no","data":{"a":1}}"#, r#"4/custom,{"a":1}"#),
        (r#"{"message":"no","data":null}"#, r#"4/custom,"no""#),
        (r#"{"message":"no"}"#, r#"4/custom,"no""#),
    ];
    for (refusal, wire) in cases {
        h.send3(&sid, "0/custom,");
        let (socket, ..) = h.connect_event();
        h.core.layer.refuse(socket, refusal, &mut h.core.engine);
        assert_eq!(h.recv3(&sid), [wire]);
    }
    h.send3(&sid, "0/nope,");
    assert_eq!(h.recv3(&sid), [r#"4/nope,{"message":"Invalid namespace"}"#]);
}
