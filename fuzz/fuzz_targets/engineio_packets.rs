//! Engine.IO packets and long-polling payloads: whatever decodes must encode to what decodes the same.
#![no_main]

use anysio::engineio::packet::{decode_payload, push_payload_segment, Packet};
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
});
