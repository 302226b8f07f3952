//! The connection layer of the socket driver: the bytes of each TCP connection read as HTTP/1.1 requests and,
//! after a 101, as RFC 6455 messages, handed to the engine as values, and the engine's answers written as bytes;
//! and the HTTP/1.1 rules that depend on bytes and time rather than on Engine.IO (Node's headersTimeout and
//! keepAliveTimeout, input bounded behind a parked request).
//!
//! ```text
//! reader   Http(parser) ─(the engine answered 101: Phase::WebSocket)─► WebSocket(decoder; the bytes after the
//!          handshake are its first frames)
//!          a request is read only while the engine is Reading; while it is Parked, input is only counted
//! clock    Fresh ─first byte─► Receiving(since) ─request read─► KeptAlive ─first byte─► Receiving ...
//!          Fresh and Receiving: the request must be whole within request_timeout (408);
//!          KeptAlive: closed when idle for keep_alive_timeout; a parked request is never timed out
//! ```
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::engineio::{Answer, ConnId, Data, Engine, Packet, Phase};
use crate::http::{self, RequestParser};
use crate::ids::IdMap;
use crate::metrics::BadInput;
use crate::permessage_deflate::{Deflater, PerMessageDeflate};
use crate::websocket::{self, Decoder, Opcode};

/// A connection's reader. An HTTP reader is boxed: a WebSocket connection, most of them and idle for long, then
/// holds neither the parser nor its timing inline in the table (`size_of` tests below).
enum Reader {
    Http(Box<HttpReader>),
    WebSocket(Decoder),
}

/// What only an HTTP connection needs: its parser and its timing.
struct HttpReader {
    parser: RequestParser,
    between: Between,
    /// Bytes received while a request is parked: the parser only bounds what it parses, so this bounds the rest.
    parked_input: usize,
    /// When this connection, neither parked nor answered, stops being waited for.
    deadline: Option<Instant>,
    /// The earliest entry this connection has in `timers`. Later deadlines only move `deadline`: the entry,
    /// when it fires, re-queues itself, so a busy keep-alive connection keeps one entry, not one per request.
    /// A connection that became a WebSocket has none: its entries, when they fire, find no HTTP reader.
    queued: Option<Instant>,
}

/// Where a connection is between requests, for HTTP timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Between {
    /// Connected, nothing received yet: the connect-time deadline stands.
    Fresh,
    /// A request is arriving; it started at `since`.
    Receiving { since: Instant },
    /// A request was answered: waiting for the next is keep-alive idling.
    KeptAlive,
}

struct WireConn {
    reader: Reader,
    /// Bytes the socket did not take when they were written: allocated only while a peer is behind.
    out: Vec<u8>,
    /// What the engine was last told is left unwritten (`Engine::set_backlog`).
    reported: usize,
}

/// A connection's output, from `output` to `written`: encoded into the shared scratch buffer (no backlog,
/// the usual case), or appended to the connection's own backlog.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    Scratch(ConnId),
}

/// The scratch buffer is kept up to this capacity; a larger one (a big message went out) is given back.
const SCRATCH_KEPT: usize = 1 << 20;

pub struct Wire {
    conns: IdMap<ConnId, WireConn>,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// Every connection's answers are encoded here and written from here: only what a socket does not take
    /// is copied into its own buffer, so a connection holds no output memory between writes.
    scratch: Vec<u8>,
    pending: Pending,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            conns: IdMap::default(),
            timers: BinaryHeap::new(),
            scratch: Vec::new(),
            pending: Pending::Nothing,
        }
    }
}

impl Wire {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection; with `now`, the HTTP timeouts apply from now (a socket's).
    pub fn connect(
        &mut self,
        engine: &mut Engine,
        conn: ConnId,
        remote: Option<SocketAddr>,
        now: Option<Instant>,
    ) {
        let parser = RequestParser::new(http::DEFAULT_MAX_HEADER_BYTES, engine.config.max_payload);
        let c = WireConn {
            reader: Reader::Http(Box::new(HttpReader {
                parser,
                between: Between::Fresh,
                parked_input: 0,
                deadline: None,
                queued: None,
            })),
            out: Vec::new(),
            reported: 0,
        };
        self.conns.insert(conn, c);
        engine.on_connect(conn, remote);
        if let Some(now) = now {
            self.set_deadline(conn, now + engine.config.request_timeout);
        }
    }

    /// Bytes from the peer.
    pub fn input(&mut self, engine: &mut Engine, conn: ConnId, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match (&mut c.reader, engine.phase(conn)) {
            (_, None | Some(Phase::Done)) => return,
            (Reader::Http(http), phase) => {
                if phase == Some(Phase::Parked) {
                    http.parked_input = http.parked_input.saturating_add(data.len());
                    if http.parked_input
                        > http::DEFAULT_MAX_HEADER_BYTES + engine.config.max_payload
                    {
                        return engine.drop_parked(conn, now);
                    }
                }
                http.parser.feed(data);
            }
            (Reader::WebSocket(decoder), _) => decoder.feed(data),
        }
        self.read(engine, conn, now);
    }

    /// Hand the engine what `conn`'s buffered bytes hold, as far as it takes them now.
    fn read(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match (&mut c.reader, engine.phase(conn)) {
                (Reader::Http(http), Some(Phase::WebSocket)) => {
                    // The 101 is written: what followed the handshake are its first frames.
                    let max = engine.config.max_payload;
                    let config = engine.config.per_message_deflate.as_ref();
                    let mut decoder = match engine.websocket_deflate(conn).zip(config) {
                        Some((params, config)) => {
                            Decoder::with_deflate(max, params.server_state(config))
                        }
                        None => Decoder::new(max),
                    };
                    decoder.feed(&http.parser.take_buffered());
                    c.reader = Reader::WebSocket(decoder);
                }
                (Reader::WebSocket(decoder), Some(Phase::WebSocket)) => loop {
                    match decoder.next_message() {
                        Ok(None) => return,
                        Ok(Some(msg)) => engine.on_message(conn, msg, now),
                        Err(err) => return engine.websocket_error(conn, err, now),
                    }
                    // A message can end the WebSocket (a close frame, a session closed for bad input).
                    if engine.phase(conn) != Some(Phase::WebSocket) {
                        return;
                    }
                },
                (Reader::Http(_), Some(Phase::Reading)) if !engine.should_close(conn) => {
                    if !self.next_request(engine, conn, now) {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Read one request and hand it over; false when there is none (yet, or after an error).
    fn next_request(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Reader::Http(http) = &mut c.reader else {
            return false;
        };
        http.parked_input = 0;
        let parser = &mut http.parser;
        match parser.next_request() {
            Ok(Some(req)) => {
                http.between = Between::KeptAlive;
                engine.on_request(conn, req, now);
                true
            }
            Ok(None) => {
                // As Node does by default; curl otherwise waits a second before sending a large body.
                if parser.take_expect_continue() {
                    engine.continue_100(conn);
                }
                let deadline = match (parser.is_idle(), http.between) {
                    (false, Between::Receiving { since }) => {
                        Some(since + engine.config.request_timeout)
                    }
                    (false, _) => {
                        http.between = Between::Receiving { since: now };
                        Some(now + engine.config.request_timeout)
                    }
                    (true, Between::KeptAlive) => Some(now + engine.config.keep_alive_timeout),
                    (true, _) => None, // a fresh connection: its connect-time deadline stands
                };
                if let Some(at) = deadline {
                    self.set_deadline(conn, at);
                }
                false
            }
            Err(err) => {
                engine.http_error(conn, err);
                false
            }
        }
    }

    /// Go on reading the connections whose parked request the engine answered (requests pipelined behind it).
    fn resume(&mut self, engine: &mut Engine, now: Instant) {
        for conn in engine.take_resumed() {
            self.read(engine, conn, now);
        }
    }

    /// Add to `into` the connections with something to write or to close, after reading the requests pipelined
    /// behind answered ones (answering parked GETs resumes their connections too, so until none is resumed).
    /// Sorted and without repeats when a resumed connection was added.
    pub fn take_dirty(&mut self, engine: &mut Engine, now: Instant, into: &mut Vec<ConnId>) {
        self.resume(engine, now);
        engine.take_dirty(into);
        if engine.has_resumed() {
            while engine.has_resumed() {
                self.resume(engine, now);
                engine.take_dirty(into);
            }
            into.sort_unstable();
            into.dedup();
        }
    }

    /// The peer closed the connection, or it failed; or the driver closed it.
    pub fn disconnect(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.remove(&conn) {
            let inside = matches!(&c.reader, Reader::Http(http) if !http.parser.is_idle());
            if inside && engine.phase(conn) == Some(Phase::Reading) {
                engine.report_bad_input(
                    conn,
                    BadInput::Http,
                    "connection closed inside a request".into(),
                );
            }
        }
        engine.on_disconnect(conn, now);
    }

    /// True when `conn` is an HTTP connection between requests: nothing buffered, nothing parked, nothing to
    /// write.
    pub fn is_idle(&self, engine: &Engine, conn: ConnId) -> bool {
        let idle = matches!(
            self.conns.get(&conn).map(|c| &c.reader),
            Some(Reader::Http(http)) if http.parser.is_idle()
        );
        idle && engine.is_between_requests(conn)
    }

    /// The bytes to write to `conn`: what was left unwritten, then the engine's new answers. The driver
    /// then says how many it wrote (`written`), before asking for another connection's.
    pub fn output(&mut self, engine: &mut Engine, conn: ConnId) -> Option<&[u8]> {
        let c = self.conns.get_mut(&conn)?;
        let mut deflate = match &mut c.reader {
            Reader::WebSocket(decoder) => decoder.deflate_mut(),
            Reader::Http(_) => None,
        };
        if !c.out.is_empty() {
            self.pending = Pending::Nothing;
            let out = &mut c.out;
            engine.drain_answers(conn, |answer| encode(&answer, out, deflate.as_deref_mut()));
            return Some(&c.out);
        }
        self.scratch.clear();
        self.pending = Pending::Scratch(conn);
        let scratch = &mut self.scratch;
        engine.drain_answers(conn, |answer| {
            encode(&answer, scratch, deflate.as_deref_mut())
        });
        Some(&self.scratch)
    }

    /// `n` bytes of `output` were written; what is left still counts against a slow reader.
    pub fn written(&mut self, engine: &mut Engine, conn: ConnId, n: usize) {
        let pending = std::mem::replace(&mut self.pending, Pending::Nothing);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if pending == Pending::Scratch(conn) {
            // Only the part the socket did not take is kept, in a buffer of its own size.
            if let Some(rest) = self.scratch.get(n..).filter(|rest| !rest.is_empty()) {
                c.out = rest.to_vec();
            }
            self.scratch.clear();
            if self.scratch.capacity() > SCRATCH_KEPT {
                self.scratch = Vec::new();
            }
        } else {
            c.out.drain(..n.min(c.out.len()));
            if c.out.is_empty() {
                // The peer caught up: its backlog's memory goes back.
                c.out = Vec::new();
            }
        }
        if c.out.len() != c.reported {
            c.reported = c.out.len();
            engine.set_backlog(conn, c.reported);
        }
    }

    // ---- HTTP timing --------------------------------------------------------------------------------------

    fn set_deadline(&mut self, conn: ConnId, at: Instant) {
        if let Some(Reader::Http(http)) = self.conns.get_mut(&conn).map(|c| &mut c.reader) {
            http.deadline = Some(at);
            if http.queued.is_none_or(|q| at < q) {
                http.queued = Some(at);
                self.timers.push(Reverse((at, conn)));
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.timer(engine, conn, at);
        }
    }

    /// A connection's deadline passed: close it if it is still waited for (not parked, not answered).
    fn timer(&mut self, engine: &mut Engine, conn: ConnId, at: Instant) {
        let Some(Reader::Http(http)) = self.conns.get_mut(&conn).map(|c| &mut c.reader) else {
            return; // gone, or a WebSocket now: no HTTP timing
        };
        if http.queued != Some(at) {
            return; // superseded by an earlier entry
        }
        http.queued = None;
        match http.deadline {
            Some(later) if later > at => {
                // The deadline moved on since this entry was queued: wait for it instead.
                http.queued = Some(later);
                self.timers.push(Reverse((later, conn)));
                return;
            }
            Some(_) => {}
            None => return,
        }
        if engine.phase(conn) != Some(Phase::Reading) || engine.should_close(conn) {
            return;
        }
        http.deadline = None;
        if http.parser.is_idle() {
            // Keep-alive idling, or a client that connected and said nothing: closed without an answer.
            engine.close_idle(conn);
        } else {
            engine.request_timed_out(conn);
        }
    }
}

/// An answer as the bytes a socket carries; a WebSocket message compressed when `deflate` is given and the
/// message is at least its threshold.
pub fn encode(answer: &Answer, out: &mut Vec<u8>, deflate: Option<&mut PerMessageDeflate>) {
    match answer {
        Answer::Response(res) | Answer::Accept(res) => res.encode(out),
        Answer::Continue => out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n"),
        Answer::Packet(packet) => ws_frame_maybe_deflated(packet, out, deflate),
        Answer::Shared(packet) => ws_frame_maybe_deflated(packet, out, deflate),
        Answer::Plain(packet) => ws_frame(packet, out),
        Answer::Message(Data::Text(t)) => websocket::encode_frame(Opcode::Text, t.as_bytes(), out),
        Answer::Message(Data::Binary(b)) => websocket::encode_frame(Opcode::Binary, b, out),
        Answer::Pong(payload) => websocket::encode_frame(Opcode::Pong, payload, out),
        Answer::Close {
            code: Some(code),
            reason,
        } => websocket::encode_close(*code, reason, out),
        Answer::Close { code: None, .. } => websocket::encode_frame(Opcode::Close, &[], out),
        Answer::Abandon => out.clear(),
    }
}

fn ws_frame_maybe_deflated(
    packet: &Packet,
    out: &mut Vec<u8>,
    deflate: Option<&mut PerMessageDeflate>,
) {
    match deflate {
        Some(d) if message_len(packet) >= d.threshold => {
            ws_frame_deflated(packet, &mut d.deflater, out)
        }
        _ => ws_frame(packet, out),
    }
}

/// The bytes of `packet`'s WebSocket message.
fn message_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(Data::Binary(b)) => b.len(),
        Packet::Message(Data::Text(s)) => 1 + s.len(),
        _ => 1,
    }
}

/// A compressed WebSocket frame (RSV1) for `packet`; uncompressed, as `ws_frame`, if zlib fails.
pub fn ws_frame_deflated(packet: &Packet, deflater: &mut Deflater, out: &mut Vec<u8>) {
    let text;
    let (opcode, payload): (Opcode, &[u8]) = match packet {
        Packet::Message(Data::Binary(b)) => (Opcode::Binary, b),
        Packet::Message(Data::Text(s)) => {
            text = [b"4", s.as_bytes()].concat();
            (Opcode::Text, &text)
        }
        other => return ws_frame(other, out),
    };
    let mut compressed = Vec::new();
    if deflater.compress(payload, &mut compressed) {
        websocket::encode_compressed_header(opcode, compressed.len(), out);
        out.extend_from_slice(&compressed);
    } else {
        websocket::encode_frame(opcode, payload, out);
    }
}

/// A WebSocket frame for `packet`; a message's text is written behind its type digit without an
/// intermediate copy.
pub fn ws_frame(packet: &Packet, out: &mut Vec<u8>) {
    match packet {
        Packet::Message(Data::Binary(b)) => websocket::encode_frame(Opcode::Binary, b, out),
        Packet::Message(Data::Text(s)) => {
            websocket::encode_frame_header(Opcode::Text, 1 + s.len(), out);
            out.push(b'4');
            out.extend_from_slice(s.as_bytes());
        }
        other => {
            let mut text = Vec::with_capacity(8);
            other.encode_text(&mut text);
            websocket::encode_frame(Opcode::Text, &text, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection has one of these in the table, and most are idle WebSocket connections: the HTTP
    /// parser and its timing (about 260 bytes) are boxed so that those do not carry them.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_websocket_connection_holds_no_http_state() {
        assert!(std::mem::size_of::<Reader>() <= std::mem::size_of::<Decoder>());
        assert!(std::mem::size_of::<WireConn>() <= 184);
    }
}
