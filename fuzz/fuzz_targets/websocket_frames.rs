//! RFC 6455 frames, on both sides, with and without permessage-deflate (RSV1 frames inflated, within the size
//! limit): the decoders must read the same messages (or fail the same way) however the bytes are split, and what
//! they read, framed again, must read back the same. The first byte chooses the size limit and where the bytes are
//! split.
#![no_main]

use anysio::websocket::{decode_all, decode_all_deflate, encode_message, Message, ProtocolError};
use libfuzzer_sys::fuzz_target;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Whole and split, the decoder reads the same; framed again, what it read reads the same.
fn check(
    decode: impl Fn(&mut dyn Iterator<Item = &[u8]>) -> (Vec<Message>, Option<ProtocolError>),
    frames: &[u8],
    cut: usize,
    mask: Option<[u8; 4]>,
) {
    let whole = decode(&mut std::iter::once(frames));
    let (a, b) = frames.split_at(cut.min(frames.len()));
    assert_eq!(decode(&mut [a, b].into_iter()), whole, "split at {cut}");
    let mut again = Vec::new();
    for message in &whole.0 {
        encode_message(message, mask, &mut again);
    }
    assert_eq!(
        decode(&mut std::iter::once(&again[..])),
        (whole.0, None),
        "framed again"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, frames)) = data.split_first() else {
        return;
    };
    let max = if knobs & 1 == 0 { 1 << 16 } else { 64 };
    let cut = frames.len() * usize::from(knobs >> 1) / 127;
    check(|p| decode_all(true, max, p), frames, cut, Some(MASK));
    check(|p| decode_all(false, max, p), frames, cut, None);
    check(
        |p| decode_all_deflate(true, max, p),
        frames,
        cut,
        Some(MASK),
    );
    check(|p| decode_all_deflate(false, max, p), frames, cut, None);
});
