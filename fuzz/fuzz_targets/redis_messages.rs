//! The Redis adapter's messages (rust/adapter/redis): every kind decoded from the same bytes; what decodes must
//! encode to bytes that decode and encode to themselves, in its own encoding and in msgpack (what Python is
//! handed), and must give its local delivery or a clean error. Channel names are classified too.
#![no_main]

use anysio::adapter::redis::{
    read_msgpack, value_to_json, Broadcast, Channels, ClusterMessage, DecodeError, Encoding,
    Request, Response, DEFAULT_KEY,
};
use libfuzzer_sys::fuzz_target;

/// `encoded` decodes, and encodes to itself.
fn stable(encoded: &[u8], again: impl Fn(&[u8]) -> Result<Vec<u8>, DecodeError>) {
    assert_eq!(again(encoded).as_deref(), Ok(encoded));
}

/// Python reads every message as msgpack, then as Socket.IO's JSON and attachments.
fn as_python_reads_it(packed: &[u8]) {
    let value = read_msgpack(packed).expect("our msgpack reads back");
    let mut attachments = Vec::new();
    let _ = value_to_json(&value, Some(&mut attachments));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Broadcast::decode(data) {
        let _ = b.local();
        let packed = b.encode();
        stable(&packed, |bytes| {
            Broadcast::decode(bytes).map(|b| b.encode())
        });
        as_python_reads_it(&packed);
    }
    if let Ok(mut r) = Request::decode(data) {
        let _ = r.local_broadcast("/");
        stable(&r.encode(), |bytes| {
            Request::decode(bytes).map(|r| r.encode())
        });
        r.encoding = Encoding::Msgpack;
        as_python_reads_it(&r.encode());
    }
    if let Ok(mut r) = Response::decode(data) {
        stable(&r.encode(), |bytes| {
            Response::decode(bytes).map(|r| r.encode())
        });
        r.encoding = Encoding::Msgpack;
        as_python_reads_it(&r.encode());
    }
    if let Ok(mut m) = ClusterMessage::decode(data) {
        let _ = m.local_broadcast();
        stable(&m.encode(), |bytes| {
            ClusterMessage::decode(bytes).map(|m| m.encode())
        });
        m.encoding = Encoding::Msgpack;
        as_python_reads_it(&m.encode());
    }
    let _ = Channels::new(DEFAULT_KEY, "/", "uid").classify(data);
});
