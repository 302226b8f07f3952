//! Socket.IO packets as socket.io-msgpack-parser writes them (one binary message each): whatever decodes must
//! encode, from the parts the layer hands on (JSON with placeholders, attachments, the id), to bytes that decode
//! to the same parts; an EVENT's arguments count what they hold.
#![no_main]

use anysio::socketio::msgpack::{decode, encode, Decoded, OutId};
use anysio::socketio::packet::{js_number, PacketType};
use libfuzzer_sys::fuzz_target;

/// The data the parts were taken from, as the application would give it: an EVENT's name put back in front.
fn data_of(d: &Decoded) -> Option<String> {
    match (&d.event, &d.packet.data) {
        (Some(e), _) => Some(match &e.name {
            None => e.args.clone(),
            Some(name) => {
                let name = serde_json::to_string(name).expect("a str is JSON");
                match e.argc {
                    0 => format!("[{name}]"),
                    _ => format!("[{name},{}", &e.args[1..]),
                }
            }
        }),
        (None, data) => data.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = decode(data) else {
        return;
    };
    if let Some(e) = &first.event {
        let items: Vec<serde_json::Value> = match serde_json::from_str(&e.args) {
            Ok(items) => items,
            // NaN and the infinities are written for Python's readers, which take them; serde_json does not.
            Err(_) => return,
        };
        assert_eq!(items.len(), e.argc);
    }
    let js = first.js_id.map(js_number);
    let id = match (first.packet.id, &js) {
        (Some(id), _) => Some(OutId::Number(id)),
        (None, Some(js)) => Some(OutId::Js(js)),
        (None, None) => None,
    };
    let text = data_of(&first);
    let Ok(bytes) = encode(
        first.packet.kind,
        &first.packet.nsp,
        id,
        text.as_deref(),
        &first.attachments,
    ) else {
        // Only JSON serde_json cannot read (NaN, Infinity) stops a re-encoding.
        assert!(text.is_some_and(|t| t.contains("NaN") || t.contains("Infinity")));
        return;
    };
    let second = decode(&bytes).expect("what was encoded decodes");
    assert_eq!(second.packet.kind, first.packet.kind);
    assert_eq!(second.packet.nsp, first.packet.nsp);
    assert_eq!(second.packet.id, first.packet.id);
    assert_eq!(second.js_id.map(js_number), js);
    assert_eq!(second.attachments, first.attachments);
    assert_eq!(data_of(&second), text);
    if first.packet.kind == PacketType::Event {
        assert_eq!(second.event, first.event);
    }
});
