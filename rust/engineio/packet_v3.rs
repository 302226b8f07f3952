//! Engine.IO v3 packets and payloads (Node's `parser-v3`, engine.io-parser 2.x), for socket.io-client 2.x.
//!
//! ```text
//! packet         <type digit><data>; a binary message is its bytes behind the type *byte* (4) in a binary
//!                WebSocket frame, or `b4<base64>` where binary is not supported (the `b64` query parameter)
//! text payload   <length>:<packet> repeated; the length counts UTF-16 code units (JavaScript's string length)
//! binary payload <0 string | 1 binary><length as decimal digit bytes><255><packet> repeated, when the
//!                client supports binary and the payload holds a binary message (application/octet-stream);
//!                a string packet's length counts its UTF-8 bytes, a binary one's the type byte and the data
//! ```
//! The packets are v4's `Packet`: only their encoding differs.
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::packet::{Data, DecodeError, Packet};

/// The type byte of a message in binary form.
const MESSAGE: u8 = 4;
/// Ends a length in a binary payload.
const LENGTH_END: u8 = 255;
/// Digits of a length: past 20, no usize holds it (Node gives up past 310).
const MAX_DIGITS: usize = 20;

/// A v3 text packet: a WebSocket text frame or a payload's segment. `b4<base64>` is a binary message.
pub fn decode_text(s: &str) -> Result<Packet, DecodeError> {
    match s.strip_prefix('b') {
        Some(rest) => {
            let b64 = rest.strip_prefix('4').ok_or(DecodeError::UnknownType)?;
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| DecodeError::InvalidBase64)?;
            Ok(Packet::Message(Data::Binary(bytes)))
        }
        // Apart from `b`, the text form is v4's.
        None => Packet::decode_text(s),
    }
}

/// A v3 binary packet: a WebSocket binary frame or a binary payload's segment, its type byte first. Only a
/// message has a use for binary data.
pub fn decode_binary(bytes: &[u8]) -> Result<Packet, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&MESSAGE, data)) => Ok(Packet::Message(Data::Binary(data.to_vec()))),
        Some(_) => Err(DecodeError::UnknownType),
    }
}

/// A binary message as the WebSocket message of a v3 session: its bytes behind the type byte, or `b4<base64>`
/// for a client without binary support.
pub fn ws_binary(bytes: &[u8], binary: bool) -> Data {
    if binary {
        let mut framed = Vec::with_capacity(1 + bytes.len());
        framed.push(MESSAGE);
        framed.extend_from_slice(bytes);
        return Data::Binary(framed);
    }
    let mut text = Vec::with_capacity(2 + base64::encoded_len(bytes.len(), true).unwrap_or(0));
    text.push(b'b');
    text.push(b'4');
    text.extend_from_slice(STANDARD.encode(bytes).as_bytes());
    // Base64 and the two ASCII bytes before it are UTF-8.
    Data::Text(String::from_utf8(text).unwrap_or_default())
}

/// JavaScript's length of `s`: its UTF-16 code units.
fn js_len(s: &str) -> usize {
    if s.is_ascii() {
        return s.len();
    }
    s.chars().map(char::len_utf16).sum()
}

/// The first `units` UTF-16 code units of `s` and what follows; None when `s` is shorter or the cut would
/// split a surrogate pair.
fn split_js(s: &str, units: usize) -> Option<(&str, &str)> {
    let mut counted = 0;
    for (i, c) in s.char_indices() {
        if counted == units {
            return Some(s.split_at(i));
        }
        counted += c.len_utf16();
        if counted > units {
            return None;
        }
    }
    (counted == units).then_some((s, ""))
}

/// Decode a text payload (a POST body without `application/octet-stream`). One bad segment fails the whole
/// payload, as in Node ("parser error - ignoring payload"); empty segments carry nothing.
pub fn decode_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut rest = std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?;
    if rest.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let (digits, after) = rest.split_once(':').ok_or(DecodeError::BadLength)?;
        if !digits.bytes().all(|d| d.is_ascii_digit()) {
            return Err(DecodeError::BadLength);
        }
        let units = parse_length(digits.bytes().map(|d| d - b'0'))?;
        let (segment, after) = split_js(after, units).ok_or(DecodeError::BadLength)?;
        if !segment.is_empty() {
            packets.push(decode_text(segment)?);
        }
        rest = after;
    }
    Ok(packets)
}

/// A length from its decimal digits' values (checked by the caller: ASCII in text, values in binary).
fn parse_length(digits: impl ExactSizeIterator<Item = u8>) -> Result<usize, DecodeError> {
    if digits.len() == 0 || digits.len() > MAX_DIGITS {
        return Err(DecodeError::BadLength);
    }
    let mut n: usize = 0;
    for d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d)))
            .ok_or(DecodeError::BadLength)?;
    }
    Ok(n)
}

/// Decode a binary payload (a POST body sent as `application/octet-stream`).
pub fn decode_binary_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut rest = body;
    let mut packets = Vec::new();
    while let Some((&kind, after)) = rest.split_first() {
        let end = (after.iter().take(MAX_DIGITS + 1))
            .position(|b| *b == LENGTH_END)
            .ok_or(DecodeError::BadLength)?;
        let digits = &after[..end];
        if digits.iter().any(|d| *d > 9) {
            return Err(DecodeError::BadLength);
        }
        let len = parse_length(digits.iter().copied())?;
        let after = &after[end + 1..];
        if after.len() < len {
            return Err(DecodeError::BadLength);
        }
        let (segment, after) = after.split_at(len);
        packets.push(match kind {
            0 => decode_text(std::str::from_utf8(segment).map_err(|_| DecodeError::InvalidUtf8)?)?,
            _ => decode_binary(segment)?,
        });
        rest = after;
    }
    Ok(packets)
}

fn has_binary(packets: &[Packet]) -> bool {
    packets
        .iter()
        .any(|p| matches!(p, Packet::Message(Data::Binary(_))))
}

/// Encode a payload for a GET. `binary`: the client supports binary (no `b64`); with a binary message in
/// it the payload is binary (true is returned: it goes out as `application/octet-stream`).
pub fn encode_payload(packets: &[Packet], binary: bool, out: &mut Vec<u8>) -> bool {
    if binary && has_binary(packets) {
        packets.iter().for_each(|p| push_binary_segment(p, out));
        return true;
    }
    if packets.is_empty() {
        out.extend_from_slice(b"0:");
    }
    let mut text = Vec::new();
    for p in packets {
        text.clear();
        match p {
            Packet::Message(Data::Binary(b)) => {
                if let Data::Text(t) = ws_binary(b, false) {
                    text.extend_from_slice(t.as_bytes());
                }
            }
            other => other.encode_text(&mut text),
        }
        // Encoded packets are UTF-8: their text, or base64.
        let units = std::str::from_utf8(&text).map_or(text.len(), js_len);
        out.extend_from_slice(units.to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(&text);
    }
    false
}

fn push_binary_segment(packet: &Packet, out: &mut Vec<u8>) {
    let (kind, len) = match packet {
        Packet::Message(Data::Binary(b)) => (1, 1 + b.len()),
        other => (0, super::packet::segment_len(other)),
    };
    out.push(kind);
    out.extend(len.to_string().bytes().map(|d| d - b'0'));
    out.push(LENGTH_END);
    match packet {
        Packet::Message(Data::Binary(b)) => {
            out.push(MESSAGE);
            out.extend_from_slice(b);
        }
        other => other.encode_text(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::packet::PacketType;
    use proptest::prelude::*;

    fn msg(s: &str) -> Packet {
        Packet::Message(Data::Text(s.into()))
    }

    fn bin(b: &[u8]) -> Packet {
        Packet::Message(Data::Binary(b.to_vec()))
    }

    /// engine.io-parser 2.x's own examples and what socket.io-client 2.x sends.
    #[test]
    fn text_payloads_as_node_writes_them() {
        let mut out = Vec::new();
        assert!(!encode_payload(
            &[msg("hello world"), Packet::Pong(String::new())],
            true,
            &mut out
        ));
        assert_eq!(out, b"12:4hello world1:3");
        assert_eq!(
            decode_payload(b"1:26:4hello").unwrap(),
            [Packet::Ping(String::new()), msg("hello")]
        );
        // Lengths count UTF-16 code units: "€" is one, "😀" two, though three and four UTF-8 bytes.
        out.clear();
        encode_payload(&[msg("€😀")], true, &mut out);
        assert_eq!(out, "4:4€😀".as_bytes());
        assert_eq!(decode_payload("4:4€😀".as_bytes()).unwrap(), [msg("€😀")]);
        // An empty payload is "0:"; empty segments carry nothing.
        out.clear();
        encode_payload(&[], true, &mut out);
        assert_eq!(out, b"0:");
        assert_eq!(decode_payload(b"0:1:6").unwrap(), [Packet::Noop]);
        assert_eq!(
            decode_payload(b"1:1").unwrap()[0].packet_type(),
            PacketType::Close
        );
    }

    #[test]
    fn binary_without_support_is_base64_in_text() {
        let mut out = Vec::new();
        assert!(!encode_payload(
            &[bin(&[1, 2, 3]), msg("x")],
            false,
            &mut out
        ));
        assert_eq!(out, b"6:b4AQID2:4x");
        assert_eq!(decode_payload(b"6:b4AQID").unwrap(), [bin(&[1, 2, 3])]);
        assert_eq!(ws_binary(&[1, 2, 3], false), Data::Text("b4AQID".into()));
        assert_eq!(decode_text("b4AQID").unwrap(), bin(&[1, 2, 3]));
    }

    #[test]
    fn binary_payloads_as_node_writes_them() {
        let mut out = Vec::new();
        assert!(encode_payload(&[msg("€"), bin(&[1, 2, 3])], true, &mut out));
        // "4€" is four UTF-8 bytes; the binary packet is the type byte and three bytes.
        let mut want = vec![0, 4, 255, b'4', 0xe2, 0x82, 0xac, 1, 4, 255, 4, 1, 2, 3];
        assert_eq!(out, want);
        assert_eq!(
            decode_binary_payload(&want).unwrap(),
            [msg("€"), bin(&[1, 2, 3])]
        );
        // A length of ten bytes or more is several digit bytes.
        want = vec![1, 1, 1, 255, 4];
        want.extend([7; 10]);
        assert_eq!(decode_binary_payload(&want).unwrap(), [bin(&[7; 10])]);
        assert_eq!(ws_binary(&[9], true), Data::Binary(vec![4, 9]));
        assert_eq!(decode_binary(&[4, 9]).unwrap(), bin(&[9]));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b""[..],
            b"5:4hi",
            b"2:4hi",
            b"x:4h",
            b"1:9",
            b"2:4h:",
            b"3",
            b":",
            b"99999999999999999999999:4",
            b"2:b5",
            b"5:b4!!!",
        ] {
            assert!(
                decode_payload(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A cut inside a surrogate pair is not a packet.
        assert!(decode_payload("2:4😀".as_bytes()).is_err());
        for bad in [
            &[][..],
            &[1, 2, 255, 4],
            &[0, 1, 255],
            &[0, 10, 255, b'4'],
            &[
                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 255,
            ],
            &[0, 1, 255, 0xff],
            &[1, 2, 255, 3, 1],
            &[0, 1],
        ] {
            assert!(decode_binary_payload(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_binary(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_binary(&[2, 1]), Err(DecodeError::UnknownType));
    }

    fn packets() -> impl Strategy<Value = Vec<Packet>> {
        proptest::collection::vec(
            prop_oneof![
                ".*".prop_map(|s| Packet::Message(Data::Text(s))),
                proptest::collection::vec(any::<u8>(), 0..64)
                    .prop_map(|b| Packet::Message(Data::Binary(b))),
                Just(Packet::Noop),
                Just(Packet::Close),
                Just(Packet::Pong(String::new())),
            ],
            1..8,
        )
    }

    proptest! {
        #[test]
        fn payload_round_trip(msgs in packets(), binary in any::<bool>()) {
            let mut out = Vec::new();
            let is_binary = encode_payload(&msgs, binary, &mut out);
            let back = if is_binary { decode_binary_payload(&out) } else { decode_payload(&out) };
            prop_assert_eq!(back.unwrap(), msgs);
        }

        #[test]
        fn random_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload(&body);
            let _ = decode_binary_payload(&body);
            let _ = decode_binary(&body);
        }
    }
}
