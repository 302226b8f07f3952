//! Socket.IO clients over a direct WebSocket connection (`transport=websocket`), all on one mio poller.
//!
//! Each client walks the handshake (TCP connect, HTTP upgrade, Engine.IO OPEN, Socket.IO CONNECT to "/"),
//! answers the server's heartbeat, and hands every other Socket.IO packet to the scenario.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anysio::permessage_deflate::{Deflater, Inflater, PerMessageDeflate};
use anysio::websocket::{
    accept_key, encode_compressed_masked, encode_frame_masked, ClientDecoder, Message, Opcode,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::{msgpack, tcp};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Upgrading,
    Opening,
    Joining,
    Ready,
}

struct Client {
    stream: TcpStream,
    state: State,
    head: Vec<u8>,
    decoder: ClientDecoder,
    out: Vec<u8>,
    out_pos: usize,
    dirty: bool,
    /// Lost already reported this turn: ignore its other events until it is removed.
    dead: bool,
    opened_at: Instant,
    /// It speaks socket.io-msgpack-parser: Socket.IO packets are binary messages.
    msgpack: bool,
}

/// What a scenario hears about its clients.
pub trait Scenario {
    fn ready(&mut self, net: &mut Net, id: usize, now: Instant);
    /// A Socket.IO packet (the Engine.IO MESSAGE payload) from a ready client.
    fn packet(&mut self, net: &mut Net, id: usize, packet: &str, now: Instant);
    /// The client is gone (it failed its handshake, or the server closed it).
    fn lost(&mut self, _id: usize, _now: Instant) {}
}

/// What a client answers by itself: Engine.IO packets (pong, the CONNECT) and WebSocket pongs.
enum Reply {
    Eio(u8, &'static str),
    Pong(Vec<u8>),
}

enum Incoming {
    Ready,
    Packet(String),
    Lost(String),
}

pub struct Net {
    poll: Poll,
    events: Events,
    /// The servers' addresses (with their Host headers): clients are opened on each in turn.
    addrs: Vec<(SocketAddr, String)>,
    next_addr: usize,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    /// Ids freed this turn; reused only from the next one, so a late event cannot reach a new client.
    freed: Vec<usize>,
    /// Clients still in their handshake, oldest first, for the handshake deadline.
    handshaking: VecDeque<(usize, Instant)>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    incoming: Vec<(usize, Incoming)>,
    dirty: Vec<usize>,
    rng: u64,
    /// Offer permessage-deflate; a client whose server accepts compresses every message it sends.
    pub deflate: bool,
    pub ready: usize,
    pub opened: usize,
    /// Why clients were lost, with counts.
    pub failures: HashMap<String, u64>,
    /// Clients opened from now on speak socket.io-msgpack-parser (`--parser msgpack`).
    pub msgpack: bool,
}

impl Net {
    pub fn new(addr: SocketAddr) -> io::Result<Self> {
        Ok(Net {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            addrs: vec![(addr, addr.to_string())],
            next_addr: 0,
            clients: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            handshaking: VecDeque::new(),
            buf: vec![0; 256 * 1024],
            scratch: Vec::with_capacity(4096),
            incoming: Vec::new(),
            dirty: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            deflate: false,
            ready: 0,
            opened: 0,
            failures: HashMap::new(),
            msgpack: false,
        })
    }

    /// Open every other client on `addr` (another server of the same cluster).
    pub fn also(&mut self, addr: SocketAddr) {
        self.addrs.push((addr, addr.to_string()));
    }

    pub fn handshaking(&self) -> usize {
        self.opened - self.ready
    }

    pub fn total_failures(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Open one client (from `source` when given); its id is stable until it is lost.
    pub fn open(&mut self, source: Option<std::net::Ipv4Addr>, now: Instant) -> usize {
        let id = self.free.pop().unwrap_or(self.clients.len());
        match self.open_at(id, source, now) {
            Ok(()) => {
                self.opened += 1;
                self.handshaking.push_back((id, now));
            }
            Err(e) => {
                if id == self.clients.len() {
                    self.clients.push(None);
                }
                self.free.push(id);
                *self.failures.entry(format!("connect: {e}")).or_default() += 1;
            }
        }
        id
    }

    fn open_at(
        &mut self,
        id: usize,
        source: Option<std::net::Ipv4Addr>,
        now: Instant,
    ) -> io::Result<()> {
        let (addr, host_header) = self.addrs[self.next_addr % self.addrs.len()].clone();
        self.next_addr += 1;
        let mut stream = tcp::connect(addr, source)?;
        self.poll.registry().register(
            &mut stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let offer = if self.deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
            host_header
        );
        let client = Client {
            stream,
            state: State::Connecting,
            head: Vec::new(),
            decoder: ClientDecoder::new(MAX_MESSAGE),
            out: request.into_bytes(),
            out_pos: 0,
            dirty: false,
            dead: false,
            opened_at: now,
            msgpack: self.msgpack,
        };
        if id == self.clients.len() {
            self.clients.push(Some(client));
        } else if let Some(slot) = self.clients.get_mut(id) {
            *slot = Some(client);
        }
        Ok(())
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: masks only need to vary, not to be secret, in a load test.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    /// Queue a Socket.IO packet (sent as an Engine.IO MESSAGE) to a ready client; written after this turn.
    pub fn send(&mut self, id: usize, packet: &str) {
        match self.clients.get(id) {
            Some(Some(c)) if c.msgpack => match msgpack::encode(packet) {
                Some(bytes) => self.send_frame(id, Opcode::Binary, &bytes),
                None => self.report_lost(id, format!("cannot encode {packet:?}")),
            },
            _ => self.send_eio(id, b'4', packet),
        }
    }

    fn send_eio(&mut self, id: usize, kind: u8, data: &str) {
        let mask = self.next_mask();
        self.scratch.clear();
        self.scratch.push(kind);
        self.scratch.extend_from_slice(data.as_bytes());
        if let Some(Some(c)) = self.clients.get_mut(id) {
            match c.decoder.deflate_mut() {
                Some(d) => {
                    let mut compressed = Vec::new();
                    d.deflater.compress(&self.scratch, &mut compressed);
                    encode_compressed_masked(Opcode::Text, &compressed, mask, &mut c.out);
                }
                None => encode_frame_masked(Opcode::Text, &self.scratch, mask, &mut c.out),
            }
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// When the client was opened (its TCP connect started).
    pub fn opened_at(&self, id: usize) -> Option<Instant> {
        self.clients.get(id)?.as_ref().map(|c| c.opened_at)
    }

    /// Ids of the clients that are ready now.
    pub fn ready_ids(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&id| self.is_ready(id))
            .collect()
    }

    fn send_pong(&mut self, id: usize, payload: &[u8]) {
        self.send_frame(id, Opcode::Pong, payload);
    }

    fn send_frame(&mut self, id: usize, opcode: Opcode, payload: &[u8]) {
        let mask = self.next_mask();
        if let Some(Some(c)) = self.clients.get_mut(id) {
            encode_frame_masked(opcode, payload, mask, &mut c.out);
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    pub fn is_ready(&self, id: usize) -> bool {
        matches!(self.clients.get(id), Some(Some(c)) if c.state == State::Ready)
    }

    /// Drop a client: it counts as lost for `why`.
    fn lose(&mut self, id: usize, why: String) {
        if let Some(slot) = self.clients.get_mut(id) {
            if let Some(mut c) = slot.take() {
                let _ = self.poll.registry().deregister(&mut c.stream);
                if c.state == State::Ready {
                    self.ready -= 1;
                }
                self.opened -= 1;
                self.freed.push(id);
                *self.failures.entry(why).or_default() += 1;
            }
        }
    }

    /// Wait up to `timeout` for readiness, process it, tell the scenario, write what it queued.
    pub fn turn(&mut self, sc: &mut impl Scenario, timeout: Duration) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(timeout))?;
        let now = Instant::now();
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let closing = e.is_read_closed() || e.is_error();
                (
                    e.token().0,
                    e.is_readable() || closing,
                    closing,
                    e.is_writable(),
                )
            })
            .collect();
        let mut buf = std::mem::take(&mut self.buf);
        for (id, readable, closing, writable) in ready {
            if writable {
                self.on_writable(id);
            }
            if readable {
                self.on_readable(id, &mut buf, closing);
            }
        }
        self.buf = buf;
        let incoming = std::mem::take(&mut self.incoming);
        for (id, what) in &incoming {
            match what {
                Incoming::Ready => sc.ready(self, *id, now),
                Incoming::Packet(p) => sc.packet(self, *id, p, now),
                Incoming::Lost(why) => {
                    self.lose(*id, why.clone());
                    sc.lost(*id, now);
                }
            }
        }
        self.incoming = incoming;
        self.incoming.clear();
        self.flush_dirty();
        self.free.append(&mut self.freed);
        Ok(())
    }

    /// Give up on handshakes older than `limit`.
    pub fn expire(&mut self, sc: &mut impl Scenario, limit: Duration) {
        let now = Instant::now();
        while let Some(&(id, since)) = self.handshaking.front() {
            if now.duration_since(since) < limit {
                break;
            }
            self.handshaking.pop_front();
            let stale = matches!(self.clients.get(id),
                Some(Some(c)) if c.state != State::Ready && c.opened_at == since);
            if stale {
                self.lose(id, "handshake timeout".into());
                sc.lost(id, now);
            }
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let result = match self.clients.get_mut(id) {
                Some(Some(c)) => {
                    c.dirty = false;
                    if c.state == State::Connecting {
                        continue;
                    }
                    tcp::flush(&mut c.stream, &mut c.out, &mut c.out_pos)
                }
                _ => continue,
            };
            if let Err(e) = result {
                self.report_lost(id, format!("write: {}", e.kind()));
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
        self.free.append(&mut self.freed);
    }

    /// Report a client lost once; it is removed when the scenario has been told.
    fn report_lost(&mut self, id: usize, why: String) {
        if let Some(Some(c)) = self.clients.get_mut(id) {
            if !c.dead {
                c.dead = true;
                self.incoming.push((id, Incoming::Lost(why)));
            }
        }
    }

    fn on_writable(&mut self, id: usize) {
        let Some(Some(c)) = self.clients.get_mut(id) else {
            return;
        };
        if c.dead {
            return;
        }
        if c.state == State::Connecting {
            if let Err(e) = tcp::connected(&c.stream) {
                self.report_lost(id, format!("connect: {}", e.kind()));
                return;
            }
            c.state = State::Upgrading;
        }
        if let Err(e) = tcp::flush(&mut c.stream, &mut c.out, &mut c.out_pos) {
            self.report_lost(id, format!("write: {}", e.kind()));
        }
    }

    fn on_readable(&mut self, id: usize, buf: &mut [u8], closing: bool) {
        let mut replies: Vec<Reply> = Vec::new();
        let lost = match self.clients.get_mut(id) {
            Some(Some(c)) if !c.dead && c.state != State::Connecting => read_client(
                c,
                buf,
                closing,
                id,
                &mut self.incoming,
                &mut self.ready,
                &mut replies,
            ),
            _ => return,
        };
        for reply in replies {
            match reply {
                // The Socket.IO CONNECT, in the client's parser.
                Reply::Eio(b'4', data) => self.send(id, data),
                Reply::Eio(kind, data) => self.send_eio(id, kind, data),
                Reply::Pong(payload) => self.send_pong(id, &payload),
            }
        }
        if let Some(why) = lost {
            self.report_lost(id, why);
        }
    }
}

/// Read what arrived: the upgrade response, then frames. Returns why the client is lost, if it is.
fn read_client(
    c: &mut Client,
    buf: &mut [u8],
    closing: bool,
    id: usize,
    incoming: &mut Vec<(usize, Incoming)>,
    ready: &mut usize,
    replies: &mut Vec<Reply>,
) -> Option<String> {
    let mut upgraded = c.state != State::Upgrading;
    let mut bad_upgrade = false;
    let result = tcp::drain(&mut c.stream, buf, closing, |chunk| {
        if upgraded {
            c.decoder.feed(chunk);
            return;
        }
        c.head.extend_from_slice(chunk);
        if let Some(end) = tcp::head_end(&c.head) {
            let head = c.head.get(..end).unwrap_or_default();
            let accepted = tcp::status(head) == Some(101)
                && tcp::header(head, "sec-websocket-accept") == Some(&accept_key(KEY));
            bad_upgrade = !accepted;
            // The server accepted permessage-deflate (with context takeover, 15-bit windows: what it answers
            // to this offer by default).
            if tcp::header(head, "sec-websocket-extensions")
                .is_some_and(|e| e.starts_with("permessage-deflate"))
            {
                let deflate = PerMessageDeflate {
                    inflater: Inflater::new(15, false),
                    deflater: Deflater::new(6, 15, false),
                    threshold: 0,
                };
                c.decoder = ClientDecoder::with_deflate(MAX_MESSAGE, deflate);
            }
            c.decoder.feed(c.head.get(end..).unwrap_or_default());
            c.head = Vec::new();
            upgraded = true;
        }
    });
    if bad_upgrade {
        return Some("upgrade refused".into());
    }
    if upgraded && c.state == State::Upgrading {
        c.state = State::Opening;
    }
    loop {
        match c.decoder.next_message() {
            Ok(Some(Message::Text(text))) => match on_text(&mut c.state, text, replies) {
                Some(Incoming::Lost(why)) => return Some(why),
                Some(event) => {
                    if matches!(event, Incoming::Ready) {
                        *ready += 1;
                    }
                    incoming.push((id, event));
                }
                None => {}
            },
            Ok(Some(Message::Binary(bytes))) if c.msgpack => {
                let Some(text) = msgpack::decode(&bytes) else {
                    return Some("bad msgpack packet".into());
                };
                match on_text(&mut c.state, format!("4{text}"), replies) {
                    Some(Incoming::Lost(why)) => return Some(why),
                    Some(event) => {
                        if matches!(event, Incoming::Ready) {
                            *ready += 1;
                        }
                        incoming.push((id, event));
                    }
                    None => {}
                }
            }
            Ok(Some(Message::Close(..))) => return Some("closed by server".into()),
            // Servers such as uvicorn close connections whose WebSocket pings go unanswered.
            Ok(Some(Message::Ping(payload))) => replies.push(Reply::Pong(payload)),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Some(format!("bad frame: {}", e.reason)),
        }
    }
    match result {
        Ok(true) => None,
        Ok(false) => Some("eof".into()),
        Err(e) => Some(format!("read: {}", e.kind())),
    }
}

/// One Engine.IO text packet: heartbeat and handshake steps are answered here, the rest is the scenario's.
fn on_text(state: &mut State, text: String, replies: &mut Vec<Reply>) -> Option<Incoming> {
    let kind = *text.as_bytes().first()?;
    match (kind, *state) {
        (b'2', _) => {
            replies.push(Reply::Eio(b'3', ""));
            None
        }
        (b'0', State::Opening) => {
            *state = State::Joining;
            replies.push(Reply::Eio(b'4', "0"));
            None
        }
        (b'4', State::Joining) if text.starts_with("40") => {
            *state = State::Ready;
            Some(Incoming::Ready)
        }
        (b'4', State::Joining) => Some(Incoming::Lost(format!(
            "connect refused: {}",
            text.chars().take(80).collect::<String>()
        ))),
        (b'4', State::Ready) => {
            let mut text = text;
            text.remove(0);
            Some(Incoming::Packet(text))
        }
        (b'1', _) => Some(Incoming::Lost("engine.io close".into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(state: &mut State, text: &str) -> (Option<String>, Vec<String>) {
        let mut replies = Vec::new();
        let event = on_text(state, text.to_owned(), &mut replies).map(|e| match e {
            Incoming::Ready => "ready".to_owned(),
            Incoming::Packet(p) => format!("packet {p}"),
            Incoming::Lost(why) => format!("lost {why}"),
        });
        let replies = replies
            .into_iter()
            .map(|r| match r {
                Reply::Eio(kind, data) => format!("{}{data}", char::from(kind)),
                Reply::Pong(p) => format!("pong {p:?}"),
            })
            .collect();
        (event, replies)
    }

    #[test]
    fn handshake_then_packets() {
        let mut state = State::Opening;
        assert_eq!(
            step(&mut state, r#"0{"sid":"a"}"#),
            (None, vec!["40".to_owned()])
        );
        assert_eq!(state, State::Joining);
        assert_eq!(step(&mut state, "2"), (None, vec!["3".to_owned()]));
        assert_eq!(
            step(&mut state, r#"40{"sid":"b"}"#).0.as_deref(),
            Some("ready")
        );
        assert_eq!(
            step(&mut state, r#"43["x"]"#).0.as_deref(),
            Some(r#"packet 3["x"]"#)
        );
        assert_eq!(
            step(&mut state, "1").0.as_deref(),
            Some("lost engine.io close")
        );
    }

    #[test]
    fn refused_connect_and_junk() {
        let mut state = State::Joining;
        let (event, _) = step(&mut state, r#"44{"message":"no"}"#);
        assert!(event.is_some_and(|e| e.starts_with("lost connect refused")));
        let mut state = State::Ready;
        assert_eq!(step(&mut state, ""), (None, vec![]));
        assert_eq!(step(&mut state, "\u{e9}"), (None, vec![]));
    }
}
