//! permessage-deflate (RFC 7692): the negotiation of a client's Sec-WebSocket-Extensions, and the inflation of what
//! a peer sends. The first byte chooses what the rest is: an offer (what the server accepts, written back as an
//! offer, is accepted the same), compressed data (inflated within the limit, never past it, the same twice), or
//! plain data (compressed, then inflated back to itself, with the window the byte picks).
#![no_main]

use anysio::permessage_deflate::{negotiate, DeflateConfig, Deflater, Inflater};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fn offer(header: &str) {
    let strict = DeflateConfig {
        server_no_context_takeover: Some(true),
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(9),
        ..DeflateConfig::default()
    };
    for config in [DeflateConfig::default(), strict] {
        if let Ok(Some(params)) = negotiate(header, &config) {
            let again = negotiate(&params.header(), &config);
            assert_eq!(again, Ok(Some(params)), "{header:?} -> {}", params.header());
        }
    }
}

fn inflate(data: &[u8], bits: u8) {
    let first = Inflater::new(bits, false).inflate(data, MAX);
    if let Ok(message) = &first {
        assert!(message.len() <= MAX);
    }
    assert_eq!(Inflater::new(bits, true).inflate(data, MAX), first);
}

fn round_trip(data: &[u8], bits: u8, level: u32) {
    let mut deflater = Deflater::new(level, bits, false);
    let mut inflater = Inflater::new(bits, false);
    for _ in 0..2 {
        let mut wire = Vec::new();
        assert!(deflater.compress(data, &mut wire));
        assert_eq!(inflater.inflate(&wire, data.len()).as_deref(), Ok(data));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let bits = 8 + (knob >> 2) % 8;
    match knob % 3 {
        0 => offer(&String::from_utf8_lossy(rest)),
        1 => inflate(rest, bits),
        _ => round_trip(rest, bits, u32::from(knob >> 5)),
    }
});
