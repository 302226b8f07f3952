//! Engine.IO v4 packets and the long-polling payload encoding.
//!
//! On WebSocket a packet is one frame: text `<type><data>`, or a binary frame holding a binary message's bytes.
//! On long-polling, packets are joined by the record separator 0x1E, and binary messages are written as `b` then
//! base64 (standard alphabet, padded).
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub const SEPARATOR: u8 = 0x1e;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Open,
    Close,
    Ping,
    Pong,
    Message,
    Upgrade,
    Noop,
}

impl PacketType {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    pub fn as_byte(self) -> u8 {
        match self {
            Self::Open => b'0',
            Self::Close => b'1',
            Self::Ping => b'2',
            Self::Pong => b'3',
            Self::Message => b'4',
            Self::Upgrade => b'5',
            Self::Noop => b'6',
        }
    }
}

/// A message's payload: Engine.IO keeps text and binary apart on every transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
}

impl Data {
    /// The message's bytes: its text's UTF-8, or its binary data.
    pub fn len(&self) -> usize {
        match self {
            Data::Text(t) => t.len(),
            Data::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// The handshake data, JSON.
    Open(String),
    Close,
    /// The payload is empty, or `probe` during an upgrade.
    Ping(String),
    Pong(String),
    Message(Data),
    Upgrade,
    Noop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownType,
    InvalidBase64,
    InvalidUtf8,
    /// An Engine.IO v3 payload's length prefix is not a number, or not the length of what follows.
    BadLength,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty packet",
            Self::UnknownType => "unknown packet type",
            Self::InvalidBase64 => "invalid base64 in a binary packet",
            Self::InvalidUtf8 => "payload is not UTF-8",
            Self::BadLength => "bad length in an Engine.IO v3 payload",
        })
    }
}

impl std::error::Error for DecodeError {}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// Decode a WebSocket text frame or one segment of a polling payload. `b<base64>` is a binary message on
    /// both (Node's parser accepts it in a text frame too).
    pub fn decode_text(s: &str) -> Result<Packet, DecodeError> {
        if let Some(b64) = s.strip_prefix('b') {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| DecodeError::InvalidBase64)?;
            return Ok(Packet::Message(Data::Binary(bytes)));
        }
        let first = *s.as_bytes().first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_byte(first).ok_or(DecodeError::UnknownType)?;
        // The type is one ASCII byte, so index 1 is a char boundary.
        let data = &s[1..];
        Ok(match kind {
            PacketType::Open => Packet::Open(data.to_owned()),
            PacketType::Close => Packet::Close,
            PacketType::Ping => Packet::Ping(data.to_owned()),
            PacketType::Pong => Packet::Pong(data.to_owned()),
            PacketType::Message => Packet::Message(Data::Text(data.to_owned())),
            PacketType::Upgrade => Packet::Upgrade,
            PacketType::Noop => Packet::Noop,
        })
    }

    /// Write the text form used on WebSocket text frames. Binary messages have no text form on WebSocket (they
    /// go in a binary frame), so they are written as on polling.
    pub fn encode_text(&self, out: &mut Vec<u8>) {
        out.push(self.packet_type().as_byte());
        match self {
            Self::Open(s) | Self::Ping(s) | Self::Pong(s) | Self::Message(Data::Text(s)) => {
                out.extend_from_slice(s.as_bytes())
            }
            Self::Message(Data::Binary(b)) => {
                out.pop();
                encode_binary_segment(b, out);
            }
            Self::Close | Self::Upgrade | Self::Noop => {}
        }
    }
}

/// `b<base64>`: a binary message inside a polling payload.
pub fn encode_binary_segment(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'b');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// How many bytes `push_payload_segment` writes for `packet`, separator aside: what a long-polling session's
/// queue counts against `Config::max_buffered`.
pub fn segment_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(Data::Binary(b)) => {
            1 + base64::encoded_len(b.len(), true).unwrap_or(usize::MAX - 1)
        }
        Packet::Open(s) | Packet::Ping(s) | Packet::Pong(s) | Packet::Message(Data::Text(s)) => {
            1 + s.len()
        }
        Packet::Close | Packet::Upgrade | Packet::Noop => 1,
    }
}

/// Append one packet to a polling payload that may already hold packets.
pub fn push_payload_segment(packet: &Packet, out: &mut Vec<u8>) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    packet.encode_text(out);
}

/// Decode a polling payload (the body of a POST).
pub fn decode_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    body.split(|b| *b == SEPARATOR)
        .map(decode_segment)
        .collect()
}

fn decode_segment(segment: &[u8]) -> Result<Packet, DecodeError> {
    let text = std::str::from_utf8(segment).map_err(|_| DecodeError::InvalidUtf8)?;
    Packet::decode_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn packet_from_json(v: &Value) -> Packet {
        let data = v.get("data").and_then(Value::as_str).unwrap_or("");
        match v["type"].as_str().unwrap() {
            "open" => Packet::Open(data.into()),
            "close" => Packet::Close,
            "ping" => Packet::Ping(data.into()),
            "pong" => Packet::Pong(data.into()),
            "message" => match v.get("binary").and_then(Value::as_str) {
                Some(h) => Packet::Message(Data::Binary(hex(h))),
                None => Packet::Message(Data::Text(data.into())),
            },
            "upgrade" => Packet::Upgrade,
            "noop" => Packet::Noop,
            other => panic!("unknown type {other}"),
        }
    }

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/vectors/engineio_packets.json")).unwrap()
    }

    /// The engine logs these: text a reader understands, not a variant name.
    #[test]
    fn decode_errors_say_what_is_wrong() {
        let e: Box<dyn std::error::Error> = Box::new(decode_payload(b"").unwrap_err());
        assert_eq!(e.to_string(), "empty packet");
        assert_eq!(
            Packet::decode_text("9").unwrap_err().to_string(),
            "unknown packet type"
        );
        assert_eq!(
            decode_payload(b"bnot base64!").unwrap_err().to_string(),
            "invalid base64 in a binary packet"
        );
    }

    #[test]
    fn payload_vectors_decode_and_encode() {
        for case in vectors()["payloads"].as_array().unwrap() {
            let wire = case["wire"].as_str().unwrap().replace("\\x1e", "\u{1e}");
            let expected: Vec<Packet> = case["packets"]
                .as_array()
                .unwrap()
                .iter()
                .map(packet_from_json)
                .collect();
            assert_eq!(decode_payload(wire.as_bytes()).unwrap(), expected, "{wire}");
            let mut out = Vec::new();
            for p in &expected {
                push_payload_segment(p, &mut out);
            }
            assert_eq!(out, wire.as_bytes());
        }
    }

    #[test]
    fn invalid_payload_vectors_are_errors() {
        for case in vectors()["invalid_payloads"].as_array().unwrap() {
            let wire = case.as_str().unwrap().replace("\\x1e", "\u{1e}");
            assert!(decode_payload(wire.as_bytes()).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn text_frames() {
        assert_eq!(
            Packet::decode_text("2probe"),
            Ok(Packet::Ping("probe".into()))
        );
        assert_eq!(Packet::decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(
            Packet::decode_text("4€"),
            Ok(Packet::Message(Data::Text("€".into())))
        );
        assert_eq!(Packet::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode_text("7"), Err(DecodeError::UnknownType));
        assert_eq!(Packet::decode_text("€"), Err(DecodeError::UnknownType));
    }

    proptest! {
        #[test]
        fn payload_round_trip(msgs in proptest::collection::vec(
            prop_oneof![
                "[^\u{1e}]*".prop_map(|s| Packet::Message(Data::Text(s))),
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Packet::Message(Data::Binary(b))),
                Just(Packet::Noop), Just(Packet::Close), Just(Packet::Ping("probe".into())),
            ], 1..8)) {
            let mut out = Vec::new();
            for p in &msgs { push_payload_segment(p, &mut out); }
            // What a polling queue counts is what the payload holds.
            let counted: usize = msgs.iter().map(segment_len).sum::<usize>() + msgs.len() - 1;
            prop_assert_eq!(counted, out.len());
            prop_assert_eq!(decode_payload(&out).unwrap(), msgs);
        }

        #[test]
        fn random_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload(&body);
        }
    }
}
