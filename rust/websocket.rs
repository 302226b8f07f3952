//! RFC 6455 frames and the opening handshake's key, sans-IO.
//!
//! The server decodes masked client frames with [`Decoder`] and writes unmasked frames with
//! [`encode_frame`]; [`encode_frame_masked`] and [`ClientDecoder`] are the mirror image for test
//! clients and the load generator. Payload bytes are unmasked as they arrive, straight into the
//! message being assembled, so the input buffer never holds more than a partial frame header plus
//! the bytes the caller has not pulled yet.

use base64::engine::general_purpose::STANDARD;

use crate::permessage_deflate::{InflateError, PerMessageDeflate};
use base64::Engine as _;
use sha1::{Digest, Sha1};

pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (SHA-1, then base64 with the standard alphabet and
/// padding).
pub fn accept_key(client_key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(client_key.as_bytes());
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// A valid Sec-WebSocket-Key is base64 of 16 bytes.
pub fn is_valid_key(client_key: &str) -> bool {
    client_key.len() == 24
        && STANDARD
            .decode(client_key)
            .is_ok_and(|nonce| nonce.len() == 16)
}

pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a peer may send `code` in a Close frame: RFC 6455 7.4 plus the IANA-registered
    /// 1012-1014; 1005, 1006 and 1015 only ever describe a closure locally.
    pub fn is_allowed_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    pub fn from_u8(bits: u8) -> Option<Opcode> {
        match bits {
            0 => Some(Opcode::Continuation),
            1 => Some(Opcode::Text),
            2 => Some(Opcode::Binary),
            8 => Some(Opcode::Close),
            9 => Some(Opcode::Ping),
            10 => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Close, Ping and Pong: never fragmented, at most 125 bytes, allowed between fragments.
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub reason: &'static str,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "websocket protocol error {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

/// Close code 1002, which most rules call for.
const fn protocol(reason: &'static str) -> ProtocolError {
    ProtocolError {
        code: close_code::PROTOCOL_ERROR,
        reason,
    }
}

const MAX_CONTROL_PAYLOAD: usize = 125;
/// A frame header claims its length before the bytes arrive; reserving more than this up front
/// would let a peer make us allocate max_message_size per connection for free.
const MAX_UPFRONT_RESERVE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes not received yet.
    remaining: u64,
    /// Payload bytes received so far, modulo 4: where the mask key continues.
    mask_phase: usize,
    /// RSV1 on a message's first frame: the message is compressed (permessage-deflate).
    compressed: bool,
}

/// The decoder shared by both sides; they differ only in whether frames must be masked.
#[derive(Debug)]
struct FrameDecoder {
    expect_masked: bool,
    max_message_size: usize,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// The frame whose payload is being received, once its header is parsed.
    frame: Option<Frame>,
    /// Text or Binary while a message is being assembled, possibly over several fragments.
    message_opcode: Option<Opcode>,
    message: Vec<u8>,
    /// Length of the prefix of `message` known to be valid UTF-8, so each fragment is checked once.
    utf8_valid: usize,
    control: Vec<u8>,
    /// Boxed, as `deflate`: every WebSocket connection holds a decoder, and few hold either.
    error: Option<Box<ProtocolError>>,
    /// With permessage-deflate negotiated: messages whose first frame has RSV1 are inflated. The connection's
    /// compressor lives here too, so that a connection without the extension pays one pointer for both ways.
    deflate: Option<Box<PerMessageDeflate>>,
    /// The message being assembled is compressed.
    compressed: bool,
}

impl FrameDecoder {
    fn new(expect_masked: bool, max_message_size: usize) -> Self {
        FrameDecoder {
            deflate: None,
            compressed: false,
            expect_masked,
            max_message_size,
            buf: Vec::new(),
            pos: 0,
            frame: None,
            message_opcode: None,
            message: Vec::new(),
            utf8_valid: 0,
            control: Vec::new(),
            error: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        // Compacting only once the consumed part is at least as long as the rest keeps the cost of
        // moving bytes linear in the bytes consumed, however small the pieces.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if let Some(err) = &self.error {
            return Err(ProtocolError::clone(err));
        }
        let result = self.advance();
        if matches!(result, Ok(None)) && self.pos >= self.buf.len() {
            // Everything fed is decoded: an idle connection keeps no buffer (the largest read it ever had, up to
            // a whole message otherwise). The next read allocates one of its own size.
            self.buf = Vec::new();
            self.pos = 0;
        }
        if let Err(err) = &result {
            self.error = Some(Box::new(err.clone()));
            // Nothing more is decoded, so free what the peer made us hold.
            self.buf = Vec::new();
            self.pos = 0;
            self.message = Vec::new();
            self.control = Vec::new();
            self.deflate = None;
        }
        result
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn decode_all<'a>(
        mut self,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Message>, Option<ProtocolError>) {
        let mut messages = Vec::new();
        for piece in pieces {
            self.feed(piece);
            loop {
                match self.next_message() {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(err) => {
                        assert_eq!(self.next_message(), Err(err.clone()), "errors are sticky");
                        return (messages, Some(err));
                    }
                }
            }
        }
        (messages, None)
    }

    fn advance(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => match self.parse_header()? {
                    Some((frame, header_len)) => {
                        self.pos += header_len;
                        self.start_frame(&frame);
                        frame
                    }
                    None => return Ok(None),
                },
            };
            let available = self.buf.get(self.pos..).unwrap_or_default();
            let take = usize::try_from(frame.remaining)
                .map_or(available.len(), |n| n.min(available.len()));
            let chunk = available.get(..take).unwrap_or_default();
            let target = if frame.opcode.is_control() {
                &mut self.control
            } else {
                &mut self.message
            };
            let start = target.len();
            target.extend_from_slice(chunk);
            if let (Some(mask), Some(fresh)) = (frame.mask, target.get_mut(start..)) {
                apply_mask(fresh, mask, frame.mask_phase);
            }
            self.pos += take;
            frame.remaining -= take as u64;
            frame.mask_phase = (frame.mask_phase + take) % 4;
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok(None);
            }
            self.frame = None;
            if let Some(message) = self.finish_frame(&frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// Parses the frame header at `pos` and applies every rule that the header alone decides, each
    /// as soon as the bytes it depends on are in. `Ok(None)` means the header is incomplete.
    fn parse_header(&self) -> Result<Option<(Frame, usize)>, ProtocolError> {
        let input = self.buf.get(self.pos..).unwrap_or_default();
        let (Some(&b0), Some(&b1)) = (input.first(), input.get(1)) else {
            return Ok(None);
        };
        let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(protocol("unknown opcode"))?;
        let compressed = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (compressed && self.deflate.is_none()) {
            return Err(protocol("RSV bit set without an extension"));
        }
        if compressed && (opcode.is_control() || opcode == Opcode::Continuation) {
            // RFC 7692 6: only a message's first frame says it is compressed.
            return Err(protocol("RSV1 set on a control or continuation frame"));
        }
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        if masked != self.expect_masked {
            let reason = if self.expect_masked {
                "client frame not masked"
            } else {
                "server frame masked"
            };
            return Err(protocol(reason));
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(protocol("control frame over 125 bytes"));
            }
        } else if opcode == Opcode::Continuation {
            if self.message_opcode.is_none() {
                return Err(protocol("continuation without a message"));
            }
        } else if self.message_opcode.is_some() {
            return Err(protocol("new message inside a fragmented one"));
        }
        let length_bytes = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + length_bytes + if masked { 4 } else { 0 };
        let Some(header) = input.get(..header_len) else {
            return Ok(None);
        };
        let mut rest = header.get(2..).unwrap_or_default().iter().copied();
        let payload_len = match length_bytes {
            0 => u64::from(len7),
            n => rest
                .by_ref()
                .take(n)
                .fold(0, |acc, byte| acc << 8 | u64::from(byte)),
        };
        if payload_len >> 63 != 0 {
            return Err(protocol("64-bit length with the top bit set"));
        }
        let mask = masked.then(|| {
            let mut key = [0u8; 4];
            key.iter_mut().zip(rest).for_each(|(k, byte)| *k = byte);
            key
        });
        // Control frames are bounded by 125 bytes instead, so a Close always gets through.
        if !opcode.is_control()
            && (self.message.len() as u64).saturating_add(payload_len)
                > self.max_message_size as u64
        {
            return Err(ProtocolError {
                code: close_code::MESSAGE_TOO_BIG,
                reason: "message over the size limit",
            });
        }
        let frame = Frame {
            opcode,
            fin,
            mask,
            remaining: payload_len,
            mask_phase: 0,
            compressed,
        };
        Ok(Some((frame, header_len)))
    }

    fn start_frame(&mut self, frame: &Frame) {
        if frame.opcode.is_control() {
            self.control.clear();
            return;
        }
        if frame.opcode != Opcode::Continuation {
            self.message_opcode = Some(frame.opcode);
            self.compressed = frame.compressed;
        }
        let len = usize::try_from(frame.remaining).unwrap_or(usize::MAX);
        self.message.reserve(len.min(MAX_UPFRONT_RESERVE));
    }

    fn finish_frame(&mut self, frame: &Frame) -> Result<Option<Message>, ProtocolError> {
        match frame.opcode {
            Opcode::Ping => return Ok(Some(Message::Ping(std::mem::take(&mut self.control)))),
            Opcode::Pong => return Ok(Some(Message::Pong(std::mem::take(&mut self.control)))),
            Opcode::Close => return parse_close(&self.control).map(Some),
            _ => {}
        }
        if !frame.fin {
            // A compressed message's fragments are DEFLATE data: its text is checked once inflated.
            if self.message_opcode == Some(Opcode::Text) && !self.compressed {
                self.check_utf8_so_far()?;
            }
            return Ok(None);
        }
        let mut payload = std::mem::take(&mut self.message);
        self.utf8_valid = 0;
        if std::mem::take(&mut self.compressed) {
            payload = self.inflate(&payload)?;
        }
        match self.message_opcode.take() {
            Some(Opcode::Text) => String::from_utf8(payload)
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| invalid_utf8()),
            _ => Ok(Some(Message::Binary(payload))),
        }
    }

    /// A compressed message's payload, inflated within the size limit: past it, the same 1009 as a message
    /// over the limit on the wire (no zip bombs); invalid DEFLATE data, 1007 as ws answers it.
    fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let Some(deflate) = self.deflate.as_mut() else {
            return Err(protocol("RSV bit set without an extension"));
        };
        deflate
            .inflater
            .inflate(payload, self.max_message_size)
            .map_err(|err| match err {
                InflateError::TooBig => ProtocolError {
                    code: close_code::MESSAGE_TOO_BIG,
                    reason: "message over the size limit once inflated",
                },
                InflateError::Invalid => ProtocolError {
                    code: close_code::INVALID_PAYLOAD,
                    reason: "invalid compressed data",
                },
            })
    }

    /// Fails a fragmented Text message as soon as a fragment cannot be the start of valid UTF-8.
    fn check_utf8_so_far(&mut self) -> Result<(), ProtocolError> {
        let unchecked = self.message.get(self.utf8_valid..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(text) => self.utf8_valid += text.len(),
            // A code point cut at the end of the fragment may be completed by the next one.
            Err(e) if e.error_len().is_none() => self.utf8_valid += e.valid_up_to(),
            Err(_) => return Err(invalid_utf8()),
        }
        Ok(())
    }
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError {
        code: close_code::INVALID_PAYLOAD,
        reason: "text is not valid UTF-8",
    }
}

fn parse_close(payload: &[u8]) -> Result<Message, ProtocolError> {
    let (code, reason) = match payload {
        [] => return Ok(Message::Close(None, String::new())),
        [_] => return Err(protocol("close payload of 1 byte")),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !close_code::is_allowed_on_wire(code) {
        return Err(protocol("close code not allowed on the wire"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| invalid_utf8())?;
    Ok(Message::Close(Some(code), reason.to_owned()))
}

/// XORs `data` with the mask key, `phase` bytes into the key; eight bytes at a time.
fn apply_mask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = mask;
    key.rotate_left(phase % 4);
    let [k0, k1, k2, k3] = key;
    let key64 = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key64).to_ne_bytes());
        }
    }
    // The chunks were a multiple of 4 bytes long, so the tail starts at the key's first byte.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Server side: decodes client (masked) frames.
#[derive(Debug)]
pub struct Decoder {
    inner: FrameDecoder,
}

impl Decoder {
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            inner: FrameDecoder::new(true, max_message_size),
        }
    }

    /// A decoder for a WebSocket with permessage-deflate: compressed messages are inflated, within
    /// `max_message_size` once inflated; the compressing half is the encoder's (`deflate_mut`).
    pub fn with_deflate(max_message_size: usize, deflate: PerMessageDeflate) -> Self {
        let mut inner = FrameDecoder::new(true, max_message_size);
        inner.deflate = Some(Box::new(deflate));
        Decoder { inner }
    }

    /// The connection's permessage-deflate, when negotiated (and no protocol error ended it).
    pub fn deflate_mut(&mut self) -> Option<&mut PerMessageDeflate> {
        self.inner.deflate.as_deref_mut()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    /// Ok(None) = need more bytes. After Err, the caller sends a close frame with err.code and
    /// closes; further calls keep returning the same Err.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        self.inner.next_message()
    }
}

/// Client side decoding of server (unmasked) frames, for test clients and the load generator.
#[derive(Debug)]
pub struct ClientDecoder {
    inner: FrameDecoder,
}

impl ClientDecoder {
    pub fn new(max_message_size: usize) -> Self {
        ClientDecoder {
            inner: FrameDecoder::new(false, max_message_size),
        }
    }

    /// A client's decoder for a server that compresses (permessage-deflate; its compressing half is the
    /// client's, `deflate_mut`).
    pub fn with_deflate(max_message_size: usize, deflate: PerMessageDeflate) -> Self {
        let mut inner = FrameDecoder::new(false, max_message_size);
        inner.deflate = Some(Box::new(deflate));
        ClientDecoder { inner }
    }

    pub fn deflate_mut(&mut self) -> Option<&mut PerMessageDeflate> {
        self.inner.deflate.as_deref_mut()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        self.inner.next_message()
    }
}

/// Feeds `pieces` in turn to a decoder of the server's side (`masked`: it reads client frames) or of the
/// client's, taking every message after each: the messages, and the error that ended them (which must be
/// sticky). For the tests and the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn decode_all<'a>(
    masked: bool,
    max_message_size: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Message>, Option<ProtocolError>) {
    FrameDecoder::new(masked, max_message_size).decode_all(pieces)
}

/// `decode_all` for a WebSocket with permessage-deflate (with context takeover, as negotiated by default).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn decode_all_deflate<'a>(
    masked: bool,
    max_message_size: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Message>, Option<ProtocolError>) {
    let mut decoder = FrameDecoder::new(masked, max_message_size);
    decoder.deflate = Some(Box::new(PerMessageDeflate {
        inflater: crate::permessage_deflate::Inflater::new(15, false),
        deflater: crate::permessage_deflate::Deflater::new(6, 15, false),
        threshold: 0,
    }));
    decoder.decode_all(pieces)
}

fn encode_header(opcode: Opcode, payload_len: usize, mask_bit: u8, out: &mut Vec<u8>) {
    encode_header_rsv(opcode, 0, payload_len, mask_bit, out);
}

fn encode_header_rsv(opcode: Opcode, rsv: u8, payload_len: usize, mask_bit: u8, out: &mut Vec<u8>) {
    out.push(0x80 | rsv | opcode as u8);
    if payload_len <= MAX_CONTROL_PAYLOAD {
        out.push(mask_bit | payload_len as u8);
    } else if let Ok(len) = u16::try_from(payload_len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// Server frames: FIN set, unmasked. Payload length in the shortest form.
/// Control opcodes need a payload of at most 125 bytes; that is the caller's to respect.
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    encode_frame_header(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Just the header of an unmasked FIN frame, so a caller can write a shared payload after it
/// without copying.
pub fn encode_frame_header(opcode: Opcode, payload_len: usize, out: &mut Vec<u8>) {
    encode_header(opcode, payload_len, 0, out);
}

/// The header of an unmasked FIN frame whose payload is compressed (RSV1: permessage-deflate).
pub fn encode_compressed_header(opcode: Opcode, payload_len: usize, out: &mut Vec<u8>) {
    encode_header_rsv(opcode, 0x40, payload_len, 0, out);
}

/// A client's masked frame whose payload is compressed (RSV1), for test clients and the load generator.
pub fn encode_compressed_masked(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_masked_rsv(opcode, 0x40, payload, mask, out);
}

/// The reason is cut to 123 bytes at a character boundary so that the frame stays within the
/// 125-byte control frame limit.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    encode_frame_header(Opcode::Close, 2 + reason.len(), out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Client side frames (masked with the given key), used by test clients and the load generator.
pub fn encode_frame_masked(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_masked_rsv(opcode, 0, payload, mask, out);
}

fn encode_masked_rsv(opcode: Opcode, rsv: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_header_rsv(opcode, rsv, payload.len(), 0x80, out);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(fresh) = out.get_mut(start..) {
        apply_mask(fresh, mask, 0);
    }
}

/// The frame a peer would send for `message` (masked when `mask` is given), for test clients and the fuzz
/// targets.
pub fn encode_message(message: &Message, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let close_payload;
    let (opcode, payload): (Opcode, &[u8]) = match message {
        Message::Text(text) => (Opcode::Text, text.as_bytes()),
        Message::Binary(data) => (Opcode::Binary, data),
        Message::Ping(data) => (Opcode::Ping, data),
        Message::Pong(data) => (Opcode::Pong, data),
        Message::Close(code, reason) => {
            close_payload = code.map_or(Vec::new(), |c| {
                [&c.to_be_bytes()[..], reason.as_bytes()].concat()
            });
            (Opcode::Close, &close_payload)
        }
    };
    match mask {
        Some(mask) => encode_frame_masked(opcode, payload, mask, out),
        None => encode_frame(opcode, payload, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../tests/vectors/websocket.json");
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn opcode_named(name: &str) -> Opcode {
        match name {
            "text" => Opcode::Text,
            "binary" => Opcode::Binary,
            "close" => Opcode::Close,
            "ping" => Opcode::Ping,
            "pong" => Opcode::Pong,
            _ => panic!("opcode {name}"),
        }
    }

    fn message_from_json(v: &Value) -> Message {
        let bytes = |key: &str| v.get(key).and_then(Value::as_str).map(hex);
        if let Some(text) = v.get("text") {
            Message::Text(text.as_str().unwrap().to_owned())
        } else if let Some(close) = v.get("close") {
            let code = close.as_u64().map(|code| code as u16);
            Message::Close(code, v["reason"].as_str().unwrap().to_owned())
        } else if let Some(data) = bytes("binary") {
            Message::Binary(data)
        } else if let Some(data) = bytes("ping") {
            Message::Ping(data)
        } else {
            Message::Pong(bytes("pong").unwrap())
        }
    }

    fn server(max: usize, pieces: &[&[u8]]) -> (Vec<Message>, Option<u16>) {
        let (messages, err) = decode_all(true, max, pieces.iter().copied());
        (messages, err.map(|e| e.code))
    }

    fn client(max: usize, pieces: &[&[u8]]) -> (Vec<Message>, Option<u16>) {
        let (messages, err) = decode_all(false, max, pieces.iter().copied());
        (messages, err.map(|e| e.code))
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn field<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key].as_str().unwrap()
    }

    #[test]
    fn vectors() {
        let vectors: Value = serde_json::from_str(VECTORS).unwrap();
        let list = |key: &str| vectors[key].as_array().unwrap().clone();
        for v in list("accept_key") {
            assert_eq!(accept_key(field(&v, "key")), field(&v, "accept"));
        }
        for v in list("valid_key") {
            assert_eq!(is_valid_key(field(&v, "key")), v["valid"] == true, "{v}");
        }
        for v in list("decode") {
            let max = v
                .get("max_message_size")
                .map_or(65536, |n| n.as_u64().unwrap());
            let bytes = hex(field(&v, "hex"));
            let messages = v["messages"].as_array().unwrap();
            let messages = messages.iter().map(message_from_json).collect();
            let error = v.get("error").map(|code| code.as_u64().unwrap() as u16);
            let decoded = match field(&v, "side") {
                "server" => server(max as usize, &[&bytes]),
                _ => client(max as usize, &[&bytes]),
            };
            assert_eq!(decoded, (messages, error), "{}", v["name"]);
        }
        for v in list("encode") {
            let opcode = opcode_named(field(&v, "opcode"));
            let payload = hex(field(&v, "payload_hex"));
            let mut out = Vec::new();
            match v.get("mask_hex").map(|mask| hex(mask.as_str().unwrap())) {
                Some(mask) => {
                    encode_frame_masked(opcode, &payload, mask.try_into().unwrap(), &mut out)
                }
                None => encode_frame(opcode, &payload, &mut out),
            }
            assert_eq!(out, hex(field(&v, "hex")), "{v}");
        }
        for v in list("encode_header") {
            let (opcode, len) = (opcode_named(field(&v, "opcode")), v["payload_len"].as_u64());
            let mut out = Vec::new();
            encode_frame_header(opcode, len.unwrap() as usize, &mut out);
            assert_eq!(out, hex(field(&v, "hex")), "{v}");
        }
        for v in list("encode_close") {
            let mut out = Vec::new();
            encode_close(
                v["code"].as_u64().unwrap() as u16,
                field(&v, "reason"),
                &mut out,
            );
            assert_eq!(out, hex(field(&v, "hex")), "{v}");
        }
    }

    #[test]
    fn close_codes_on_the_wire() {
        for code in 0..=u16::MAX {
            let mut frame = Vec::new();
            encode_frame_masked(Opcode::Close, &code.to_be_bytes(), MASK, &mut frame);
            let expected = match code {
                1000..=1003 | 1007..=1014 | 3000..=4999 => {
                    (vec![Message::Close(Some(code), String::new())], None)
                }
                _ => (vec![], Some(close_code::PROTOCOL_ERROR)),
            };
            assert_eq!(server(125, &[&frame]), expected, "{code}");
        }
    }

    #[test]
    fn unknown_opcodes_and_rsv_bits() {
        for first_byte in 0..=u8::MAX {
            let known = matches!(first_byte & 0x0F, 1 | 2 | 8 | 9 | 10) && first_byte & 0x70 == 0;
            let frame = [first_byte | 0x80, 0x80, 1, 2, 3, 4];
            let (_, error) = server(10, &[&frame]);
            assert_eq!(error.is_none(), known, "{first_byte:#x}");
        }
    }

    fn sample_stream() -> (Vec<u8>, Vec<Message>) {
        let mut stream = Vec::new();
        encode_frame_masked(Opcode::Text, "hé".as_bytes(), MASK, &mut stream);
        encode_frame_masked(Opcode::Ping, b"p", [1, 2, 3, 4], &mut stream);
        encode_frame_masked(
            Opcode::Continuation,
            "llo wörld, 12345".as_bytes(),
            [9, 8, 7, 6],
            &mut stream,
        );
        stream[0] &= 0x7F; // first fragment: FIN clear
        encode_frame_masked(Opcode::Binary, &[7; 300], [0xff; 4], &mut stream);
        encode_frame_masked(Opcode::Close, &[0x03, 0xe8, b'o', b'k'], MASK, &mut stream);
        let messages = vec![
            Message::Ping(b"p".to_vec()),
            Message::Text("héllo wörld, 12345".into()),
            Message::Binary(vec![7; 300]),
            Message::Close(Some(1000), "ok".into()),
        ];
        (stream, messages)
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let (stream, messages) = sample_stream();
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(
                server(1000, &[head, tail]),
                (messages.clone(), None),
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(server(1000, &bytes), (messages, None));
    }

    #[test]
    fn small_pieces_keep_the_buffer_small() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut stream = Vec::new();
        encode_frame_masked(Opcode::Binary, &payload, MASK, &mut stream);
        let mut decoder = Decoder::new(payload.len());
        for byte in &stream[..stream.len() - 1] {
            decoder.feed(&[*byte]);
            assert_eq!(decoder.next_message(), Ok(None));
            assert!(decoder.inner.buf.len() - decoder.inner.pos <= 14);
            assert!(decoder.inner.buf.len() <= 28);
        }
        decoder.feed(&stream[stream.len() - 1..]);
        assert_eq!(decoder.next_message(), Ok(Some(Message::Binary(payload))));
        // Pieces that always end one byte into the next header must not let the buffer grow.
        let mut stream = Vec::new();
        for _ in 0..10_000 {
            encode_frame_masked(Opcode::Text, b"abc", MASK, &mut stream);
        }
        let (first, rest) = stream.split_at(1);
        for piece in std::iter::once(first).chain(rest.chunks(9)) {
            decoder.feed(piece);
            while let Some(message) = decoder.next_message().unwrap() {
                assert_eq!(message, Message::Text("abc".into()));
            }
            assert!(decoder.inner.buf.len() <= 28);
        }
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(crate::permessage_deflate::Deflater::new(6, 15, false).compress(data, &mut out));
        out
    }

    fn deflate_server(max: usize, pieces: &[&[u8]]) -> (Vec<Message>, Option<u16>) {
        let (messages, err) = decode_all_deflate(true, max, pieces.iter().copied());
        (messages, err.map(|e| e.code))
    }

    #[test]
    fn compressed_messages_are_inflated_whole_or_in_fragments() {
        let text = "héllo wörld ".repeat(200);
        let mut stream = Vec::new();
        encode_compressed_masked(Opcode::Text, &deflated(text.as_bytes()), MASK, &mut stream);
        encode_frame_masked(Opcode::Text, b"plain", MASK, &mut stream);
        // A compressed message in three fragments, a ping between them; only the first has RSV1.
        let binary = deflated(&[9u8; 5000]);
        let (a, rest) = binary.split_at(3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let start = stream.len();
        encode_compressed_masked(Opcode::Binary, a, MASK, &mut stream);
        stream[start] &= 0x7F;
        let next = stream.len();
        encode_frame_masked(Opcode::Continuation, b, MASK, &mut stream);
        stream[next] &= 0x7F;
        encode_frame_masked(Opcode::Ping, b"p", MASK, &mut stream);
        encode_frame_masked(Opcode::Continuation, c, MASK, &mut stream);
        let expected = vec![
            Message::Text(text),
            Message::Text("plain".into()),
            Message::Ping(b"p".to_vec()),
            Message::Binary(vec![9; 5000]),
        ];
        for split in [0, 1, 7, stream.len() / 2, stream.len() - 1] {
            let (head, tail) = stream.split_at(split);
            assert_eq!(
                deflate_server(10_000, &[head, tail]),
                (expected.clone(), None)
            );
        }
    }

    #[test]
    fn rsv1_only_on_a_data_message_s_first_frame() {
        let payload = deflated(b"hello");
        let mut first = Vec::new();
        encode_compressed_masked(Opcode::Text, &payload, MASK, &mut first);
        first[0] &= 0x7F;
        for (opcode, lead) in [(Opcode::Continuation, true), (Opcode::Ping, false)] {
            let mut stream = if lead { first.clone() } else { Vec::new() };
            encode_compressed_masked(opcode, b"x", MASK, &mut stream);
            let (_, err) = deflate_server(100, &[&stream]);
            assert_eq!(err, Some(close_code::PROTOCOL_ERROR), "{opcode:?}");
        }
        let mut rsv2 = Vec::new();
        encode_frame_masked(Opcode::Text, b"x", MASK, &mut rsv2);
        rsv2[0] |= 0x20;
        assert_eq!(
            deflate_server(100, &[&rsv2]).1,
            Some(close_code::PROTOCOL_ERROR)
        );
        // Without the extension, RSV1 is an error as any RSV bit.
        let mut whole = Vec::new();
        encode_compressed_masked(Opcode::Text, &payload, MASK, &mut whole);
        assert_eq!(server(100, &[&whole]).1, Some(close_code::PROTOCOL_ERROR));
        assert_eq!(
            deflate_server(100, &[&whole]),
            (vec![Message::Text("hello".into())], None)
        );
    }

    #[test]
    fn a_bomb_is_too_big_and_garbage_is_invalid() {
        let mut bomb = Vec::new();
        encode_compressed_masked(
            Opcode::Binary,
            &deflated(&vec![0; 10_000_000]),
            MASK,
            &mut bomb,
        );
        assert!(bomb.len() < 20_000);
        assert_eq!(
            deflate_server(100_000, &[&bomb]),
            (vec![], Some(close_code::MESSAGE_TOO_BIG))
        );
        let mut garbage = Vec::new();
        encode_compressed_masked(Opcode::Binary, &[0xff; 40], MASK, &mut garbage);
        assert_eq!(
            deflate_server(100_000, &[&garbage]),
            (vec![], Some(close_code::INVALID_PAYLOAD))
        );
        // Inflated text that is not UTF-8 is 1007 as uncompressed text is.
        let mut latin1 = Vec::new();
        encode_compressed_masked(Opcode::Text, &deflated(&[0xe9; 10]), MASK, &mut latin1);
        assert_eq!(
            deflate_server(100, &[&latin1]),
            (vec![], Some(close_code::INVALID_PAYLOAD))
        );
    }

    #[test]
    fn error_is_sticky() {
        let mut decoder = Decoder::new(100);
        decoder.feed(&[0x81, 0x05]); // unmasked
        let err = decoder.next_message().unwrap_err();
        assert_eq!(err.code, close_code::PROTOCOL_ERROR);
        let mut good = Vec::new();
        encode_frame_masked(Opcode::Text, b"hi", MASK, &mut good);
        decoder.feed(&good);
        assert_eq!(decoder.next_message(), Err(err.clone()));
        assert_eq!(decoder.next_message(), Err(err));
    }

    #[test]
    fn mask_matches_bytewise_xor_at_every_phase_and_length() {
        let mask = [0xa1, 0xb2, 0xc3, 0xd4];
        for phase in 0..4 {
            for len in 0..40 {
                let mut data: Vec<u8> = (0..len as u8).collect();
                apply_mask(&mut data, mask, phase);
                let expected: Vec<u8> = (0..len).map(|i| i as u8 ^ mask[(i + phase) % 4]).collect();
                assert_eq!(data, expected);
            }
        }
    }

    #[test]
    fn encode_close_never_exceeds_the_control_limit() {
        let mut out = Vec::new();
        encode_close(close_code::GOING_AWAY, &"€".repeat(100), &mut out);
        assert_eq!(
            client(1, &[&out]),
            (vec![Message::Close(Some(1001), "€".repeat(41))], None)
        );
    }

    fn any_message() -> impl Strategy<Value = Message> {
        let control = prop::collection::vec(any::<u8>(), 0..=125);
        prop_oneof![
            any::<String>().prop_map(Message::Text),
            prop::collection::vec(any::<u8>(), 0..70_000).prop_map(Message::Binary),
            control.clone().prop_map(Message::Ping),
            control.prop_map(Message::Pong),
            Just(Message::Close(None, String::new())),
            (
                prop_oneof![1000..=1003u16, 1007..=1014u16, 3000..=4999u16],
                "[a-zé€]{0,30}"
            )
                .prop_map(|(code, reason)| Message::Close(Some(code), reason)),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            split in 0usize..600,
            max in 0usize..300,
        ) {
            let (head, tail) = bytes.split_at(split.min(bytes.len()));
            server(max, &[head, tail]);
            client(max, &[head, tail]);
        }

        #[test]
        fn mutated_streams_never_panic(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (mut stream, _) = sample_stream();
            let i = at.index(stream.len());
            stream[i] ^= flip;
            server(1000, &[&stream]);
        }

        #[test]
        fn masked_frames_round_trip(
            message in any_message(),
            mask in any::<[u8; 4]>(),
            split in any::<prop::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            encode_message(&message, Some(mask), &mut stream);
            let (head, tail) = stream.split_at(split.index(stream.len() + 1));
            prop_assert_eq!(server(70_000, &[head, tail]), (vec![message], None));
        }

        #[test]
        fn server_frames_round_trip(
            message in any_message(),
            split in any::<prop::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            encode_message(&message, None, &mut stream);
            let (head, tail) = stream.split_at(split.index(stream.len() + 1));
            prop_assert_eq!(client(70_000, &[head, tail]), (vec![message], None));
        }
    }
}
