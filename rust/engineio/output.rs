//! What the engine answers on a connection, in one of two forms chosen when the connection opens:
//!
//! ```text
//! Wire   bytes for a socket: HTTP/1.1 responses, then (after a 101) RFC 6455 frames; the mio driver writes them
//! Typed  the same answers as values (Output), for a driver whose server already speaks HTTP and WebSocket
//!        (ASGI): no encoding here and no parsing there
//! ```
//! Every answer the engine gives goes through one of the calls below, so the two forms cannot drift apart.
use std::collections::VecDeque;

use super::packet::{Data, Packet};
use crate::http::{sanitize_field, Response};
use crate::websocket::{self, Opcode};

/// One answer on a typed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The answer to an HTTP request, or a refused WebSocket handshake. Framing is the server's: no
    /// Connection, Keep-Alive or Transfer-Encoding fields.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The WebSocket handshake was accepted; the fields to add to the server's 101 (Set-Cookie, CORS).
    Accept {
        headers: Vec<(String, String)>,
    },
    Message(Data),
    /// The engine is done with the connection: a WebSocket close code, or None when it closed without a
    /// close frame or, for HTTP, without an answer.
    Close(Option<u16>),
}

/// Fields of a response the server writes itself.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding"];
/// Fields of a 101 the server writes itself.
const HANDSHAKE_FIELDS: &[&str] = &["upgrade", "connection", "sec-websocket-accept"];

fn fields(res: &Response, leave_out: &[&str]) -> Vec<(String, String)> {
    let given = (res.headers.iter())
        .filter(|(n, _)| !leave_out.iter().any(|d| n.eq_ignore_ascii_case(d)))
        .map(|(n, v)| {
            (
                sanitize_field(n).into_owned(),
                sanitize_field(v).into_owned(),
            )
        });
    let length = res.added_content_length();
    given
        .chain(length.map(|len| ("Content-Length".to_owned(), len.to_string())))
        .collect()
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

/// `packet` as one WebSocket message.
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

/// One packet for many connections, encoded at most once per form.
pub struct Shared<'a> {
    packet: &'a Packet,
    frame: Option<Vec<u8>>,
    message: Option<Data>,
}

impl<'a> Shared<'a> {
    pub fn new(packet: &'a Packet) -> Self {
        Shared {
            packet,
            frame: None,
            message: None,
        }
    }
}

#[derive(Debug)]
pub enum Out {
    Wire(Vec<u8>),
    Typed {
        outputs: VecDeque<Output>,
        /// Payload bytes waiting, for the same bounds as a socket's buffer.
        bytes: usize,
    },
}

fn data_len(data: &Data) -> usize {
    match data {
        Data::Text(t) => t.len(),
        Data::Binary(b) => b.len(),
    }
}

impl Out {
    pub fn typed() -> Self {
        Out::Typed {
            outputs: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn is_typed(&self) -> bool {
        matches!(self, Out::Typed { .. })
    }

    /// Bytes waiting to be written (or, typed, payload bytes waiting to be taken).
    pub fn len(&self) -> usize {
        match self {
            Out::Wire(bytes) => bytes.len(),
            Out::Typed { bytes, .. } => *bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Out::Wire(bytes) => bytes.is_empty(),
            Out::Typed { outputs, .. } => outputs.is_empty(),
        }
    }

    pub fn clear(&mut self) {
        match self {
            Out::Wire(bytes) => bytes.clear(),
            Out::Typed { outputs, bytes } => {
                outputs.clear();
                *bytes = 0;
            }
        }
    }

    /// The typed outputs waiting, oldest first (nothing for a wire connection).
    pub fn take_outputs(&mut self) -> VecDeque<Output> {
        match self {
            Out::Wire(_) => VecDeque::new(),
            Out::Typed { outputs, bytes } => {
                *bytes = 0;
                std::mem::take(outputs)
            }
        }
    }

    fn push(&mut self, output: Output) {
        if let Out::Typed { outputs, bytes } = self {
            *bytes += match &output {
                Output::Response { body, .. } => body.len(),
                Output::Message(data) => data_len(data),
                _ => 0,
            };
            outputs.push_back(output);
        }
    }

    /// Bytes only a socket has a use for (100 Continue, a WebSocket pong): typed connections skip them.
    pub fn wire_only(&mut self, bytes: &[u8]) {
        if let Out::Wire(out) = self {
            out.extend_from_slice(bytes);
        }
    }

    pub fn response(&mut self, res: &Response) {
        match self {
            Out::Wire(out) => res.encode(out),
            Out::Typed { .. } => {
                let body = if res.is_bodiless() {
                    Vec::new()
                } else {
                    res.body.clone()
                };
                self.push(Output::Response {
                    status: res.status,
                    headers: fields(res, HOP_BY_HOP),
                    body,
                });
            }
        }
    }

    /// The 101 that accepts a WebSocket handshake.
    pub fn accept(&mut self, res: &Response) {
        match self {
            Out::Wire(out) => res.encode(out),
            Out::Typed { .. } => self.push(Output::Accept {
                headers: fields(res, HANDSHAKE_FIELDS),
            }),
        }
    }

    pub fn packet(&mut self, packet: &Packet) {
        match self {
            Out::Wire(out) => ws_frame(packet, out),
            Out::Typed { .. } => self.push(Output::Message(ws_message(packet))),
        }
    }

    pub fn shared(&mut self, shared: &mut Shared<'_>) {
        match self {
            Out::Wire(out) => {
                let frame = (shared.frame).get_or_insert_with(|| {
                    let mut frame = Vec::new();
                    ws_frame(shared.packet, &mut frame);
                    frame
                });
                out.extend_from_slice(frame);
            }
            Out::Typed { .. } => {
                let data = (shared.message).get_or_insert_with(|| ws_message(shared.packet));
                self.push(Output::Message(data.clone()));
            }
        }
    }

    /// A WebSocket close frame: with a code (and reason), or empty.
    pub fn close(&mut self, code: Option<u16>, reason: &str) {
        match self {
            Out::Wire(out) => match code {
                Some(code) => websocket::encode_close(code, reason, out),
                None => websocket::encode_frame(Opcode::Close, &[], out),
            },
            // An empty close frame reads as 1000 (RFC 6455 §7.1.5 says 1005, which may not be sent).
            Out::Typed { .. } => self.push(Output::Close(Some(code.unwrap_or(1000)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed answer carries what the encoded one would, less what the server frames itself.
    #[test]
    fn typed_answers_match_the_wire() {
        let res = Response::new(200)
            .with_header("Connection", "close")
            .with_header("X-Split", "a\r\nInjected: yes")
            .with_body("text/plain", b"ok".to_vec());
        let mut typed = Out::typed();
        typed.response(&res);
        typed.accept(
            &Response::new(101)
                .with_header("Upgrade", "websocket")
                .with_header("Sec-WebSocket-Accept", "x")
                .with_header("Set-Cookie", "io=1"),
        );
        typed.packet(&Packet::Message(Data::Text("hi".into())));
        typed.close(None, "");
        typed.wire_only(b"pong");
        assert_eq!(typed.len(), 2 + 3);
        let field = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let want = [
            Output::Response {
                status: 200,
                headers: vec![
                    field("X-Split", "a  Injected: yes"),
                    field("Content-Type", "text/plain"),
                    field("Content-Length", "2"),
                ],
                body: b"ok".to_vec(),
            },
            Output::Accept {
                headers: vec![field("Set-Cookie", "io=1")],
            },
            Output::Message(Data::Text("4hi".into())),
            Output::Close(Some(1000)),
        ];
        assert_eq!(typed.take_outputs(), want);
        assert_eq!(typed.len(), 0);

        let mut wire = Out::Wire(Vec::new());
        wire.response(&Response::new(204));
        wire.wire_only(b"x");
        let Out::Wire(bytes) = wire else { panic!() };
        assert_eq!(bytes, b"HTTP/1.1 204 No Content\r\n\r\nx");
    }
}
