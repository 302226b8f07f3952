//! The msgpack parser against bytes written by the real `socket.io-msgpack-parser` 3.0.2 (notepack.io 2.2):
//! tests/vectors/msgpack_packets.json, made by tests/node/capture_msgpack_vectors.mjs.
use super::*;
use crate::notepack::from_hex;
use crate::socketio::packet;
use proptest::prelude::*;
use serde_json::Value as Json;

const VECTORS: &str = include_str!("../../tests/vectors/msgpack_packets.json");

fn vectors() -> Json {
    serde_json::from_str(VECTORS).expect("vector file is JSON")
}

fn client(note: &str) -> Vec<u8> {
    let v = vectors();
    let case = v["client"].as_array().unwrap().iter();
    let found = case.clone().find(|c| c["note"] == note);
    from_hex(
        found.unwrap_or_else(|| panic!("{note}"))["hex"]
            .as_str()
            .unwrap(),
    )
}

fn decoded(note: &str) -> Decoded {
    decode(&client(note)).unwrap_or_else(|e| panic!("{note}: {e}"))
}

fn args(d: &Decoded) -> (Option<&str>, &str, usize) {
    let e = d.event.as_ref().expect("an event");
    (e.name.as_deref(), e.args.as_str(), e.argc)
}

#[test]
fn the_official_clients_packets_decode() {
    let d = decoded("CONNECT without auth");
    assert_eq!(
        (d.packet.kind, d.packet.nsp.as_str()),
        (PacketType::Connect, "/")
    );
    assert_eq!(d.packet.data, None, "undefined data is no data");

    let d = decoded("CONNECT with auth");
    assert_eq!(d.packet.nsp, "/admin");
    assert_eq!(d.packet.data.as_deref(), Some(r#"{"token":"abc","n":1.5}"#));

    let d = decoded("EVENT");
    assert_eq!(args(&d), (Some("chat"), r#"[{"room":"a","text":"hi"}]"#, 1));
    assert_eq!((d.packet.id, d.js_id), (None, None));

    let d = decoded("EVENT with an ack id");
    assert_eq!(args(&d), (Some("echo"), r#"[1,"two",null,true]"#, 4));
    assert_eq!(d.packet.id, Some(7));

    let d = decoded("EVENT with binary, nested");
    assert_eq!(d.packet.nsp, "/x");
    let placeholders = r#"[{"_placeholder":true,"num":0},{"f":[{"_placeholder":true,"num":1}]}]"#;
    assert_eq!(args(&d), (Some("up"), placeholders, 2));
    assert_eq!(d.attachments, vec![b"ab".to_vec(), b"c".to_vec()]);

    // JavaScript's 3.0 is the integer 3 on the wire; notepack writes -1e300 as a broken int64 (0), which is
    // what Node itself would read. NaN and Infinity reach Python as floats.
    let d = decoded("EVENT with floats");
    let floats = r#"[3,0.5,0,NaN,Infinity,1152921504606846976]"#;
    assert_eq!(args(&d), (Some("f"), floats, 6));

    let d = decoded("EVENT with a numeric name");
    assert_eq!(args(&d), (None, r#"[42,"x"]"#, 2));

    let d = decoded("ACK");
    assert_eq!((d.packet.kind, d.packet.id), (PacketType::Ack, Some(3)));
    let ack = r#"["ok",{"_placeholder":true,"num":0}]"#;
    assert_eq!(d.packet.data.as_deref(), Some(ack));
    assert_eq!(d.attachments, vec![b"z".to_vec()]);

    let d = decoded("DISCONNECT");
    assert_eq!(
        (d.packet.kind, d.packet.nsp.as_str()),
        (PacketType::Disconnect, "/admin")
    );
}

#[test]
fn packets_encode_as_nodes_server_encodes_them() {
    let v = vectors();
    for case in v["server"].as_array().unwrap() {
        let note = case["note"].as_str().unwrap();
        let kind = match case["type"].as_u64().unwrap() {
            0 => PacketType::Connect,
            1 => PacketType::Disconnect,
            2 => PacketType::Event,
            3 => PacketType::Ack,
            _ => PacketType::ConnectError,
        };
        let atts: Vec<Vec<u8>> = (case["attachments"].as_array().unwrap().iter())
            .map(|a| from_hex(a.as_str().unwrap()))
            .collect();
        let id = case["id"].as_u64().map(OutId::Number);
        let nsp = case["nsp"].as_str().unwrap();
        let bytes = encode(kind, nsp, id, case["data"].as_str(), &atts).unwrap();
        assert_eq!(bytes, from_hex(case["hex"].as_str().unwrap()), "{note}");
    }
}

/// A packet whose id is `id`, decoded; then the ACK the server writes for it, read back: (the decoded id, the
/// JavaScript number kept, the ACK's id).
fn ack_for(id: rmpv::Value) -> (Option<u64>, Option<f64>, rmpv::Value) {
    let packet = rmpv::Value::Map(vec![
        ("type".into(), 2.into()),
        ("data".into(), rmpv::Value::Array(vec!["a".into()])),
        ("id".into(), id),
        ("nsp".into(), "/".into()),
    ]);
    let mut bytes = ByteBuf::new();
    crate::notepack::write_msgpack(&mut bytes, &packet);
    let d = decode(bytes.as_slice()).unwrap();
    let echo = d.js_id.map(packet::js_number);
    let id = match (d.packet.id, &echo) {
        (Some(n), _) => OutId::Number(n),
        (None, js) => OutId::Js(js.as_deref().unwrap()),
    };
    let out = encode(PacketType::Ack, "/", Some(id), Some("[]"), &[]).unwrap();
    let back = crate::notepack::read_msgpack(&out).unwrap();
    (d.packet.id, d.js_id, back["id"].clone())
}

#[test]
fn an_id_javascript_cannot_hold_exactly_is_echoed_as_the_number_it_read() {
    let big = ack_for(rmpv::Value::from(u64::MAX));
    assert_eq!(
        big,
        (
            None,
            Some(u64::MAX as f64),
            rmpv::Value::F64(u64::MAX as f64)
        )
    );
    // A negative id is an integer to Node's checkPacket: acked with it.
    assert_eq!(
        ack_for(rmpv::Value::from(-4)),
        (None, Some(-4.0), rmpv::Value::from(-4))
    );
    assert_eq!(
        ack_for(rmpv::Value::from(7)),
        (Some(7), None, rmpv::Value::from(7))
    );
    assert_eq!(
        ack_for(rmpv::Value::F64(9.0)),
        (Some(9), None, rmpv::Value::from(9))
    );
}

/// A packet map with the members given (None: absent).
fn pkt(
    ty: rmpv::Value,
    nsp: Option<&str>,
    data: Option<rmpv::Value>,
    id: Option<rmpv::Value>,
) -> Vec<u8> {
    let mut entries = vec![("type".into(), ty)];
    entries.extend(nsp.map(|n| ("nsp".into(), n.into())));
    entries.extend(data.map(|d| ("data".into(), d)));
    entries.extend(id.map(|i| ("id".into(), i)));
    let mut out = ByteBuf::new();
    crate::notepack::write_msgpack(&mut out, &rmpv::Value::Map(entries));
    out.into_vec()
}

/// Packets socket.io-msgpack-parser refuses (and the event names socket.io-parser refuses), with a word of
/// the reason.
fn malformed_cases() -> Vec<(Vec<u8>, &'static str)> {
    use rmpv::Value as V;
    let arr = |items: Vec<V>| Some(V::Array(items));
    let event = |items: Vec<V>| pkt(2.into(), Some("/"), arr(items), None);
    let mut numeric_nsp = ByteBuf::new();
    let map = V::Map(vec![("type".into(), 0.into()), ("nsp".into(), 1.into())]);
    crate::notepack::write_msgpack(&mut numeric_nsp, &map);
    let numeric_nsp = numeric_nsp.into_vec();
    vec![
        (vec![], "msgpack"),
        (vec![0xc1], ""),
        (b"2[\"a\"]".to_vec(), "msgpack"),
        (vec![0x93, 1, 2, 3], "invalid packet type"),
        (pkt(5.into(), Some("/"), None, None), "invalid packet type"),
        (
            pkt(2.5.into(), Some("/"), None, None),
            "invalid packet type",
        ),
        (pkt(0.into(), None, None, None), "invalid namespace"),
        (numeric_nsp, "invalid namespace"),
        (pkt(2.into(), Some("/"), None, None), "invalid payload"),
        (
            pkt(1.into(), Some("/"), Some(1.into()), None),
            "invalid payload",
        ),
        (
            pkt(0.into(), Some("/"), arr(vec![]), None),
            "invalid payload",
        ),
        (
            pkt(3.into(), Some("/"), Some("x".into()), None),
            "invalid payload",
        ),
        (event(vec![]), "invalid payload"),
        (event(vec!["disconnect".into()]), "reserved"),
        (event(vec![V::Nil]), "no event name"),
        (
            pkt(2.into(), Some("/"), arr(vec!["a".into()]), Some(1.5.into())),
            "invalid packet id",
        ),
        (
            pkt(2.into(), Some("/"), arr(vec!["a".into()]), Some("1".into())),
            "invalid packet id",
        ),
    ]
}

#[test]
fn malformed_packets_are_refused_as_the_msgpack_parser_refuses_them() {
    for (bytes, why) in malformed_cases() {
        let err = decode(&bytes).expect_err(why);
        assert!(
            err.0.contains(why),
            "{err} for {bytes:02x?}: expected {why}"
        );
    }
    // Trailing bytes, and nesting past the codec's depth.
    let mut ok = client("EVENT");
    ok.push(0xc0);
    assert!(decode(&ok).is_err());
    let deep = [vec![0x91; 200], vec![0xc0]].concat();
    assert!(decode(&deep).is_err());
}

#[test]
fn binary_types_and_attachments_are_one_message() {
    let data = r#"["a",{"_placeholder":true,"num":0}]"#;
    let out = encode(
        PacketType::BinaryEvent,
        "/",
        None,
        Some(data),
        &[vec![1, 2]],
    )
    .unwrap();
    let back = crate::notepack::read_msgpack(&out).unwrap();
    assert_eq!(back["type"], rmpv::Value::from(2));
    assert_eq!(back["data"][1], rmpv::Value::Binary(vec![1, 2]));
    // A placeholder-shaped object without attachments is the application's object.
    let data = r#"[{"_placeholder":true,"num":0}]"#;
    let out = encode(PacketType::Event, "/", None, Some(data), &[]).unwrap();
    let back = crate::notepack::read_msgpack(&out).unwrap();
    assert_eq!(back["data"][0]["num"], rmpv::Value::from(0));
    // One naming no attachment is an error the application gets.
    assert!(encode(PacketType::Ack, "/", None, Some(data), &[vec![1]]).is_ok());
    let bad = r#"[{"_placeholder":true,"num":3}]"#;
    assert!(encode(PacketType::Ack, "/", None, Some(bad), &[vec![1]]).is_err());
}

fn arg_value() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        // Non-finite floats reach Python as such, but Python's emits write them null (JSON.stringify's rule).
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(rmpv::Value::F64),
        ".{0,6}".prop_map(rmpv::Value::from),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(rmpv::Value::Binary),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(rmpv::Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| {
                rmpv::Value::Map(m.into_iter().map(|(k, v)| (k.into(), v)).collect())
            }),
        ]
    })
}

proptest! {
    /// What a client sends comes back unchanged when the server echoes it: the JSON the layer hands to Python,
    /// encoded again, is the client's msgpack (integers exact up to 2^53 as JavaScript reads them).
    #[test]
    fn an_echoed_event_keeps_its_values(args in prop::collection::vec(arg_value(), 0..4), id in 0..=MAX_ID) {
        let mut items = vec![rmpv::Value::from("echo")];
        items.extend(args);
        let packet = rmpv::Value::Map(vec![
            ("type".into(), 2.into()),
            ("data".into(), rmpv::Value::Array(items.clone())),
            ("id".into(), id.into()),
            ("nsp".into(), "/".into()),
        ]);
        let mut bytes = ByteBuf::new();
        crate::notepack::write_msgpack(&mut bytes, &packet);
        let d = decode(bytes.as_slice()).unwrap();
        let e = d.event.unwrap();
        prop_assert_eq!(e.argc, items.len() - 1);
        let out = encode(PacketType::Ack, "/", Some(OutId::Number(id)), Some(&e.args), &d.attachments)
            .unwrap();
        let back = crate::notepack::read_msgpack(&out).unwrap();
        let sent = rmpv::Value::Array(items[1..].to_vec());
        prop_assert_eq!(js_view(&back["data"]), js_view(&sent));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }
}

/// A value as a JavaScript peer reads it: every number a double (-0 written 0, as notepack writes it).
fn js_view(v: &rmpv::Value) -> String {
    match v {
        rmpv::Value::Integer(_) | rmpv::Value::F32(_) | rmpv::Value::F64(_) => {
            let f = v.as_f64().unwrap_or(f64::NAN);
            format!("{:?}", if f == 0.0 { 0.0 } else { f })
        }
        rmpv::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(js_view).collect();
            format!("[{}]", inner.join(","))
        }
        rmpv::Value::Map(entries) => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", js_view(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        other => format!("{other:?}"),
    }
}
