//! The reflector: a minimal native Socket.IO server for the benchmark contract (WebSocket only, one thread),
//! used to calibrate the load generator. It does the least work a server can do per event, so it runs faster than
//! any real server; what the load generator reaches against it, on one core, is the load generator's capacity.
//!
//! It answers the upgrade, the Engine.IO OPEN and the Socket.IO CONNECT, acknowledges `echo` with its payload and
//! sends `bcast` to every connection (all are in room `bench`). Heartbeats are off: runs are short.
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anysio::websocket::{accept_key, encode_frame, Decoder, Message, Opcode};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::tcp;
use crate::Args;

const LISTENER: Token = Token(usize::MAX);
const OPEN: &str = r#"0{"sid":"reflector","upgrades":[],"pingInterval":3600000,"pingTimeout":3600000,"maxPayload":1000000}"#;

struct Conn {
    stream: TcpStream,
    head: Option<Vec<u8>>,
    decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
}

/// The reply to one Engine.IO text packet: to this connection, or to all of them.
enum Reply {
    One(String),
    All(String),
}

fn on_packet(text: &str, sid: usize) -> Option<Reply> {
    let sio = text.strip_prefix('4')?;
    if sio.starts_with('0') {
        return Some(Reply::One(format!("40{{\"sid\":\"s{sid}\"}}")));
    }
    let event = sio.strip_prefix('2')?;
    let digits = event.bytes().take_while(u8::is_ascii_digit).count();
    let (id, args) = (event.get(..digits)?, event.get(digits..)?);
    if let Some(payload) = args.strip_prefix("[\"echo\",") {
        return (!id.is_empty()).then(|| Reply::One(format!("43{id}[{payload}")));
    }
    args.starts_with("[\"bcast\",")
        .then(|| Reply::All(format!("42{args}")))
}

fn upgrade(head: &[u8]) -> Option<String> {
    let key = tcp::header(head, "sec-websocket-key")?;
    Some(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    ))
}

/// Serve until `--timeout` passes (the harness stops it sooner).
pub fn serve(a: &Args, addr: SocketAddr) -> io::Result<Value> {
    let mut poll = Poll::new()?;
    let mut listener = tcp::listen(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("reflector listening on {}", listener.local_addr()?);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    let mut frame = Vec::new();
    let deadline = Instant::now() + a.timeout;
    let mut served = 0u64;
    while Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let mut gone = Vec::new();
        let mut to_all: Vec<String> = Vec::new();
        for e in events.iter() {
            if e.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let id = next;
                    next += 1;
                    poll.registry()
                        .register(&mut stream, Token(id), Interest::READABLE)?;
                    let conn = Conn {
                        stream,
                        head: Some(Vec::new()),
                        decoder: Decoder::new(1 << 20),
                        out: Vec::new(),
                        out_pos: 0,
                    };
                    conns.insert(id, conn);
                }
                continue;
            }
            let id = e.token().0;
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            let closing = e.is_read_closed() || e.is_error();
            let mut fresh = Vec::new();
            let open = tcp::drain(&mut c.stream, &mut buf, closing, |chunk| {
                match &mut c.head {
                    Some(head) => head.extend_from_slice(chunk),
                    None => c.decoder.feed(chunk),
                }
            });
            if let Some(head) = &c.head {
                if let Some(end) = tcp::head_end(head) {
                    let Some(response) = upgrade(head.get(..end).unwrap_or_default()) else {
                        gone.push(id);
                        continue;
                    };
                    c.out.extend_from_slice(response.as_bytes());
                    encode_frame(Opcode::Text, OPEN.as_bytes(), &mut c.out);
                    let rest = head.get(end..).unwrap_or_default().to_vec();
                    c.decoder.feed(&rest);
                    c.head = None;
                }
            }
            while let Ok(Some(message)) = c.decoder.next_message() {
                match message {
                    Message::Text(text) => match on_packet(&text, id) {
                        Some(Reply::One(r)) => fresh.push(r),
                        Some(Reply::All(r)) => to_all.push(r),
                        None => {}
                    },
                    Message::Close(..) => gone.push(id),
                    _ => {}
                }
            }
            for r in fresh {
                encode_frame(Opcode::Text, r.as_bytes(), &mut c.out);
                served += 1;
            }
            dirty.push(id);
            if !matches!(open, Ok(true)) {
                gone.push(id);
            }
        }
        for r in &to_all {
            frame.clear();
            encode_frame(Opcode::Text, r.as_bytes(), &mut frame);
            for (&id, c) in conns.iter_mut() {
                if c.head.is_none() {
                    c.out.extend_from_slice(&frame);
                    dirty.push(id);
                    served += 1;
                }
            }
        }
        for id in dirty.drain(..) {
            if let Some(c) = conns.get_mut(&id) {
                // A client that stops reading would make this buffer grow; the load generator always reads.
                if tcp::flush(&mut c.stream, &mut c.out, &mut c.out_pos).is_err() {
                    gone.push(id);
                }
            }
        }
        for id in gone {
            if let Some(mut c) = conns.remove(&id) {
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
    Ok(json!({"ok": true, "served": served}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Option<(bool, String)> {
        on_packet(text, 7).map(|r| match r {
            Reply::One(s) => (false, s),
            Reply::All(s) => (true, s),
        })
    }

    #[test]
    fn answers_the_contract() {
        assert_eq!(reply("40"), Some((false, r#"40{"sid":"s7"}"#.into())));
        assert_eq!(
            reply(r#"4212["echo","x"]"#),
            Some((false, r#"4312["x"]"#.into()))
        );
        assert_eq!(
            reply(r#"42["bcast",{"seq":1}]"#),
            Some((true, r#"42["bcast",{"seq":1}]"#.into()))
        );
        assert_eq!(reply(r#"42["echo","x"]"#), None);
        assert_eq!(reply("3"), None);
        assert_eq!(reply(""), None);
    }

    #[test]
    fn upgrade_needs_a_key() {
        let head = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let response = upgrade(head).unwrap_or_default();
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(upgrade(b"GET / HTTP/1.1\r\n\r\n").is_none());
    }
}
