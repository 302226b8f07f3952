//! Socket.IO v5 packets as text: `<type>[<attachments>-][<nsp>,][<id>][<json>]`.
//!
//! Decoding follows `socket.io-parser` 4.2.x (`Decoder.decodeString` + `Decoder.isPayloadValid`), the version
//! `socket.io` 4.8 installs, but reads the header strictly (ASCII digits only) where the JavaScript code leans on
//! `Number()` coercion. The JSON payload is validated, never re-serialized: `data` is the text as received.

use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt::{self, Write as _};

/// `socket.io-parser`'s default `maxAttachments` (a `socket.io` server builds its `Decoder` with no options).
pub const MAX_ATTACHMENTS: usize = 10;
/// JavaScript's `Number.MAX_SAFE_INTEGER`: larger ids come back altered from a JavaScript peer.
pub const MAX_ID: u64 = (1 << 53) - 1;
/// Event names `socket.io-parser` refuses in EVENT / BINARY_EVENT packets.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// The type from its wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// BINARY_EVENT and BINARY_ACK carry an attachment count and are followed by binary messages.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketType,
    /// "/" when absent on the wire.
    pub nsp: String,
    /// The ack id.
    pub id: Option<u64>,
    /// Only for BinaryEvent / BinaryAck (1..=MAX_ATTACHMENTS after `decode`).
    pub attachments: usize,
    /// The JSON text exactly as received (not re-serialized), None if absent.
    pub data: Option<String>,
}

impl Packet {
    /// A CONNECT to `nsp` without data.
    pub fn connect(nsp: &str) -> Self {
        Packet {
            kind: PacketType::Connect,
            nsp: nsp.to_owned(),
            id: None,
            attachments: 0,
            data: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownType,
    BadAttachments,
    /// Not produced by `decode`: `socket.io-parser` takes anything from a leading "/" up to the first "," as
    /// the namespace. Kept for callers that judge namespace names.
    BadNamespace,
    BadId,
    InvalidJson,
    InvalidPayload,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty packet",
            Self::UnknownType => "unknown packet type",
            Self::BadAttachments => "illegal attachments",
            Self::BadNamespace => "invalid namespace",
            Self::BadId => "invalid ack id",
            Self::InvalidJson => "invalid JSON payload",
            Self::InvalidPayload => "invalid payload",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decode one Socket.IO packet carried in an Engine.IO text message, with the default attachment limit.
///
/// Validation as `socket.io-parser` 4.2.7: CONNECT data is absent or a JSON object; DISCONNECT has no data;
/// EVENT / BINARY_EVENT data is a JSON array whose first element is a number or a non-reserved string; ACK /
/// BINARY_ACK data is a JSON array; CONNECT_ERROR data is an object or a string; the attachment count (binary
/// types only) is 1..=MAX_ATTACHMENTS; the id is all digits and at most MAX_ID. Stricter than the parser, as
/// the spec says the payload is mandatory: EVENT, ACK, CONNECT_ERROR and the binary types without data are
/// `InvalidPayload`.
pub fn decode(s: &str) -> Result<Packet, DecodeError> {
    decode_with_limit(s, MAX_ATTACHMENTS)
}

/// `decode` with the `maxAttachments` option of `socket.io-parser`'s `Decoder`.
pub fn decode_with_limit(s: &str, max_attachments: usize) -> Result<Packet, DecodeError> {
    decode_inner(s, max_attachments, true).map(|(p, _)| p)
}

/// `decode` as Node's server reads packets off the wire, so the caller can answer as Node does instead of
/// closing the session: a packet without data passes whatever its type (`data: None`), and an id over MAX_ID
/// is returned beside the packet (whose `id` is then None) as the JavaScript number it becomes there.
pub fn decode_lenient(s: &str) -> Result<(Packet, Option<f64>), DecodeError> {
    decode_inner(s, MAX_ATTACHMENTS, false)
}

/// How JavaScript writes a non-negative number (`String(n)`), for echoing a client's id over MAX_ID as Node
/// does: `Number(digits)` rounds it to a double, which is written back in the shortest form.
pub fn js_number(n: f64) -> String {
    if n.is_infinite() {
        "Infinity".to_owned()
    } else if n < 1e21 {
        format!("{n}")
    } else {
        format!("{n:e}").replacen('e', "e+", 1)
    }
}

fn decode_inner(
    s: &str,
    max_attachments: usize,
    strict: bool,
) -> Result<(Packet, Option<f64>), DecodeError> {
    let bytes = s.as_bytes();
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(DecodeError::UnknownType)?;
    let mut pos = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let (n, digits) = read_number(bytes, pos, max_attachments as u64);
        let n = n.ok_or(DecodeError::BadAttachments)?;
        if digits == 0 || n == 0 || bytes.get(pos + digits) != Some(&b'-') {
            return Err(DecodeError::BadAttachments);
        }
        attachments = n as usize;
        pos += digits + 1;
    }

    // "/" and "," are ASCII, so both ends of the namespace are char boundaries whatever it contains.
    let mut nsp = "/";
    if bytes.get(pos) == Some(&b'/') {
        let rest = s.get(pos..).unwrap_or_default();
        match rest.find(',') {
            Some(comma) => {
                nsp = rest.get(..comma).unwrap_or_default();
                pos += comma + 1;
            }
            None => {
                nsp = rest;
                pos = bytes.len();
            }
        }
    }

    let (id, digits) = read_number(bytes, pos, MAX_ID);
    let mut js_id = None;
    let id = match (id, digits) {
        (_, 0) => None,
        (Some(id), _) => Some(id),
        (None, _) if !strict => {
            // Digits only, so this parse cannot fail; f64 parsing rounds as JavaScript's Number() does.
            js_id = s.get(pos..pos + digits).and_then(|d| d.parse().ok());
            None
        }
        (None, _) => return Err(DecodeError::BadId),
    };
    pos += digits;

    let data = s.get(pos..).filter(|d| !d.is_empty());
    match data {
        None if !strict || matches!(kind, PacketType::Connect | PacketType::Disconnect) => {}
        None => return Err(DecodeError::InvalidPayload),
        Some(_) if kind == PacketType::Disconnect => return Err(DecodeError::InvalidPayload),
        Some(text) => validate_payload(kind, text)?,
    }

    let packet = Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        attachments,
        data: data.map(str::to_owned),
    };
    Ok((packet, js_id))
}

/// Reads the ASCII digits at `pos`: (value, or None when it exceeds `max`; number of digits). Leading zeros
/// are accepted as `Number("012")` does.
fn read_number(bytes: &[u8], pos: usize, max: u64) -> (Option<u64>, usize) {
    let digits = bytes
        .get(pos..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let mut value = Some(0u64);
    for &b in bytes.get(pos..pos + digits).unwrap_or_default() {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .filter(|&v| v <= max);
    }
    (value, digits)
}

/// Arrays (EVENT, ACK) are checked element by element as raw text, building no values: their arguments are
/// parsed once, by whoever consumes them (`split_event`, then Python).
fn validate_payload(kind: PacketType, text: &str) -> Result<(), DecodeError> {
    let valid = match kind {
        PacketType::Event | PacketType::BinaryEvent => split_event(text)?.is_some(),
        PacketType::Ack | PacketType::BinaryAck => raw_array(text)?.is_some(),
        _ => {
            let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::InvalidJson)?;
            match kind {
                PacketType::Connect => value.is_object(),
                PacketType::ConnectError => value.is_string() || value.is_object(),
                _ => false,
            }
        }
    };
    valid.then_some(()).ok_or(DecodeError::InvalidPayload)
}

/// The elements of a JSON array as raw text: Err(InvalidJson) for text that is not JSON, Ok(None) for JSON that
/// is not an array.
fn raw_array(text: &str) -> Result<Option<Vec<&RawValue>>, DecodeError> {
    match serde_json::from_str(text) {
        Ok(items) => Ok(Some(items)),
        Err(_) => match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Ok(None),
            Err(_) => Err(DecodeError::InvalidJson),
        },
    }
}

/// An EVENT's data taken apart: the event name and the JSON array of the arguments after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventArgs {
    /// None when the first element is a number (which `socket.io-parser` allows): `args` is then the whole array.
    pub name: Option<String>,
    /// A JSON array, as received but for the name taken out.
    pub args: String,
    /// How many elements `args` has.
    pub argc: usize,
}

/// Take an EVENT's data apart in one pass over the raw elements: Err(InvalidJson) for text that is not JSON,
/// Ok(None) for JSON that is no valid event (not an array, no name, a reserved name).
pub fn split_event(data: &str) -> Result<Option<EventArgs>, DecodeError> {
    let Some(items) = raw_array(data)? else {
        return Ok(None);
    };
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let raw = first.get();
    let name = match raw.as_bytes()[0] {
        b'"' => serde_json::from_str::<String>(raw).map_err(|_| DecodeError::InvalidJson)?,
        b'-' | b'0'..=b'9' => {
            return Ok(Some(EventArgs {
                name: None,
                args: data.to_owned(),
                argc: items.len(),
            }))
        }
        _ => return Ok(None),
    };
    if RESERVED_EVENTS.contains(&name.as_str()) {
        return Ok(None);
    }
    let args = match items.get(1) {
        // The raw elements borrow from `data`: where the second starts is an offset into it.
        Some(second) => {
            let start = second.get().as_ptr() as usize - data.as_ptr() as usize;
            let mut args = String::with_capacity(data.len() - start + 1);
            args.push('[');
            args.push_str(&data[start..]);
            args
        }
        None => "[]".to_owned(),
    };
    Ok(Some(EventArgs {
        name: Some(name),
        args,
        argc: items.len() - 1,
    }))
}

/// Encode as `socket.io-parser`'s Encoder would for the same fields: "<type>[<attachments>-][<nsp>,][<id>][<data>]",
/// the nsp part omitted when it is "/" (or empty). `attachments` is written for the binary types only.
pub fn encode(p: &Packet, out: &mut String) {
    let attachments = p.kind.is_binary().then_some(p.attachments);
    let id = p.id.as_ref().map(|id| id as &dyn fmt::Display);
    encode_parts(p.kind, attachments, &p.nsp, id, p.data.as_deref(), out);
}

/// Fast path for emits: an EVENT (BINARY_EVENT when attachments > 0) whose data is serialized JSON array text.
pub fn encode_event(
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    data_json: &str,
    out: &mut String,
) {
    let (kind, attachments) = match attachments {
        0 => (PacketType::Event, None),
        n => (PacketType::BinaryEvent, Some(n)),
    };
    let id = id.as_ref().map(|id| id as &dyn fmt::Display);
    encode_parts(kind, attachments, nsp, id, Some(data_json), out);
}

/// Fast path for acks: an ACK (BINARY_ACK when attachments > 0) whose data is serialized JSON array text. The
/// id is a number, or the text `js_number` made of a client's id over MAX_ID.
pub fn encode_ack(
    nsp: &str,
    id: &dyn fmt::Display,
    attachments: usize,
    data_json: &str,
    out: &mut String,
) {
    let (kind, attachments) = match attachments {
        0 => (PacketType::Ack, None),
        n => (PacketType::BinaryAck, Some(n)),
    };
    encode_parts(kind, attachments, nsp, Some(id), Some(data_json), out);
}

pub(super) fn encode_parts(
    kind: PacketType,
    attachments: Option<usize>,
    nsp: &str,
    id: Option<&dyn fmt::Display>,
    data: Option<&str>,
    out: &mut String,
) {
    out.reserve(4 + nsp.len() + data.map_or(0, str::len) + 20);
    out.push(char::from(b'0' + kind as u8));
    // Writing to a String cannot fail.
    if let Some(n) = attachments {
        let _ = write!(out, "{n}-");
    }
    if !nsp.is_empty() && nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
    if let Some(data) = data {
        out.push_str(data);
    }
}

/// Reassembly of a BINARY_EVENT / BINARY_ACK: the header packet then `attachments` binary messages.
///
/// `decode` never yields a binary packet with `attachments == 0` (socket.io-parser >= 4.2.5 throws "Illegal
/// attachments"; 4.2.4 emitted it at once). A caller holding such a packet treats it as complete immediately and
/// builds no reassembly; were one built, the first `push` completes it. Like socket.io-parser's Decoder, the
/// caller treats a text packet arriving while a reassembly is pending, or a binary message with none pending, as
/// a protocol error. Placeholders (`{"_placeholder":true,"num":N}`) are not inspected here.
#[derive(Debug)]
pub struct BinaryReassembly {
    packet: Option<Packet>,
    attachments: Vec<Vec<u8>>,
}

impl BinaryReassembly {
    pub fn new(packet: Packet) -> Self {
        let capacity = packet.attachments.min(MAX_ATTACHMENTS);
        Self {
            packet: Some(packet),
            attachments: Vec::with_capacity(capacity),
        }
    }

    /// Attachments still expected; 0 once the packet was handed out.
    pub fn remaining(&self) -> usize {
        self.packet
            .as_ref()
            .map_or(0, |p| p.attachments.saturating_sub(self.attachments.len()))
    }

    /// Returns Some((packet, attachments)) when the last attachment arrived. Pushes after that return None and
    /// drop the bytes.
    pub fn push(&mut self, attachment: Vec<u8>) -> Option<(Packet, Vec<Vec<u8>>)> {
        let expected = self.packet.as_ref()?.attachments;
        self.attachments.push(attachment);
        if self.attachments.len() < expected {
            return None;
        }
        let packet = self.packet.take()?;
        Some((packet, std::mem::take(&mut self.attachments)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTORS: &str = include_str!("../../tests/vectors/socketio_packets.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vector file is JSON")
    }

    fn error_name(e: &DecodeError) -> String {
        format!("{e:?}")
    }

    fn encoded(p: &Packet) -> String {
        let mut out = String::new();
        encode(p, &mut out);
        out
    }

    #[test]
    fn decode_vectors() {
        let v = vectors();
        let cases = v["decode"].as_array().expect("decode list");
        assert!(cases.len() >= 40);
        for case in cases {
            let wire = case["wire"].as_str().expect("wire");
            let got = decode(wire);
            if let Some(err) = case.get("error") {
                let got = got.expect_err(wire);
                assert_eq!(error_name(&got), err.as_str().unwrap(), "{wire:?}");
                continue;
            }
            let p = got.unwrap_or_else(|e| panic!("{wire:?}: {e:?}"));
            assert_eq!(p.kind as u64, case["type"].as_u64().unwrap(), "{wire:?}");
            assert_eq!(p.nsp, case["nsp"].as_str().unwrap(), "{wire:?}");
            assert_eq!(p.id, case["id"].as_u64(), "{wire:?}");
            assert_eq!(
                p.attachments as u64,
                case["attachments"].as_u64().unwrap(),
                "{wire:?}"
            );
            assert_eq!(p.data.as_deref(), case["data"].as_str(), "{wire:?}");
            let canonical = case.get("encoded").and_then(Value::as_str).unwrap_or(wire);
            assert_eq!(encoded(&p), canonical, "{wire:?}");
        }
    }

    #[test]
    fn event_name_vectors() {
        let v = vectors();
        for case in v["event_name"].as_array().expect("event_name list") {
            let data = case["data"].as_str().unwrap();
            assert_eq!(
                event_name(data).as_deref(),
                case["name"].as_str(),
                "{data:?}"
            );
        }
    }

    #[test]
    fn fast_paths_match_encode() {
        let mut out = String::new();
        encode_event("/", None, 0, r#"["foo"]"#, &mut out);
        assert_eq!(out, r#"2["foo"]"#);
        out.clear();
        encode_event(
            "/admin",
            Some(12),
            2,
            r#"["a",{"_placeholder":true,"num":0}]"#,
            &mut out,
        );
        assert_eq!(out, r#"52-/admin,12["a",{"_placeholder":true,"num":0}]"#);
        out.clear();
        encode_ack("/", &13, 0, "[]", &mut out);
        assert_eq!(out, "313[]");
        out.clear();
        encode_ack("/ä", &15, 1, r#"[{"_placeholder":true,"num":0}]"#, &mut out);
        assert_eq!(out, r#"61-/ä,15[{"_placeholder":true,"num":0}]"#);
        // encode appends, like the fast paths.
        out.clear();
        out.push('4');
        encode(&decode("1/admin,").unwrap(), &mut out);
        assert_eq!(out, "41/admin,");
    }

    #[test]
    fn attachment_limit_is_configurable() {
        assert_eq!(
            decode_with_limit(r#"511-["a"]"#, 11).unwrap().attachments,
            11
        );
        assert_eq!(
            decode_with_limit(r#"52-["a"]"#, 1),
            Err(DecodeError::BadAttachments)
        );
        let huge = format!("5{}-[\"a\"]", "9".repeat(400));
        assert_eq!(
            decode_with_limit(&huge, usize::MAX),
            Err(DecodeError::BadAttachments)
        );
    }

    #[test]
    fn id_limit_is_js_safe_integer() {
        assert_eq!(decode(&format!("3{MAX_ID}[]")).unwrap().id, Some(MAX_ID));
        assert_eq!(
            decode(&format!("3{}[]", MAX_ID + 1)),
            Err(DecodeError::BadId)
        );
        let long = format!("3{}1[]", "0".repeat(10_000));
        assert_eq!(decode(&long).unwrap().id, Some(1));
    }

    /// Where this decoder and socket.io-parser 4.2.7 disagree; pinned so that a change is deliberate.
    #[test]
    fn known_deviations_from_socket_io_parser() {
        // JS: Number("") and Number(" ") are 0, so "" and " " decode as CONNECT there.
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode(" "), Err(DecodeError::UnknownType));
        // JS: Number(" 1") and Number("1.0") are 1.
        assert_eq!(decode(r#"5 1-["a"]"#), Err(DecodeError::BadAttachments));
        assert_eq!(decode(r#"51.0-["a"]"#), Err(DecodeError::BadAttachments));
        // JS: a space counts as an id digit, so this is id 0 there; here the space belongs to the JSON.
        let p = decode(r#"2 ["a"]"#).unwrap();
        assert_eq!((p.id, p.data.as_deref()), (None, Some(r#" ["a"]"#)));
        // JS: EVENT / ACK / CONNECT_ERROR without data pass decodeString, as they pass decode_lenient.
        assert_eq!(decode("2"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("312"), Err(DecodeError::InvalidPayload));
        for wire in ["2", "312", "4/x,", "51-", "61-/a,7"] {
            let (p, _) = decode_lenient(wire).unwrap_or_else(|e| panic!("{wire:?}: {e:?}"));
            assert_eq!(p.data, None, "{wire:?}");
        }
        assert_eq!(decode_lenient("2[]"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode_lenient("1{}"), Err(DecodeError::InvalidPayload));
        // JS: Number() of a long id is a rounded double, echoed back in its shortest form.
        let cases = [
            ("9007199254740991", Some(MAX_ID), None),
            ("9007199254740992", None, Some("9007199254740992")),
            ("9007199254740993", None, Some("9007199254740992")),
            ("1152921504606846976", None, Some("1152921504606847000")),
            (
                "1234567890123456789012345",
                None,
                Some("1.2345678901234568e+24"),
            ),
            ("100000000000000000000000", None, Some("1e+23")),
        ];
        for (digits, id, echo) in cases {
            let (p, js) = decode_lenient(&format!("2{digits}[\"a\"]")).unwrap();
            assert_eq!((p.id, js.map(js_number).as_deref()), (id, echo), "{digits}");
        }
        let (_, js) = decode_lenient(&format!("3{}[]", "9".repeat(400))).unwrap();
        assert_eq!(js.map(js_number).as_deref(), Some("Infinity"));
    }

    #[test]
    fn arguments_are_checked_as_json_parse_checks_them() {
        // JSON.parse accepts lone surrogates, turns 1e400 into Infinity and nests until its stack runs out; the
        // arguments are only checked for their structure here (without recursion), and judged by Python.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        for text in [r#"2["a","\ud800"]"#, r#"2["a",1e400]"#, &deep] {
            assert!(decode(text).is_ok(), "{}", &text[..20]);
        }
        assert_eq!(decode(r#"2["a",[1,]"#), Err(DecodeError::InvalidJson));
    }

    #[test]
    fn split_event_takes_the_name_out() {
        let split = |t: &str| split_event(t).unwrap().unwrap();
        let e = split(r#"["echo",{"a":[1,"]"]},2]"#);
        assert_eq!(e.name.as_deref(), Some("echo"));
        assert_eq!((e.args.as_str(), e.argc), (r#"[{"a":[1,"]"]},2]"#, 2));
        let e = split(r#" [ "n\u00e9" , 1 ] "#);
        assert_eq!(
            (e.name.as_deref(), e.args.as_str(), e.argc),
            (Some("né"), "[1 ] ", 1)
        );
        let e = split(r#"["bare"]"#);
        assert_eq!((e.args.as_str(), e.argc), ("[]", 0));
        let e = split(r#"[7,"x"]"#);
        assert_eq!((e.name, e.args.as_str(), e.argc), (None, r#"[7,"x"]"#, 2));
        for invalid in [
            r#"[]"#,
            r#"{"a":1}"#,
            r#"[null]"#,
            r#"["connect"]"#,
            r#"[{}]"#,
        ] {
            assert_eq!(split_event(invalid), Ok(None), "{invalid}");
        }
        assert_eq!(split_event("[1"), Err(DecodeError::InvalidJson));
    }

    #[test]
    fn reassembly_waits_for_every_attachment() {
        let header = decode(
            r#"52-/admin,["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        )
        .unwrap();
        let mut r = BinaryReassembly::new(header.clone());
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.push(vec![1, 2]), None);
        assert_eq!(r.remaining(), 1);
        let (packet, attachments) = r.push(vec![3, 4]).expect("complete");
        assert_eq!(packet, header);
        assert_eq!(attachments, vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.push(vec![5]), None);

        let mut zero = BinaryReassembly::new(Packet {
            attachments: 0,
            ..header
        });
        assert_eq!(zero.remaining(), 0);
        assert_eq!(zero.push(vec![9]).map(|(_, a)| a), Some(vec![vec![9]]));
    }

    fn json_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,6}".prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_scalar().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(".{0,4}", json_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn event_data() -> impl Strategy<Value = (Value, Option<String>)> {
        let name = prop_oneof![
            ".{0,8}"
                .prop_filter("reserved", |n| !RESERVED_EVENTS.contains(&n.as_str()))
                .prop_map(|n| (Value::from(n.clone()), Some(n))),
            any::<u32>().prop_map(|n| (Value::from(n), None)),
        ];
        (name, prop::collection::vec(json_value(), 0..4)).prop_map(|((first, name), rest)| {
            let mut items = vec![first];
            items.extend(rest);
            (Value::from(items), name)
        })
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let kind = prop::sample::select(vec![
            PacketType::Connect,
            PacketType::Disconnect,
            PacketType::Event,
            PacketType::Ack,
            PacketType::ConnectError,
            PacketType::BinaryEvent,
            PacketType::BinaryAck,
        ]);
        let nsp = prop_oneof![Just("/".to_owned()), "/[^,]{0,12}"];
        let id = prop::option::of(0..=MAX_ID);
        let data = (
            prop::option::of(json_object()),
            event_data(),
            prop::collection::vec(json_value(), 0..4),
            prop_oneof![json_object(), ".{0,8}".prop_map(Value::from)],
        );
        (kind, nsp, id, 1..=MAX_ATTACHMENTS, data).prop_map(
            |(kind, nsp, id, n, (connect, (event, _), ack, error))| {
                let data = match kind {
                    PacketType::Connect => connect,
                    PacketType::Disconnect => None,
                    PacketType::Event | PacketType::BinaryEvent => Some(event),
                    PacketType::Ack | PacketType::BinaryAck => Some(Value::from(ack)),
                    PacketType::ConnectError => Some(error),
                };
                Packet {
                    kind,
                    nsp,
                    id,
                    attachments: if kind.is_binary() { n } else { 0 },
                    data: data.map(|v| v.to_string()),
                }
            },
        )
    }

    fn event_name(data: &str) -> Option<String> {
        split_event(data).ok().flatten().and_then(|e| e.name)
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(p in packet()) {
            let wire = encoded(&p);
            prop_assert_eq!(decode(&wire), Ok(p));
        }

        #[test]
        fn event_name_matches_full_parse((data, name) in event_data()) {
            prop_assert_eq!(event_name(&data.to_string()), name);
            prop_assert_eq!(event_name(&serde_json::to_string_pretty(&data).unwrap()),
                data[0].as_str().map(str::to_owned));
        }

        #[test]
        fn random_text_never_panics_and_decoded_packets_reencode(
            s in prop_oneof![
                ".*".boxed(),
                r#"[0-6][0-9]{0,3}-?(/[^,]{0,6},?)?[0-9]{0,20}[\[\]{}",a-z0-9 ]{0,16}"#.boxed(),
                (packet(), any::<prop::sample::Index>()).prop_map(|(p, cut)| {
                    let wire = encoded(&p);
                    let cut = cut.index(wire.len() + 1);
                    wire.get(..cut).unwrap_or(&wire).to_owned()
                }).boxed(),
            ]
        ) {
            let _ = event_name(&s);
            if let Ok(p) = decode(&s) {
                let again = decode(&encoded(&p));
                prop_assert_eq!(again, Ok(p));
            }
        }
    }
}
