use super::*;
use crate::websocket::Decoder;

const OPEN: &str = r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

fn opened(transport: Transport) -> Client {
    opened_with(transport, Parser::Default)
}

fn opened_with(transport: Transport, parser: Parser) -> Client {
    let mut c = Client::new(transport, parser);
    let mut events = Vec::new();
    match transport {
        Transport::Polling => c.feed_polling(OPEN.as_bytes(), &mut events).unwrap(),
        Transport::WebSocket => c.feed_websocket(&server_frame(OPEN), &mut events).unwrap(),
    }
    assert!(matches!(&events[..], [Event::Open(h)] if h.sid == "abc" && h.ping_interval == 25000));
    c
}

fn server_frame(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    websocket::encode_frame(Opcode::Text, text.as_bytes(), &mut out);
    out
}

/// What the server reads of the client's frames: they must be masked (the server's decoder refuses others).
fn read_frames(bytes: &[u8]) -> Vec<Message> {
    let mut d = Decoder::new(MAX_MESSAGE);
    d.feed(bytes);
    std::iter::from_fn(|| d.next_message().unwrap()).collect()
}

#[test]
fn the_handshake_is_read_as_engine_io_client_reads_it() {
    let h = parse_handshake(&OPEN[1..]).unwrap();
    assert_eq!(h.upgrades, ["websocket"]);
    assert_eq!((h.ping_timeout, h.max_payload), (20000, 1_000_000));
    assert!(parse_handshake(r#"{"sid":"a"}"#).is_err());
    assert!(parse_handshake("not json").is_err());
}

#[test]
fn the_first_packet_must_be_open() {
    let mut c = Client::new(Transport::Polling, Parser::Default);
    let err = c.feed_polling(b"40", &mut Vec::new()).unwrap_err();
    assert!(err.0.contains("not an open packet"), "{err}");
    assert!(Client::new(Transport::Polling, Parser::Default)
        .feed_polling(b"<html>", &mut Vec::new())
        .is_err());
}

#[test]
fn a_ping_is_answered_on_the_next_post() {
    let mut c = opened(Transport::Polling);
    let mut events = Vec::new();
    c.feed_polling(b"2\x1e40{\"sid\":\"x\"}", &mut events)
        .unwrap();
    assert_eq!(events[0], Event::Ping);
    assert_eq!(
        events[1],
        Event::Connect {
            nsp: "/".into(),
            data: Some(r#"{"sid":"x"}"#.into())
        }
    );
    c.event("/", r#"["hi",1]"#, Some(3), Vec::new()).unwrap();
    assert_eq!(c.take_payload().unwrap(), b"3\x1e423[\"hi\",1]");
    assert_eq!(c.take_payload(), None);
}

#[test]
fn binary_events_are_reassembled_from_polling() {
    let mut c = opened(Transport::Polling);
    let mut events = Vec::new();
    let body = b"451-/admin,7[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID";
    c.feed_polling(body, &mut events).unwrap();
    assert_eq!(
        events,
        [Event::Event {
            nsp: "/admin".into(),
            name: "up".into(),
            args: r#"[{"_placeholder":true,"num":0}]"#.into(),
            argc: 1,
            id: Some(7),
            attachments: vec![vec![1, 2, 3]],
        }]
    );
    assert!(c.feed_polling(b"bAQID", &mut Vec::new()).is_err());
}

#[test]
fn websocket_frames_are_masked_and_binary_goes_in_binary_frames() {
    let mut c = opened(Transport::WebSocket);
    c.ack("/", 5, r#"[{"_placeholder":true,"num":0}]"#, vec![vec![9]])
        .unwrap();
    let frames = read_frames(&c.take_frames());
    assert_eq!(
        frames,
        [
            Message::Text(r#"461-5[{"_placeholder":true,"num":0}]"#.into()),
            Message::Binary(vec![9])
        ]
    );
    let mut events = Vec::new();
    let mut input = server_frame("2");
    websocket::encode_frame(Opcode::Ping, b"p", &mut input);
    c.feed_websocket(&input, &mut events).unwrap();
    assert_eq!(events, [Event::Ping]);
    assert_eq!(
        read_frames(&c.take_frames()),
        [Message::Text("3".into()), Message::Pong(b"p".to_vec())]
    );
}

#[test]
fn the_upgrade_probes_then_moves_what_waited_to_the_websocket() {
    let mut c = opened(Transport::Polling);
    assert_eq!(
        read_frames(&c.probe_frame()),
        [Message::Text("2probe".into())]
    );
    c.connect("/", Some(r#"{"a":1}"#)).unwrap();
    let mut events = Vec::new();
    let mut input = server_frame("3probe");
    input.extend(server_frame("40{\"sid\":\"s\"}"));
    c.feed_probe(&input, &mut events).unwrap();
    assert_eq!(events, [Event::Probed]);
    c.upgrade().unwrap();
    assert_eq!(c.transport(), Transport::WebSocket);
    assert_eq!(c.take_payload(), None);
    assert_eq!(
        read_frames(&c.take_frames()),
        [
            Message::Text("5".into()),
            Message::Text(r#"40{"a":1}"#.into())
        ]
    );
    // What arrived behind the probe's answer is read as the transport's.
    events.clear();
    c.feed_websocket(&[], &mut events).unwrap();
    assert_eq!(
        events,
        [Event::Connect {
            nsp: "/".into(),
            data: Some(r#"{"sid":"s"}"#.into())
        }]
    );
}

#[test]
fn a_probe_answered_otherwise_is_an_error() {
    let mut c = opened(Transport::Polling);
    c.probe_frame();
    assert!(c
        .feed_probe(&server_frame("3nope"), &mut Vec::new())
        .is_err());
}

#[test]
fn bad_socket_io_packets_are_errors() {
    for bad in [
        "42[\"connect\"]",
        "49",
        "43[1]",
        "42{}",
        "451-[\"a\"]\x1e42",
        "9",
    ] {
        let mut c = opened(Transport::Polling);
        assert!(
            c.feed_polling(bad.as_bytes(), &mut Vec::new()).is_err(),
            "{bad}"
        );
    }
    let mut c = opened(Transport::Polling);
    let mut events = Vec::new();
    c.feed_polling(b"44{\"message\":\"no\"}\x1e41/a,", &mut events)
        .unwrap();
    assert_eq!(
        events,
        [
            Event::ConnectError {
                nsp: "/".into(),
                data: Some(r#"{"message":"no"}"#.into())
            },
            Event::Disconnect { nsp: "/a".into() }
        ]
    );
}

#[test]
fn a_close_frame_closes() {
    let mut c = opened(Transport::WebSocket);
    let mut input = Vec::new();
    websocket::encode_close(1000, "", &mut input);
    let mut events = Vec::new();
    c.feed_websocket(&input, &mut events).unwrap();
    assert_eq!(events, [Event::Close]);
    c.close();
    assert_eq!(read_frames(&c.take_frames()), [Message::Text("1".into())]);
}

#[test]
fn masks_differ() {
    let mut m = masks::Masks::default();
    let keys: std::collections::HashSet<[u8; 4]> = (0..200).map(|_| m.next()).collect();
    assert!(keys.len() > 190);
}

mod any_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a server sends, the client answers with events or an error, never a panic.
        #[test]
        fn never_panics(pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
                        framed in any::<bool>()) {
            let mut c = opened(if framed { Transport::WebSocket } else { Transport::Polling });
            let mut events = Vec::new();
            for piece in &pieces {
                let result = if framed {
                    c.feed_websocket(piece, &mut events)
                } else {
                    c.feed_polling(piece, &mut events)
                };
                if result.is_err() {
                    break;
                }
            }
            let mut probe = opened(Transport::Polling);
            probe.probe_frame();
            for piece in &pieces {
                if probe.feed_probe(piece, &mut events).is_err() {
                    break;
                }
            }
        }

        /// Any text packet after the open packet, Engine.IO and Socket.IO alike.
        #[test]
        fn text_packets_never_panic(text in "[0-6b][0-9/,a-z\\[\\]{}\":-]{0,40}") {
            let mut c = opened(Transport::Polling);
            let _ = c.feed_polling(text.as_bytes(), &mut Vec::new());
        }
    }
}

/// A server's msgpack packet as one binary WebSocket frame (the server's own encoder).
fn msgpack_frame(
    kind: PacketType,
    id: Option<u64>,
    data: Option<&str>,
    atts: &[Vec<u8>],
) -> Vec<u8> {
    let id = id.map(msgpack::OutId::Number);
    let bytes = msgpack::encode(kind, "/", id, data, atts).unwrap();
    let mut out = Vec::new();
    websocket::encode_frame(Opcode::Binary, &bytes, &mut out);
    out
}

#[test]
fn msgpack_packets_from_the_server_become_the_same_events() {
    let mut c = opened_with(Transport::WebSocket, Parser::Msgpack);
    let placeholder = r#"["up",{"_placeholder":true,"num":0},2.5]"#;
    let mut input = msgpack_frame(PacketType::Connect, None, Some(r#"{"sid":"s"}"#), &[]);
    input.extend(msgpack_frame(
        PacketType::Event,
        Some(7),
        Some(placeholder),
        &[vec![1, 2]],
    ));
    input.extend(msgpack_frame(
        PacketType::Ack,
        Some(3),
        Some("[1,\"x\"]"),
        &[],
    ));
    let mut events = Vec::new();
    c.feed_websocket(&input, &mut events).unwrap();
    let connect = Event::Connect {
        nsp: "/".into(),
        data: Some(r#"{"sid":"s"}"#.into()),
    };
    let event = Event::Event {
        nsp: "/".into(),
        name: "up".into(),
        args: r#"[{"_placeholder":true,"num":0},2.5]"#.into(),
        argc: 2,
        id: Some(7),
        attachments: vec![vec![1, 2]],
    };
    let ack = Event::Ack {
        nsp: "/".into(),
        id: 3,
        args: "[1,\"x\"]".into(),
        attachments: Vec::new(),
    };
    assert_eq!(events, [connect, event, ack]);
    let err = c.feed_websocket(&server_frame("40"), &mut Vec::new());
    assert!(err.unwrap_err().0.contains("msgpack"));
}

#[test]
fn msgpack_packets_to_the_server_are_one_binary_message_each() {
    let mut c = opened_with(Transport::Polling, Parser::Msgpack);
    c.connect("/a", None).unwrap();
    let data = r#"["hi",{"_placeholder":true,"num":0}]"#;
    c.event("/a", data, Some(3), vec![vec![9]]).unwrap();
    let packets = eio::decode_payload(&c.take_payload().unwrap()).unwrap();
    let decoded: Vec<_> = packets
        .into_iter()
        .map(|p| match p {
            eio::Packet::Message(Data::Binary(b)) => msgpack::decode(&b).unwrap(),
            other => panic!("not one binary message: {other:?}"),
        })
        .collect();
    assert_eq!(decoded[0].packet.kind, PacketType::Connect);
    assert_eq!(decoded[0].packet.nsp, "/a");
    let event = decoded[1].event.as_ref().unwrap();
    assert_eq!(event.name.as_deref(), Some("hi"));
    assert_eq!(event.args, r#"[{"_placeholder":true,"num":0}]"#);
    assert_eq!(
        (decoded[1].packet.id, &decoded[1].attachments),
        (Some(3), &vec![vec![9]])
    );
    let orphan = c.event(
        "/a",
        r#"["x",{"_placeholder":true,"num":1}]"#,
        None,
        vec![vec![1]],
    );
    assert!(orphan.is_err(), "a placeholder without its attachment");
}
