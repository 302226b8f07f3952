//! What the engine answers on a connection, as values: the driver makes them bytes (the socket driver's
//! connection layer, `driver::wire`) or ASGI messages (`driver::virtual_conn`).
//!
//! ```text
//! HTTP       Continue? then Response, or Accept (the 101) and from then on WebSocket answers
//! WebSocket  Packet / Shared / Plain (one Engine.IO packet per message) / Message (one already encoded), Pong,
//!            then Close
//! Abandon    the peer reads too slowly: what is still buffered for it is dropped, then the connection closed
//! ```
use std::collections::VecDeque;
use std::sync::Arc;

use super::packet::{Data, Packet};
use crate::http::Response;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response (with `Connection: close` when the connection closes after it).
    Response(Response),
    /// The 101 that accepts a WebSocket handshake.
    Accept(Response),
    /// "100 Continue" for a request that asked for it (a socket's: an ASGI server sends its own).
    Continue,
    /// One Engine.IO packet, one WebSocket message.
    Packet(Packet),
    /// One packet for many connections (a broadcast), encoded by each connection's driver.
    Shared(Arc<Packet>),
    /// A packet sent with `compress(false)`: never compressed, whatever the WebSocket negotiated.
    Plain(Arc<Packet>),
    /// One WebSocket message already encoded (an Engine.IO v3 session's binary packet).
    Message(Data),
    /// The answer to a WebSocket ping (a socket's: an ASGI server answers pings itself).
    Pong(Vec<u8>),
    /// A WebSocket close frame: with a code (and reason), or empty.
    Close { code: Option<u16>, reason: String },
    /// Drop what is still buffered for the peer; the connection closes.
    Abandon,
}

impl Answer {
    /// The packet a WebSocket message carries.
    pub fn packet(&self) -> Option<&Packet> {
        match self {
            Answer::Packet(p) => Some(p),
            Answer::Shared(p) | Answer::Plain(p) => Some(p),
            _ => None,
        }
    }
}

/// `packet` as one WebSocket message (its text behind the type digit, or its bytes).
pub fn ws_message(packet: &Packet) -> Data {
    match packet {
        Packet::Message(Data::Binary(b)) => Data::Binary(b.clone()),
        Packet::Message(Data::Text(s)) => {
            let mut text = String::with_capacity(1 + s.len());
            text.push('4');
            text.push_str(s);
            Data::Text(text)
        }
        other => {
            let mut text = Vec::with_capacity(8);
            other.encode_text(&mut text);
            Data::Text(String::from_utf8_lossy(&text).into_owned())
        }
    }
}

fn data_len(data: &Data) -> usize {
    match data {
        Data::Text(t) => t.len(),
        Data::Binary(b) => b.len(),
    }
}

fn packet_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(data) => data_len(data),
        _ => 1,
    }
}

/// A connection's answers not yet taken by its driver, and the bytes its driver has not written yet: together
/// the backlog that bounds a slow reader.
#[derive(Debug, Default)]
pub struct Answers {
    queue: VecDeque<Answer>,
    /// Payload bytes in `queue`.
    bytes: usize,
    /// Bytes the driver took but has not written (`Engine::set_backlog`).
    pub(super) unwritten: usize,
}

impl Answers {
    /// Bytes waiting: answered but not taken, or taken but not written.
    pub fn len(&self) -> usize {
        self.bytes + self.unwritten
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.unwritten == 0
    }

    /// The peer reads too slowly: nothing more goes out.
    pub(super) fn abandon(&mut self) {
        self.queue.clear();
        self.bytes = 0;
        self.queue.push_back(Answer::Abandon);
    }

    pub fn take(&mut self) -> VecDeque<Answer> {
        self.bytes = 0;
        std::mem::take(&mut self.queue)
    }

    /// Hand every answer to `f`, oldest first. The queue's memory goes with them: most connections are idle
    /// most of the time, and a kept queue (four answers at least) would cost each of them 256 bytes.
    pub fn drain(&mut self, f: impl FnMut(Answer)) {
        self.bytes = 0;
        std::mem::take(&mut self.queue).into_iter().for_each(f);
    }

    fn push(&mut self, answer: Answer, bytes: usize) {
        self.bytes += bytes;
        self.queue.push_back(answer);
    }

    pub fn response(&mut self, res: Response) {
        let bytes = res.body.len();
        self.push(Answer::Response(res), bytes);
    }

    pub fn accept(&mut self, res: Response) {
        self.push(Answer::Accept(res), 0);
    }

    pub fn continue_100(&mut self) {
        self.push(Answer::Continue, 0);
    }

    pub fn packet(&mut self, packet: Packet) {
        let bytes = packet_len(&packet);
        self.push(Answer::Packet(packet), bytes);
    }

    pub fn message(&mut self, data: Data) {
        let bytes = data_len(&data);
        self.push(Answer::Message(data), bytes);
    }

    pub fn shared(&mut self, packet: &Arc<Packet>) {
        self.push(Answer::Shared(packet.clone()), packet_len(packet));
    }

    pub fn plain(&mut self, packet: &Arc<Packet>) {
        self.push(Answer::Plain(packet.clone()), packet_len(packet));
    }

    pub fn pong(&mut self, payload: Vec<u8>) {
        let bytes = payload.len();
        self.push(Answer::Pong(payload), bytes);
    }

    pub fn close(&mut self, code: Option<u16>, reason: &str) {
        let reason = reason.to_owned();
        self.push(Answer::Close { code, reason }, 0);
    }
}
