//! Engine.IO packets and long-polling payloads, v4 and v3: whatever decodes must encode to what decodes the same.
#![no_main]

use anysio::engineio::packet::{decode_payload, push_payload_segment, Data, Packet};
use anysio::engineio::packet_v3;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packets) = decode_payload(data) {
        let mut body = Vec::new();
        for packet in &packets {
            push_payload_segment(packet, &mut body);
        }
        assert_eq!(decode_payload(&body).as_ref(), Ok(&packets), "payload");
    }
    // A WebSocket text frame holds one packet, separators and all.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(packet) = Packet::decode_text(text) {
            let mut frame = Vec::new();
            packet.encode_text(&mut frame);
            let frame = String::from_utf8(frame).expect("an encoded packet is UTF-8");
            assert_eq!(Packet::decode_text(&frame), Ok(packet), "frame");
        }
    }
    v3(data);
});

/// The same bytes as an Engine.IO v3 client's: a text payload, a binary payload, a binary WebSocket frame. Each
/// payload decoded is encoded both ways a GET may answer (binary supported or not).
fn v3(data: &[u8]) {
    let text = packet_v3::decode_payload(data);
    let binary = packet_v3::decode_binary_payload(data);
    for packets in [text, binary].into_iter().flatten() {
        for supports_binary in [true, false] {
            let mut body = Vec::new();
            let again = match packet_v3::encode_payload(&packets, supports_binary, &mut body) {
                true => packet_v3::decode_binary_payload(&body),
                false => packet_v3::decode_payload(&body),
            };
            assert_eq!(again.as_ref(), Ok(&packets), "v3 payload");
        }
    }
    if let Ok(Packet::Message(Data::Binary(b))) = packet_v3::decode_binary(data) {
        let again = match packet_v3::ws_binary(&b, true) {
            Data::Binary(frame) => packet_v3::decode_binary(&frame),
            Data::Text(_) => panic!("a binary frame for a client that supports binary"),
        };
        assert_eq!(again, Ok(Packet::Message(Data::Binary(b))), "v3 frame");
    }
}
