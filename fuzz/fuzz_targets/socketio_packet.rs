//! Socket.IO packets, strict and as Node's server reads them: whatever decodes must encode to what decodes the
//! same; an EVENT's data taken apart must hold its arguments; binary reassembly takes any attachments.
#![no_main]

use anysio::socketio::packet::{
    decode, decode_lenient, encode, split_event, BinaryReassembly, Packet, PacketType,
};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fn round_trip(packet: &Packet, decoder: impl Fn(&str) -> Option<Packet>) {
    let mut text = String::new();
    encode(packet, &mut text);
    assert_eq!(decoder(&text).as_ref(), Some(packet), "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(packet) = decode(text) {
        round_trip(&packet, |t| decode(t).ok());
        if packet.kind.is_binary() {
            let mut reassembly = BinaryReassembly::new(packet.clone());
            let mut done = None;
            for i in 0..packet.attachments {
                assert!(done.is_none(), "complete before its last attachment");
                done = reassembly.push(vec![i as u8]);
            }
            let (whole, attachments) = done.expect("the last attachment completes the packet");
            assert_eq!(
                (whole, attachments.len()),
                (packet.clone(), packet.attachments)
            );
            assert_eq!(reassembly.remaining(), 0);
        }
    }
    if let Ok((packet, big_id)) = decode_lenient(text) {
        // An id over MAX_ID is not written back (Node echoes it as a JavaScript number, outside the packet).
        if big_id.is_none() {
            round_trip(&packet, |t| decode_lenient(t).ok().map(|(p, _)| p));
        }
        if let (PacketType::Event, Some(data)) = (packet.kind, &packet.data) {
            let args = split_event(data).expect("a decoded EVENT's data is JSON");
            let args = args.expect("a decoded EVENT is an event");
            let items: Vec<&RawValue> =
                serde_json::from_str(&args.args).expect("args are an array");
            assert_eq!(items.len(), args.argc);
        }
    }
});
