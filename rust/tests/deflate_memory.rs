//! What permessage-deflate holds per WebSocket between messages (README, "Limits"), counted by a counting
//! allocator: the compressor and the decompressor that context takeover keeps, for the windows a client may
//! negotiate, and nothing without context takeover. Its own test binary, so that no other test allocates beside it.
//! `cargo test --release --test deflate_memory -- --nocapture` prints the figures.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use anysio::permessage_deflate::{DeflateConfig, Deflater, Params};
use anysio::websocket::{encode_compressed_masked, Decoder, Message, Opcode};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes a server's WebSocket holds after one compressed message in (its decompressor), then after one out too
/// (and its compressor), beyond the decoder it has anyway.
fn held(params: Params) -> (isize, isize) {
    let message = br#"42["chat",{"room":"lobby","text":"a message long enough to be compressed"}]"#
        .repeat(40);
    let config = DeflateConfig::default();
    // The client's compressor, made before counting.
    let bits = params.client_max_window_bits.unwrap_or(15);
    let mut client = Deflater::new(6, bits, params.client_no_context_takeover);
    let mut payload = Vec::new();
    client.compress(&message, &mut payload);
    let mut frame = Vec::new();
    encode_compressed_masked(Opcode::Text, &payload, [1, 2, 3, 4], &mut frame);

    let before = live();
    let mut decoder = Decoder::with_deflate(1_000_000, params.server_state(&config));
    decoder.feed(&frame);
    let Ok(Some(Message::Text(text))) = decoder.next_message() else {
        panic!("not inflated");
    };
    assert_eq!(text.as_bytes(), &message[..]);
    drop(text);
    let inflating = live() - before;
    let mut out = Vec::new();
    let deflate = decoder.deflate_mut().unwrap();
    assert!(deflate.deflater.compress(&message, &mut out));
    drop(out);
    let both = live() - before;
    drop(decoder);
    (inflating, both)
}

#[test]
fn what_a_connection_holds_between_messages() {
    let cases = [
        (
            "context takeover, 15-bit windows (the default)",
            Params::default(),
        ),
        (
            "context takeover, 10-bit windows",
            Params {
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(10),
                ..Params::default()
            },
        ),
        (
            "no context takeover either way",
            Params {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..Params::default()
            },
        ),
    ];
    let mut figures = Vec::new();
    for (name, params) in cases {
        let (inflating, both) = held(params);
        eprintln!("{name}: {both} bytes held per connection ({inflating} of them inflating)");
        figures.push(both);
    }
    // The bounds the README states: zlib-rs's compressor is most of it (its hash table does not shrink with the
    // window); without context takeover nothing is kept but the state's box.
    assert!(figures[0] <= 440 * 1024, "{figures:?}");
    assert!(figures[1] < figures[0], "{figures:?}");
    assert!(figures[2] <= 256, "{figures:?}");
}
