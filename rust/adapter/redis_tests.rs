//! The codec against real traffic (tests/vectors/redis_adapter.json, recorded from Node servers by
//! tests/cluster/capture_vectors.mjs): every message decodes, encodes back to the same bytes, lands on the
//! channel Node chose, and a broadcast yields what socket.io-parser sends to local clients. Then messages built
//! the way anysio builds them (from Socket.IO's JSON-and-attachments form) must be Node's bytes too; proptest
//! round trips; random bytes never panic.
use super::*;
use proptest::prelude::*;
use serde_json::Value as Json;

const VECTORS: &str = include_str!("../../tests/vectors/redis_adapter.json");

fn vectors() -> Json {
    serde_json::from_str(VECTORS).expect("vectors parse")
}

use crate::notepack::from_hex as hex;

fn uid_of(v: &Json, server: &str, nsp: &str) -> String {
    v["servers"][server][nsp].as_str().expect("uid").to_owned()
}

/// The messages of the vectors, with their bytes.
fn messages(v: &Json) -> Vec<(&Json, Vec<u8>)> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m, hex(m["hex"].as_str().expect("hex"))))
        .collect()
}

fn nsp_of_channel(channel: &str) -> &str {
    channel.split('#').nth(1).expect("nsp in channel")
}

/// socket.io-parser's output for a packet -> (its data's JSON text, attachments).
fn node_fanout(socketio: &Json) -> (&str, Vec<Vec<u8>>) {
    let items = socketio.as_array().expect("socketio");
    let text = items[0].as_str().expect("packet text");
    let start = text.find('[').expect("data array");
    let atts = items[1..]
        .iter()
        .map(|a| hex(a["binary"].as_str().expect("binary")))
        .collect();
    (&text[start..], atts)
}

/// notepack writes an integral double of 2^64 or more as a uint64 whose halves wrapped (1.79e308 becomes
/// `cf 00 00 00 00 00 00 00 00`, which every decoder reads as 0). The codec reads the same 0 and writes it in
/// its smallest form (`00`): Node's bytes with that rewrite are what the codec must give back.
fn without_notepack_overflow(op: &str, bytes: &[u8]) -> Vec<u8> {
    if op != "broadcast_odd_values" {
        return bytes.to_vec();
    }
    let wrapped = [0xcf, 0, 0, 0, 0, 0, 0, 0, 0];
    let at = bytes
        .windows(wrapped.len())
        .position(|w| w == wrapped)
        .expect("the wrapped 1.79e308");
    [&bytes[..at], &[0u8][..], &bytes[at + wrapped.len()..]].concat()
}

/// JSON values compared as a JavaScript client reads them: numbers as doubles.
fn as_js(v: Json) -> Json {
    match v {
        Json::Number(n) => serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
            .map_or(Json::Null, Json::Number),
        Json::Array(items) => Json::Array(items.into_iter().map(as_js).collect()),
        Json::Object(map) => Json::Object(map.into_iter().map(|(k, v)| (k, as_js(v))).collect()),
        other => other,
    }
}

/// What socket.io-parser sends to local clients for this message, and what the codec gives the Socket.IO layer:
/// the same data (as a JavaScript client reads it) and the same attachments.
fn check_fanout(local: &LocalBroadcast, m: &Json) {
    let (expected, atts) = node_fanout(&m["socketio"]);
    let ours: Json = serde_json::from_str(&local.data_json).expect("our data_json is JSON");
    assert_eq!(
        as_js(ours),
        as_js(serde_json::from_str::<Json>(expected).unwrap()),
        "fan-out of {}",
        m["op"]
    );
    assert_eq!(local.attachments, atts, "attachments of {}", m["op"]);
}

#[test]
fn classic_messages_decode_and_encode_back_byte_for_byte() {
    let v = vectors();
    let mut seen = [0usize; 3];
    for (m, bytes) in messages(&v) {
        if m["mode"] == "sharded" {
            continue;
        }
        let channel = m["channel"].as_str().unwrap();
        let op = m["op"].as_str().unwrap();
        if channel.starts_with("socket.io-request#") {
            seen[0] += 1;
            let req = Request::decode(&bytes).unwrap_or_else(|e| panic!("{op}: {e}"));
            assert_eq!(req.encode(), bytes, "request of {op}");
            assert_eq!(
                req.kind() as u64,
                m["decoded"]["type"].as_u64().unwrap(),
                "{op}"
            );
            assert_eq!(req.uid.as_deref(), m["decoded"]["uid"].as_str(), "{op}");
            assert_eq!(
                req.request_id.as_deref(),
                m["decoded"]["requestId"].as_str(),
                "{op}"
            );
            if let Some(local) = req.local_broadcast(nsp_of_channel(channel)) {
                check_fanout(&local.unwrap(), m);
            }
        } else if channel.starts_with("socket.io-response#") {
            seen[1] += 1;
            let resp = Response::decode(&bytes).unwrap_or_else(|e| panic!("{op}: {e}"));
            assert_eq!(resp.encode(), bytes, "response of {op}");
            assert_eq!(resp.request_id, m["decoded"]["requestId"].as_str().unwrap());
        } else {
            seen[2] += 1;
            let b = Broadcast::decode(&bytes).unwrap_or_else(|e| panic!("{op}: {e}"));
            assert_eq!(
                b.encode(),
                without_notepack_overflow(op, &bytes),
                "broadcast of {op}"
            );
            let d = &m["decoded"];
            assert_eq!(b.uid, d[0].as_str().unwrap());
            assert_eq!(b.packet.namespace(), nsp_of_channel(channel));
            let rooms: Vec<String> = serde_json::from_value(d[2]["rooms"].clone()).unwrap();
            let except: Vec<String> = serde_json::from_value(d[2]["except"].clone()).unwrap();
            assert_eq!((&b.opts.rooms, &b.opts.except), (&rooms, &except), "{op}");
            let expected_layout = if m["mode"] == "emitter" {
                OptsLayout::Emitter
            } else {
                OptsLayout::Adapter
            };
            assert_eq!(b.opts.layout, expected_layout, "{op}");
            let local = b.local().unwrap_or_else(|e| panic!("{op}: {e}"));
            assert_eq!(local.nsp, b.packet.namespace());
            assert_eq!(local.volatile, d[2]["flags"]["volatile"] == true, "{op}");
            assert_eq!(local.compress, d[2]["flags"]["compress"] != false, "{op}");
            check_fanout(&local, m);
        }
    }
    assert!(
        seen.iter().all(|&n| n >= 8),
        "every kind is covered: {seen:?}"
    );
}

#[test]
fn sharded_messages_decode_and_encode_back_byte_for_byte() {
    let v = vectors();
    let mut n = 0;
    for (m, bytes) in messages(&v) {
        if m["mode"] != "sharded" {
            continue;
        }
        n += 1;
        let op = m["op"].as_str().unwrap();
        let msg = ClusterMessage::decode(&bytes).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_eq!(msg.encode(), bytes, "{op}");
        assert_eq!(
            msg.body.kind() as u64,
            m["decoded"]["type"].as_u64().unwrap()
        );
        assert_eq!(
            msg.encoding,
            if m["encoding"] == "json" {
                Encoding::Json
            } else {
                Encoding::Msgpack
            }
        );
        // A message built from its parts picks the encoding Node picked.
        assert_eq!(
            ClusterMessage::new(&msg.uid, &msg.nsp, msg.body.clone()).encode(),
            bytes,
            "{op}"
        );
        let channels =
            ShardedChannels::new("socket.io", &msg.nsp, &msg.uid, SubscriptionMode::Dynamic);
        let channel = m["channel"].as_str().unwrap();
        if msg.body.is_response() {
            let requester = channel.trim_end_matches('#').rsplit('#').next().unwrap();
            assert_eq!(channels.response_to(requester), channel);
        } else {
            assert_eq!(channels.for_message(&msg), channel, "{op}");
        }
        if let Some(local) = msg.local_broadcast() {
            check_fanout(&local.unwrap(), m);
        }
    }
    assert!(n >= 15, "{n} sharded messages");
}

#[test]
fn channels_are_named_and_classified_as_node_does() {
    let v = vectors();
    let uid = uid_of(&v, "A", "/");
    let ch = Channels::new(DEFAULT_KEY, "/", &uid);
    assert_eq!(ch.broadcast_pattern(), "socket.io#/#*");
    assert_eq!(
        ch.subscriptions(),
        [
            "socket.io-request#/#",
            "socket.io-response#/#",
            &*format!("socket.io-response#/#{uid}#")
        ]
    );
    // The subscriptions Node made at startup.
    let startup = &v["ops"][0]["commands"];
    assert!(startup
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c[0] == "PSUBSCRIBE" && c[1] == "socket.io#/#*"));
    assert!(startup
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c[0] == "SUBSCRIBE"
            && c[1] == ch.subscriptions()[0]
            && c[2] == ch.subscriptions()[1]
            && c[3] == ch.subscriptions()[2]));
    for (m, bytes) in messages(&v) {
        let channel = m["channel"].as_str().unwrap();
        if m["mode"] == "sharded" || nsp_of_channel(channel) != "/" {
            continue;
        }
        match ch.classify(channel.as_bytes()).expect("one of ours") {
            Incoming::Broadcast { room } => {
                let b = Broadcast::decode(&bytes).unwrap();
                assert_eq!(ch.for_broadcast(&b.opts), channel);
                assert_eq!(
                    room.map(str::to_owned),
                    (b.opts.rooms.len() == 1).then(|| b.opts.rooms[0].clone())
                );
            }
            Incoming::Request => assert!(channel.starts_with("socket.io-request#")),
            Incoming::Response => assert!(channel.starts_with("socket.io-response#")),
        }
    }
    assert_eq!(ch.classify(b"socket.io#/chat#"), None);
    assert_eq!(ch.classify(b"socket.io-request#/chat#"), None);
    assert_eq!(Channels::new("k", "/chat", "u").room("r"), "k#/chat#r#");
    assert!(looks_like_a_socket_id("9HtcJM1q3eTg2iLGAAAC"));
    assert!(!looks_like_a_socket_id("r1"));
}

/// Messages built as anysio builds them (from the JSON text and attachments its Python layer has) are the
/// bytes Node sends for the same operation.
#[test]
fn messages_built_from_socketio_form_are_nodes_bytes() {
    let v = vectors();
    let mut n = 0;
    for (m, bytes) in messages(&v) {
        let op = m["op"].as_str().unwrap();
        if m["mode"] == "sharded" || !m["socketio"].is_array() || op == "broadcast_odd_values" {
            continue;
        }
        let (text, atts) = node_fanout(&m["socketio"]);
        let bytes = without_notepack_overflow(op, &bytes);
        let channel = m["channel"].as_str().unwrap();
        let nsp = nsp_of_channel(channel);
        if channel.starts_with("socket.io-request#") {
            let req = Request::decode(&bytes).unwrap();
            let RequestBody::Broadcast { opts, .. } = req.body else {
                panic!("{op}")
            };
            let packet = Packet::event(Some(nsp), text, &atts).unwrap();
            let built = Request::new(
                req.uid.as_deref(),
                req.request_id.as_deref(),
                RequestBody::Broadcast { packet, opts },
            );
            assert_eq!(built.encode(), bytes, "{op}");
        } else {
            let b = Broadcast::decode(&bytes).unwrap();
            let mut opts = BroadcastOpts::new(
                b.opts.rooms.clone(),
                b.opts.except.clone(),
                b.opts.flags.clone(),
            );
            opts.layout = b.opts.layout;
            let built = Broadcast {
                uid: b.uid.clone(),
                packet: Packet::event(Some(nsp), text, &atts).unwrap(),
                opts,
            };
            assert_eq!(built.encode(), bytes, "{op}");
            let ch = Channels::new(DEFAULT_KEY, nsp, "x");
            assert_eq!(ch.for_broadcast(&built.opts), channel);
        }
        n += 1;
    }
    assert!(n >= 15, "{n}");
}

#[test]
fn responses_and_requests_built_by_hand_match_node() {
    let v = vectors();
    let find = |op: &str, pred: &dyn Fn(&Json) -> bool| -> Vec<u8> {
        let (_, bytes) = messages(&v)
            .into_iter()
            .find(|(m, _)| m["op"] == op && m["mode"] == "classic" && pred(m))
            .expect(op);
        bytes
    };
    let count = find("broadcast_with_ack", &|m| m["decoded"]["type"] == 8);
    let Response { request_id, .. } = Response::decode(&count).unwrap();
    assert_eq!(
        Response::new(
            &request_id,
            ResponseBody::BroadcastClientCount { client_count: 2 }
        )
        .encode(),
        count
    );
    // A client's binary reply, from Socket.IO's form of it.
    let ack = find("broadcast_with_ack", &|m| {
        m["decoded"]["type"] == 9 && m["decoded"]["packet"].is_object()
    });
    let reply = Payload::from_socketio(
        r#"{"name":"b2","bytes":{"_placeholder":true,"num":0}}"#,
        &[vec![0xca, 0xfe]],
    )
    .unwrap();
    assert_eq!(
        Response::new(
            &request_id,
            ResponseBody::BroadcastAck {
                packet: Some(reply)
            }
        )
        .encode(),
        ack
    );

    let sse = find("server_side_emit", &|_| true);
    let req = Request::decode(&sse).unwrap();
    let built = Request::new(
        req.uid.as_deref(),
        None,
        RequestBody::ServerSideEmit {
            data: Payload::json(r#"["note",1,{"two":[2]}]"#).unwrap(),
        },
    );
    assert_eq!(built.encode(), sse);

    let join = find("sockets_join", &|_| true);
    let req = Request::decode(&join).unwrap();
    let opts = BroadcastOpts::new(vec!["r2".into()], vec![], None);
    assert_eq!(
        Request::new(
            req.uid.as_deref(),
            None,
            RequestBody::RemoteJoin {
                opts,
                rooms: vec!["r9".into()]
            }
        )
        .encode(),
        join
    );

    let fetch = find("fetch_sockets", &|m| {
        m["channel"] == "socket.io-response#/#"
    });
    let resp = Response::decode(&fetch).unwrap();
    let ResponseBody::Sockets { sockets } = &resp.body else {
        panic!("sockets")
    };
    let SocketEntry::Details(d) = &sockets[0] else {
        panic!("details")
    };
    assert_eq!(d.data, Some(Payload::json(r#"{"name":"b1"}"#).unwrap()));
    assert_eq!(d.rooms[0], d.id, "a socket's own room comes first");
}

#[test]
fn odd_values_fan_out_as_node_does() {
    // NaN, ±Infinity -> null; undefined -> null in arrays, left out of objects; Date -> its ISO string.
    let v = vectors();
    let (m, bytes) = messages(&v)
        .into_iter()
        .find(|(m, _)| m["op"] == "broadcast_odd_values")
        .unwrap();
    let local = Broadcast::decode(&bytes).unwrap().local().unwrap();
    assert_eq!(
        local.data_json,
        r#"["nan",null,null,null,0,[null],{"d":"1970-01-01T00:00:00.000Z"},3875820019684212736,0]"#
    );
    // Node writes the same values (its 3875820019684212700 is the same double).
    assert_eq!(
        m["socketio"][0],
        r#"2["nan",null,null,null,0,[null],{"d":"1970-01-01T00:00:00.000Z"},3875820019684212700,0]"#
    );
}

#[test]
fn payload_conversions() {
    // JSON -> msgpack numbers as notepack writes JavaScript numbers.
    let v = json_to_value(
        "[1,2.0,-3,2.5,18446744073709551615,-0.0,1e300,9007199254740993]",
        None,
    )
    .unwrap();
    let mut out = ByteBuf::new();
    write_msgpack(&mut out, &v);
    assert_eq!(
        out.as_slice(),
        &hex("980102fdcb4004000000000000cb43f000000000000000cb7e37e43c8800759ccf0020000000000000")
            [..]
    );
    // Placeholders name attachments; a bad one is an error.
    assert!(Payload::from_socketio(r#"[{"_placeholder":true,"num":1}]"#, &[vec![1]]).is_err());
    let p = Payload::from_socketio(
        r#"["x",{"_placeholder":true,"num":0},{"k":[{"_placeholder":true,"num":1}]}]"#,
        &[vec![1], vec![2, 3]],
    )
    .unwrap();
    assert!(p.has_binary());
    let (text, atts) = p.to_socketio().unwrap();
    assert_eq!(
        text,
        r#"["x",{"_placeholder":true,"num":0},{"k":[{"_placeholder":true,"num":1}]}]"#
    );
    assert_eq!(atts, vec![vec![1], vec![2, 3]]);
    assert_eq!(
        p.to_json_text().unwrap(),
        r#"["x",{"type":"Buffer","data":[1]},{"k":[{"type":"Buffer","data":[2,3]}]}]"#
    );
    // JavaScript object key order: array indices first, ascending; a repeated key keeps its first place.
    let map = Value::Map(vec![
        (Value::from("b"), Value::from(1)),
        (Value::from("2"), Value::from(2)),
        (Value::from("a"), Value::from(3)),
        (Value::from("1"), Value::from(4)),
        (Value::from("b"), Value::from(5)),
    ]);
    assert_eq!(
        value_to_json(&map, None).unwrap(),
        r#"{"1":4,"2":2,"b":5,"a":3}"#
    );
    // Dates.
    let date = |ms: i64| {
        let mut out = Vec::new();
        write_json_date(&mut out, ms as f64);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(date(0), "\"1970-01-01T00:00:00.000Z\"");
    assert_eq!(date(951_782_400_123), "\"2000-02-29T00:00:00.123Z\"");
    assert_eq!(date(-1), "\"1969-12-31T23:59:59.999Z\"");
    assert_eq!(date(253_402_300_800_000), "\"+010000-01-01T00:00:00.000Z\"");
    assert_eq!(date(8_640_000_000_000_001), "null");
}

#[test]
fn malformed_messages_are_errors() {
    for bad in [
        &b""[..],
        b"{",
        b"{}",
        b"\x93\xa1u",
        b"\x92\xa1u\x80",
        b"\xc1",
        b"{\"type\":99}",
        b"\x93\xa1u\x80\x80\x00",
    ] {
        assert!(Broadcast::decode(bad).is_err(), "{bad:?}");
        assert!(Request::decode(bad).is_err(), "{bad:?}");
        assert!(ClusterMessage::decode(bad).is_err(), "{bad:?}");
    }
    assert!(
        Response::decode(b"{\"sockets\":[]}").is_err(),
        "no request id"
    );
    assert!(
        Request::decode(br#"{"type":6,"data":{"a":1}}"#).is_err(),
        "data is not an array"
    );
    // Trailing bytes after the value.
    let mut ok = ByteBuf::new();
    write_msgpack(
        &mut ok,
        &Value::Array(vec![
            Value::from("u"),
            Value::Map(vec![]),
            Value::Map(vec![]),
        ]),
    );
    let mut trailing = ok.into_vec();
    trailing.push(0);
    assert!(read_msgpack(&trailing).unwrap_err().0.contains("trailing"));
    // Nesting past MAX_DEPTH.
    let deep = [vec![0x91u8; MAX_DEPTH + 1], vec![0xc0]].concat();
    assert!(read_msgpack(&deep).is_err());
}

// ---- property tests ----------------------------------------------------------------------------------------------

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,40}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(4, 64, 20, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
            proptest::collection::vec(("[a-z0-9_]{0,8}".prop_map(Value::from), inner), 0..18)
                .prop_map(Value::Map),
        ]
    })
}

fn arb_rooms() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-zA-Z0-9_#é-]{0,24}", 0..4)
}

fn arb_flags() -> impl Strategy<Value = Option<Flags>> {
    proptest::option::of(
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("volatile"),
                    Just("compress"),
                    Just("timeout"),
                    Just("local"),
                    Just("expectSingleResponse")
                ],
                prop_oneof![
                    any::<bool>().prop_map(Scalar::Bool),
                    any::<u32>().prop_map(|n| Scalar::UInt(n.into()))
                ],
            ),
            0..3,
        )
        .prop_map(|fs| {
            let mut flags = Flags::default();
            for (k, v) in fs {
                flags.set(k, v);
            }
            flags
        }),
    )
}

fn arb_opts() -> impl Strategy<Value = BroadcastOpts> {
    (arb_rooms(), arb_rooms(), arb_flags(), any::<bool>()).prop_map(
        |(rooms, except, flags, emitter)| {
            let layout = if emitter && flags.is_some() {
                OptsLayout::Emitter
            } else {
                OptsLayout::Adapter
            };
            BroadcastOpts {
                rooms,
                except,
                flags,
                layout,
            }
        },
    )
}

fn arb_event() -> impl Strategy<Value = Value> {
    ("[a-z]{1,10}", proptest::collection::vec(arb_value(), 0..5)).prop_map(|(name, args)| {
        let mut items = vec![Value::from(name)];
        items.extend(args);
        Value::Array(items)
    })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (arb_event(), proptest::option::of("/[a-z]{0,6}")).prop_map(|(data, nsp)| Packet {
        packet_type: EVENT,
        data: Payload::Msgpack(data),
        nsp,
        id: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn broadcast_round_trips(uid in "[A-Za-z0-9_-]{6}", packet in arb_packet(), opts in arb_opts()) {
        let b = Broadcast { uid, packet, opts };
        let bytes = b.encode();
        let back = Broadcast::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back, b.clone());
        // The fan-out form goes back to the same tree, binary included.
        let local = b.local().unwrap();
        let again = Payload::from_socketio(&local.data_json, &local.attachments).unwrap().to_value().unwrap();
        let (text2, atts2) = Payload::Msgpack(again).to_socketio().unwrap();
        let parse = |t: &str| as_js(serde_json::from_str::<Json>(t).unwrap());
        prop_assert_eq!(parse(&text2), parse(&local.data_json));
        prop_assert_eq!(atts2, local.attachments);
    }

    #[test]
    fn msgpack_values_round_trip(v in arb_value()) {
        let mut out = ByteBuf::new();
        write_msgpack(&mut out, &v);
        let back = read_msgpack(out.as_slice()).unwrap();
        prop_assert_eq!(&back, &v);
        let json = value_to_json(&v, Some(&mut Vec::new())).unwrap();
        prop_assert!(serde_json::from_str::<Json>(&json).is_ok(), "{}", json);
    }

    #[test]
    fn requests_round_trip(
        uid in proptest::option::of("[A-Za-z0-9]{6}"),
        rid in proptest::option::of("[A-Za-z0-9_-]{6}"),
        opts in arb_opts(),
        rooms in arb_rooms(),
        close in any::<bool>(),
        packet in arb_packet(),
        which in 0u8..6,
    ) {
        let mut plain = opts.clone();
        plain.flags = None;
        plain.layout = OptsLayout::Adapter;
        let body = match which {
            0 => RequestBody::Sockets { rooms },
            1 => RequestBody::RemoteJoin { opts: plain, rooms },
            2 => RequestBody::RemoteDisconnect { opts: plain, close },
            3 => RequestBody::RemoteFetch { opts: plain },
            4 => RequestBody::ServerSideEmit { data: Payload::json(r#"["x",1,{"a":[null]}]"#).unwrap() },
            _ => RequestBody::Broadcast { packet, opts },
        };
        let req = Request::new(uid.as_deref(), rid.as_deref(), body);
        let bytes = req.encode();
        let back = Request::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back, req);
    }

    #[test]
    fn cluster_messages_round_trip(uid in "[0-9a-f]{16}", packet in arb_packet(), opts in arb_opts(), rid in "[0-9a-f]{16}", n in any::<u32>(), which in 0u8..5) {
        let body = match which {
            0 => ClusterBody::Broadcast { packet, request_id: Some(rid), opts },
            1 => ClusterBody::SocketsLeave { opts, rooms: vec!["r".into()] },
            2 => ClusterBody::BroadcastAck { request_id: rid, packet: Some(packet.data) },
            3 => ClusterBody::BroadcastClientCount { request_id: rid, client_count: n.into() },
            _ => ClusterBody::Heartbeat,
        };
        let msg = ClusterMessage::new(&uid, "/", body);
        let bytes = msg.encode();
        let back = ClusterMessage::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode(), bytes);
        // A JSON message's payloads come back as JSON text: compare through the tree.
        prop_assert_eq!(back.body.kind(), msg.body.kind());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Broadcast::decode(&bytes).map(|b| b.local());
        let _ = Request::decode(&bytes).map(|r| r.encode());
        let _ = Response::decode(&bytes).map(|r| r.encode());
        let _ = ClusterMessage::decode(&bytes).map(|m| (m.encode(), m.local_broadcast()));
    }

    #[test]
    fn mutated_vectors_never_panic(index in 0usize..64, cut in 0usize..1000, byte in any::<u8>(), at in 0usize..1000) {
        let v = vectors();
        let all = messages(&v);
        let (_, bytes) = &all[index % all.len()];
        let mut bytes = bytes.clone();
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
        }
        let _ = Broadcast::decode(&bytes).map(|b| b.local());
        let _ = Request::decode(&bytes).map(|r| (r.encode(), r.local_broadcast("/")));
        let _ = Response::decode(&bytes).map(|r| r.encode());
        let _ = ClusterMessage::decode(&bytes).map(|m| (m.encode(), m.local_broadcast()));
    }
}
