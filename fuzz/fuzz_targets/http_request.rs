//! HTTP/1.1 requests: the parser fed the bytes whole and split must read the same requests (or fail the same way),
//! then the same bytes go through the connection layer and the engine, whose every answer must be an HTTP
//! response. The first byte chooses the limits and where the bytes are split.
#![no_main]

use std::time::{Duration, Instant};

use anysio::core::{Core, EngineOnly};
use anysio::driver::wire::Wire;
use anysio::engineio::{Config, ConnId, Engine};
use anysio::http::feed::run;
use anysio::http::{RequestParser, DEFAULT_MAX_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, wire)) = data.split_first() else {
        return;
    };
    // Small limits reach 431 and 413 with short inputs.
    let (head, body) = if knobs & 1 == 0 {
        (DEFAULT_MAX_HEADER_BYTES, 1_000_000)
    } else {
        (64, 16)
    };
    let parser = || RequestParser::new(head, body);
    let whole = run(&mut parser(), [wire]);
    let cut = wire.len() * usize::from(knobs >> 1) / 127;
    let (a, b) = wire.split_at(cut.min(wire.len()));
    assert_eq!(run(&mut parser(), [a, b]), whole, "split at {cut}");
    if wire.len() <= 64 {
        assert_eq!(run(&mut parser(), wire.chunks(1)), whole, "byte at a time");
    }
    through_the_engine(wire, body);
});

/// The bytes on one connection of an Engine.IO server, then the clock past every HTTP deadline.
fn through_the_engine(wire: &[u8], max_payload: usize) {
    let config = Config {
        max_payload,
        ..Config::default()
    };
    let mut core = Core::new(Engine::new(config), EngineOnly::default());
    let mut wire_layer = Wire::new();
    let start = Instant::now();
    let conn = ConnId(1);
    wire_layer.connect(&mut core.engine, conn, None, Some(start));
    wire_layer.input(&mut core.engine, conn, wire, start);
    let mut written = Vec::new();
    for now in [start, start + Duration::from_secs(3600)] {
        wire_layer.handle_timeout(&mut core.engine, now);
        core.settle(now);
        while core.poll_event().is_some() {}
        let mut dirty = Vec::new();
        wire_layer.take_dirty(&mut core.engine, now, &mut dirty);
        for c in dirty {
            if let Some(out) = wire_layer.output(&mut core.engine, c) {
                written.extend_from_slice(out);
                let n = out.len();
                wire_layer.written(&mut core.engine, c, n);
            }
        }
    }
    assert!(
        written.is_empty() || written.starts_with(b"HTTP/1.1 "),
        "not an HTTP response: {:?}",
        String::from_utf8_lossy(&written)
    );
}
