//! What connection state recovery holds in Rust per disconnected socket (its pid, id, rooms, deadline and the
//! tables that find it), measured as resident memory over many, as `idle_memory` measures connections. Its own
//! test binary, so that no other test runs beside it. `cargo test --test recovery_memory -- --nocapture` prints
//! the figures the README quotes.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anysio::engineio::Data;
use anysio::ids::SocketKey;
use anysio::socketio::recovery::{offset_text, Recovery};
use anysio::socketio::rooms::Room;

fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: isize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const SOCKETS: u64 = 100_000;
const MISSED: u64 = 16;

#[test]
fn bytes_per_disconnected_socket() {
    let now = Instant::now();
    let nsp: Arc<str> = "/".into();
    let shared: Room = "news".into();
    let mut r = Recovery::new(Duration::from_secs(120));
    let before = rss();
    for k in 0..SOCKETS {
        let key = SocketKey(k + 1);
        r.open(key);
        r.written(key, k);
        // A socket id as the layer makes them (20 characters), in its own room and one shared room.
        let sid: Arc<str> = format!("{k:020}").into();
        let rooms = [Room::from(&*sid), shared.clone()];
        r.persist(key, &nsp, &sid, &rooms, now);
    }
    let per_socket = (rss() - before) / SOCKETS as isize;
    // Packets to the shared room: each kept once, and one pointer to it per disconnected socket.
    let before = rss();
    let packet = [Data::Text(r#"42["news",1,"AAAAAAAAAAA"]"#.into())];
    for offset in 0..MISSED {
        r.keep("/", &["news".into()], &[], &packet, SOCKETS + offset);
    }
    let per_missed = (rss() - before) / (SOCKETS * MISSED) as isize;
    println!("recovery: {per_socket} B per disconnected socket, {per_missed} B per missed packet per socket");
    assert_eq!(r.disconnected(), SOCKETS as usize);
    assert!(
        per_socket > 100 && per_socket < 600,
        "{per_socket} B per disconnected socket"
    );
    assert!(
        per_missed < 32,
        "{per_missed} B per missed packet per socket"
    );
    let pid = r.take("/", "unknown", &offset_text(0), now);
    assert!(pid.is_none());
    // All of it goes when the deadline passes.
    assert_eq!(
        r.expire(now + Duration::from_secs(120)).len(),
        SOCKETS as usize
    );
    assert_eq!(r.disconnected(), 0);
}
