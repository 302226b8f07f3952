//! The wire format of `@socket.io/redis-adapter` 8.x and `@socket.io/redis-emitter` 5.x, sans-IO: bytes
//! published on a Redis channel in, typed messages out, and encoded back byte for byte as Node encodes them.
//! `docs/redis-adapter.md` describes the protocol (channels, message types, who sends what in which order);
//! `tests/vectors/redis_adapter.json` is real traffic of Node servers, replayed by the tests.
//!
//! - Classic adapter (`createAdapter`, plain pub/sub): [`Broadcast`] on the broadcast channels (msgpack
//!   `[uid, packet, opts]`), [`Request`] on `<key>-request#<nsp>#`, [`Response`] on `<key>-response#<nsp>#`;
//!   [`Channels`] names them and tells an incoming channel's kind. The emitter uses the same formats.
//! - Sharded adapter (`createShardedAdapter`, Redis 7 sharded pub/sub): every message is a [`ClusterMessage`];
//!   [`ShardedChannels`] names the channels.
//!
//! msgpack goes through `rmpv` (its value tree keeps map order, which byte-identical output needs), JSON through
//! `serde_json` (members of JSON messages that hold application data stay raw text, so they come back
//! unchanged). Payloads whose shape belongs to the application (event arguments, acks, `socket.data`,
//! handshakes) are a [`Payload`] in whichever encoding they arrived; [`Payload::to_socketio`] turns one into what
//! the Socket.IO layer sends to local clients (JSON text with `{"_placeholder":true,"num":n}` for each binary
//! value, and the attachments), in one pass, once per message whatever the number of recipients.
//!
//! Decoding never panics on any input (tested with random bytes): every malformed message is a [`DecodeError`].

use rmp::encode::ByteBuf;
use rmpv::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

/// The channel prefix (`key` / `channelPrefix` option) both adapters and the emitter default to.
pub const DEFAULT_KEY: &str = "socket.io";
/// `requestsTimeout`: how long a requester waits for the other servers' responses.
pub const REQUESTS_TIMEOUT: Duration = Duration::from_secs(5);
/// The uid the emitter puts in its messages (it is no server and answers nothing).
pub const EMITTER_UID: &str = "emitter";
/// Nesting deeper than this is refused, in msgpack as in JSON (serde_json's own limit is 128 too).
pub const MAX_DEPTH: usize = 128;

// ---- errors and encodings --------------------------------------------------------------------------------------

/// Why a message could not be decoded (or a payload converted). One line, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn fail<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// How a message travels: JSON (`JSON.stringify`) or msgpack (`notepack.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Msgpack,
}

impl Encoding {
    /// Node's receivers tell them apart by the first byte: `{` is JSON, anything else msgpack.
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.first() == Some(&b'{') {
            Encoding::Json
        } else {
            Encoding::Msgpack
        }
    }
}

/// One msgpack value, the whole input (trailing bytes are an error, as in notepack's `decode`).
pub fn read_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| DecodeError(format!("msgpack: {e}")))?;
    if !rd.is_empty() {
        return fail(format!("msgpack: {} trailing bytes", rd.len()));
    }
    Ok(value)
}

/// A msgpack value as notepack writes it: the smallest marker for each integer, length and string (rmp picks the
/// same ones), floats as float64, strings that are not valid UTF-8 (a JavaScript string with a lone surrogate)
/// still as strings.
pub fn write_msgpack(out: &mut ByteBuf, value: &Value) {
    use rmp::encode as e;
    match value {
        Value::Nil => {
            let Ok(()) = e::write_nil(out);
        }
        Value::Boolean(b) => {
            let Ok(()) = e::write_bool(out, *b);
        }
        Value::Integer(n) => {
            if let Some(u) = n.as_u64() {
                let Ok(_) = e::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let Ok(_) = e::write_sint(out, i);
            }
        }
        Value::F32(f) => {
            let Ok(()) = e::write_f32(out, *f);
        }
        Value::F64(f) => {
            let Ok(()) = e::write_f64(out, *f);
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            let Ok(_) = e::write_str_len(out, bytes.len() as u32);
            out.as_mut_vec().extend_from_slice(bytes);
        }
        Value::Binary(b) => {
            let Ok(_) = e::write_bin(out, b);
        }
        Value::Array(items) => {
            let Ok(_) = e::write_array_len(out, items.len() as u32);
            for item in items {
                write_msgpack(out, item);
            }
        }
        Value::Map(entries) => {
            let Ok(_) = e::write_map_len(out, entries.len() as u32);
            for (k, v) in entries {
                write_msgpack(out, k);
                write_msgpack(out, v);
            }
        }
        Value::Ext(ty, data) => {
            let Ok(_) = e::write_ext_meta(out, data.len() as u32, *ty);
            out.as_mut_vec().extend_from_slice(data);
        }
    }
}

// ---- application payloads --------------------------------------------------------------------------------------

/// A value whose shape belongs to the application (event arguments, an ack's reply, `socket.data`, a
/// handshake), kept in the encoding it came in: re-encoding it in the same encoding gives the same bytes.
#[derive(Debug, Clone)]
pub enum Payload {
    Json(Box<RawValue>),
    Msgpack(Value),
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Msgpack(a), Payload::Msgpack(b)) => a == b,
            _ => false,
        }
    }
}

impl Payload {
    /// JSON text, checked.
    pub fn json(text: &str) -> Result<Self, DecodeError> {
        RawValue::from_string(text.to_owned())
            .map(Payload::Json)
            .map_err(|e| DecodeError(format!("json: {e}")))
    }

    /// Socket.IO's form (JSON text with placeholders, and the attachments they name) to a payload: JSON when
    /// there is no attachment, else a msgpack tree with each placeholder replaced by its bytes (numbers as
    /// notepack writes JavaScript numbers: integral values as integers).
    pub fn from_socketio(data_json: &str, attachments: &[Vec<u8>]) -> Result<Self, DecodeError> {
        if attachments.is_empty() {
            Payload::json(data_json)
        } else {
            json_to_value(data_json, Some(attachments)).map(Payload::Msgpack)
        }
    }

    /// What the Socket.IO layer sends: JSON text (binary values replaced by placeholders, numbered in the order
    /// socket.io-parser's `deconstructPacket` meets them) and the attachments.
    pub fn to_socketio(&self) -> Result<(String, Vec<Vec<u8>>), DecodeError> {
        match self {
            Payload::Json(raw) => Ok((raw.get().to_owned(), Vec::new())),
            Payload::Msgpack(v) => {
                let mut attachments = Vec::new();
                let text = value_to_json(v, Some(&mut attachments))?;
                Ok((text, attachments))
            }
        }
    }

    /// JSON text as `JSON.stringify` would give it (a binary value becomes Node's `{"type":"Buffer","data":[..]}`).
    pub fn to_json_text(&self) -> Result<String, DecodeError> {
        match self {
            Payload::Json(raw) => Ok(raw.get().to_owned()),
            Payload::Msgpack(v) => value_to_json(v, None),
        }
    }

    /// The msgpack tree (placeholders in JSON are left alone: there are no attachments to put there).
    pub fn to_value(&self) -> Result<Value, DecodeError> {
        match self {
            Payload::Json(raw) => json_to_value(raw.get(), None),
            Payload::Msgpack(v) => Ok(v.clone()),
        }
    }

    /// Whether it holds binary (the sharded adapter then sends the whole message as msgpack).
    pub fn has_binary(&self) -> bool {
        match self {
            Payload::Json(_) => false,
            Payload::Msgpack(v) => value_has_binary(v),
        }
    }

    fn is_json_array(&self) -> bool {
        match self {
            Payload::Json(raw) => raw.get().trim_start().starts_with('['),
            Payload::Msgpack(v) => matches!(v, Value::Array(_)),
        }
    }
}

// ---- msgpack -> JSON --------------------------------------------------------------------------------------------

/// What notepack's decoder makes of an extension value. (rmpv does not say which marker carried it, so a 1-byte
/// and an 8-byte type-0 extension are read as fixext1 / fixext8 would be.)
enum Ext<'a> {
    /// fixext1 of type 0: `undefined`.
    Undefined,
    /// ext8/16/32 of type 0: an `ArrayBuffer`.
    Bytes(&'a [u8]),
    /// The timestamp extension (-1) or notepack's old fixext8 date (type 0): milliseconds since the epoch.
    Date(f64),
    /// Any other extension: notepack returns `[type, Buffer]`.
    Pair(i8, &'a [u8]),
}

fn ext_kind(ty: i8, data: &[u8]) -> Ext<'_> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match (ty, data.len()) {
        (0, 1) => Ext::Undefined,
        (0, 8) => {
            Ext::Date(be32(&data[..4]) as i32 as f64 * 4294967296.0 + be32(&data[4..]) as f64)
        }
        (0, _) => Ext::Bytes(data),
        (-1, 4) => Ext::Date(be32(data) as f64 * 1e3),
        (-1, 8) => {
            let hi = be32(&data[..4]);
            let lo = be32(&data[4..]);
            let secs = (hi & 3) as f64 * 4294967296.0 + lo as f64;
            Ext::Date(secs * 1e3 + (hi >> 2) as f64 / 1e6)
        }
        (-1, 12) => {
            let ns = be32(&data[..4]);
            let hi = be32(&data[4..8]) as i32;
            let lo = be32(&data[8..]);
            Ext::Date((hi as f64 * 4294967296.0 + lo as f64) * 1e3 + ns as f64 / 1e6)
        }
        _ => Ext::Pair(ty, data),
    }
}

fn value_has_binary(v: &Value) -> bool {
    match v {
        Value::Binary(_) => true,
        Value::Ext(ty, data) => matches!(ext_kind(*ty, data), Ext::Bytes(_) | Ext::Pair(..)),
        Value::Array(items) => items.iter().any(value_has_binary),
        Value::Map(entries) => entries.iter().any(|(_, v)| value_has_binary(v)),
        _ => false,
    }
}

fn is_undefined(v: &Value) -> bool {
    matches!(v, Value::Ext(ty, data) if matches!(ext_kind(*ty, data), Ext::Undefined))
}

/// `JSON.stringify` of a msgpack tree as notepack decodes it. With `attachments`, binary values become
/// socket.io-parser placeholders and are collected; without, they become Node's Buffer JSON.
pub fn value_to_json(
    v: &Value,
    attachments: Option<&mut Vec<Vec<u8>>>,
) -> Result<String, DecodeError> {
    let mut w = JsonWriter {
        out: Vec::new(),
        attachments,
    };
    w.value(v)?;
    String::from_utf8(w.out).map_err(|e| DecodeError(format!("json output: {e}")))
}

struct JsonWriter<'a> {
    out: Vec<u8>,
    attachments: Option<&'a mut Vec<Vec<u8>>>,
}

/// A canonical array index ("0", "17", not "017"): JavaScript objects list such keys first, ascending.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|&n| n < u32::MAX as u64)
        .map(|n| n as u32)
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes as JSON.stringify does: quote, backslash, control characters (\b \f \n \r \t, else
    // \u00xx); everything else stays literal.
    let _ = serde_json::to_writer(out, s);
}

/// A number as JavaScript's `JSON.stringify` writes it: non-finite -> null, integral values below 1e21 without a
/// fraction, others in the shortest form that reads back the same.
fn write_json_f64(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
    } else if f == f.trunc() && f.abs() < 1e21 {
        let _ = write!(VecWriter(out), "{:.0}", if f == 0.0 { 0.0 } else { f });
    } else {
        let _ = serde_json::to_writer(out, &f);
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `Date.prototype.toJSON`: ISO 8601 with milliseconds in UTC, or null for an invalid date.
fn write_json_date(out: &mut Vec<u8>, ms: f64) {
    if !ms.is_finite() || ms.abs() > 8.64e15 {
        out.extend_from_slice(b"null");
        return;
    }
    let ms = ms.floor() as i64;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut w = VecWriter(out);
    let _ = if (0..=9999).contains(&year) {
        write!(w, "\"{year:04}")
    } else {
        write!(w, "\"{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    let _ = write!(
        w,
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z\"",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    );
}

impl JsonWriter<'_> {
    fn binary(&mut self, bytes: &[u8]) {
        match self.attachments.as_deref_mut() {
            Some(atts) => {
                let _ = write!(
                    VecWriter(&mut self.out),
                    "{{\"_placeholder\":true,\"num\":{}}}",
                    atts.len()
                );
                atts.push(bytes.to_vec());
            }
            None => {
                self.out
                    .extend_from_slice(b"{\"type\":\"Buffer\",\"data\":[");
                for (i, b) in bytes.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    let _ = write!(VecWriter(&mut self.out), "{b}");
                }
                self.out.extend_from_slice(b"]}");
            }
        }
    }

    fn value(&mut self, v: &Value) -> Result<(), DecodeError> {
        match v {
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Integer(n) => {
                let _ = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => write!(VecWriter(&mut self.out), "{u}"),
                    (None, Some(i)) => write!(VecWriter(&mut self.out), "{i}"),
                    (None, None) => Ok(()),
                };
            }
            Value::F32(f) => write_json_f64(&mut self.out, f64::from(*f)),
            Value::F64(f) => write_json_f64(&mut self.out, *f),
            Value::String(s) => match s.as_str() {
                Some(s) => write_json_str(&mut self.out, s),
                None => write_json_str(&mut self.out, &String::from_utf8_lossy(s.as_bytes())),
            },
            Value::Binary(b) => self.binary(b),
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    if is_undefined(item) {
                        self.out.extend_from_slice(b"null");
                    } else {
                        self.value(item)?;
                    }
                }
                self.out.push(b']');
            }
            Value::Map(entries) => self.object(entries)?,
            Value::Ext(ty, data) => match ext_kind(*ty, data) {
                Ext::Undefined => self.out.extend_from_slice(b"null"),
                Ext::Bytes(b) => self.binary(b),
                Ext::Date(ms) => write_json_date(&mut self.out, ms),
                Ext::Pair(ty, b) => {
                    let _ = write!(VecWriter(&mut self.out), "[{ty},");
                    self.binary(b);
                    self.out.push(b']');
                }
            },
        }
        Ok(())
    }

    /// A JavaScript object built by notepack (`obj[key] = value` in wire order): a repeated key keeps its first
    /// place and its last value; array-index keys come first, ascending; `undefined` values are left out.
    fn object(&mut self, entries: &[(Value, Value)]) -> Result<(), DecodeError> {
        let mut keys: Vec<String> = Vec::with_capacity(entries.len());
        let mut values: Vec<&Value> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (k, v) in entries {
            let key = match k {
                Value::String(s) => match s.as_str() {
                    Some(s) => s.to_owned(),
                    None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                },
                Value::Integer(_) | Value::Boolean(_) | Value::Nil => k.to_string(),
                Value::F64(_) | Value::F32(_) => {
                    let mut buf = Vec::new();
                    write_json_f64(&mut buf, k.as_f64().unwrap_or(f64::NAN));
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if text == "null" {
                        "NaN".to_owned()
                    } else {
                        text
                    }
                }
                _ => return fail("msgpack: a map key that is not a string or a number"),
            };
            match seen.get(&key) {
                Some(&i) => values[i] = v,
                None => {
                    seen.insert(key.clone(), keys.len());
                    keys.push(key);
                    values.push(v);
                }
            }
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        if keys.iter().any(|k| array_index(k).is_some()) {
            let (mut idx, rest): (Vec<usize>, Vec<usize>) = order
                .into_iter()
                .partition(|&i| array_index(&keys[i]).is_some());
            idx.sort_by_key(|&i| array_index(&keys[i]));
            order = idx.into_iter().chain(rest).collect();
        }
        self.out.push(b'{');
        let mut first = true;
        for i in order {
            if is_undefined(values[i]) {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_json_str(&mut self.out, &keys[i]);
            self.out.push(b':');
            self.value(values[i])?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

// ---- JSON -> msgpack --------------------------------------------------------------------------------------------

/// JSON text to a msgpack tree, map order kept; numbers as notepack writes JavaScript numbers (each read as a
/// double, then an integral value is an integer, anything else a float64). With `attachments`, every object whose `_placeholder` is `true`
/// becomes the attachment its `num` names (socket.io-parser's `reconstructPacket`; a bad `num` is an error).
pub fn json_to_value(text: &str, attachments: Option<&[Vec<u8>]>) -> Result<Value, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ToValue { attachments }
        .deserialize(&mut de)
        .map_err(|e| DecodeError(format!("json: {e}")))?;
    de.end().map_err(|e| DecodeError(format!("json: {e}")))?;
    Ok(value)
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn number_value(f: f64) -> Value {
    if f.is_finite() && f == f.trunc() {
        if (0.0..18446744073709551616.0).contains(&f) {
            return Value::from(f as u64);
        }
        if (-9223372036854775808.0..0.0).contains(&f) {
            return Value::from(f as i64);
        }
    }
    Value::F64(f)
}

#[derive(Clone, Copy)]
struct ToValue<'b> {
    attachments: Option<&'b [Vec<u8>]>,
}

impl<'de> DeserializeSeed<'de> for ToValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }
    // A JavaScript peer reads every JSON number as a double: integers past 2^53 are rounded as it would round
    // them, so the bytes are those Node would send for the same text.
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(if n.unsigned_abs() <= MAX_SAFE_INTEGER {
            Value::from(n)
        } else {
            number_value(n as f64)
        })
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(if n <= MAX_SAFE_INTEGER {
            Value::from(n)
        } else {
            number_value(n as f64)
        })
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(number_value(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::from(s))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::from(s))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Value, Value)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(self)?;
            entries.push((Value::from(k), v));
        }
        if let Some(atts) = self.attachments {
            let field = |name: &str| {
                entries
                    .iter()
                    .rev()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            };
            if field("_placeholder") == Some(&Value::Boolean(true)) {
                let num = field("num").and_then(Value::as_u64);
                return match num.and_then(|n| atts.get(n as usize)) {
                    Some(bytes) => Ok(Value::Binary(bytes.clone())),
                    None => Err(de::Error::custom("a placeholder names no attachment")),
                };
            }
        }
        Ok(Value::Map(entries))
    }
}

// ---- reading fields of a JSON or msgpack object -----------------------------------------------------------------

/// A member of a decoded message, in either encoding.
#[derive(Clone, Copy)]
enum Tree<'a> {
    Json(&'a RawValue),
    Pack(&'a Value),
}

/// A JSON object's members in wire order, values left as raw text.
struct JsonObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for JsonObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(JsonObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An object's members in wire order.
struct Fields<'a>(Vec<(String, Tree<'a>)>);

impl<'a> Fields<'a> {
    fn parse_json(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let obj: JsonObject<'a> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("json: {e}")))?;
        Ok(Fields(
            obj.0.into_iter().map(|(k, v)| (k, Tree::Json(v))).collect(),
        ))
    }

    /// The member (the last one of that name, as `JSON.parse` and notepack keep), None if absent or null.
    fn get(&self, key: &str) -> Option<Tree<'a>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    fn req(&self, key: &str) -> Result<Tree<'a>, DecodeError> {
        self.get(key)
            .ok_or_else(|| DecodeError(format!("missing {key}")))
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    fn string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        self.get(key).map(|t| t.string(key)).transpose()
    }
}

impl<'a> Tree<'a> {
    fn is_null(self) -> bool {
        match self {
            Tree::Json(raw) => raw.get() == "null",
            Tree::Pack(v) => v.is_nil() || is_undefined(v),
        }
    }

    fn object(self, what: &str) -> Result<Fields<'a>, DecodeError> {
        match self {
            Tree::Json(raw) => Fields::parse_json(raw.get().as_bytes()),
            Tree::Pack(Value::Map(entries)) => Ok(Fields(
                entries
                    .iter()
                    .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), Tree::Pack(v))))
                    .collect(),
            )),
            Tree::Pack(_) => fail(format!("{what} is not an object")),
        }
    }

    fn string(self, what: &str) -> Result<String, DecodeError> {
        match self {
            Tree::Json(raw) => serde_json::from_str::<String>(raw.get())
                .map_err(|_| DecodeError(format!("{what} is not a string"))),
            Tree::Pack(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| DecodeError(format!("{what} is not a string"))),
        }
    }

    fn u64(self, what: &str) -> Result<u64, DecodeError> {
        let n = match self {
            Tree::Json(raw) => serde_json::from_str::<u64>(raw.get()).ok(),
            Tree::Pack(v) => v.as_u64(),
        };
        n.ok_or_else(|| DecodeError(format!("{what} is not a non-negative integer")))
    }

    fn bool(self, what: &str) -> Result<bool, DecodeError> {
        let b = match self {
            Tree::Json(raw) => serde_json::from_str::<bool>(raw.get()).ok(),
            Tree::Pack(v) => v.as_bool(),
        };
        b.ok_or_else(|| DecodeError(format!("{what} is not a boolean")))
    }

    fn payload(self) -> Payload {
        match self {
            Tree::Json(raw) => Payload::Json(raw.to_owned()),
            Tree::Pack(v) => Payload::Msgpack(v.clone()),
        }
    }

    /// Room names: strings, or numbers (JavaScript allows `io.to(42)`; Node's rooms then hold the number, whose
    /// string form is the room's channel name).
    fn rooms(self, what: &str) -> Result<Vec<String>, DecodeError> {
        let bad = || DecodeError(format!("{what} is not a list of rooms"));
        match self {
            Tree::Json(raw) => {
                let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
                items
                    .into_iter()
                    .map(|item| {
                        let t = item.get();
                        if t.starts_with('"') {
                            serde_json::from_str::<String>(t).map_err(|_| bad())
                        } else if serde_json::from_str::<f64>(t).is_ok() {
                            Ok(t.to_owned())
                        } else {
                            Err(bad())
                        }
                    })
                    .collect()
            }
            Tree::Pack(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.as_str().map(str::to_owned).ok_or_else(bad),
                    Value::Integer(_) => Ok(v.to_string()),
                    Value::F64(_) | Value::F32(_) => {
                        let mut buf = Vec::new();
                        write_json_f64(&mut buf, v.as_f64().unwrap_or(f64::NAN));
                        Ok(String::from_utf8_lossy(&buf).into_owned())
                    }
                    _ => Err(bad()),
                })
                .collect(),
            Tree::Pack(_) => Err(bad()),
        }
    }

    fn scalar(self, what: &str) -> Result<Scalar, DecodeError> {
        let bad = || DecodeError(format!("{what} is not a boolean or a number"));
        match self {
            Tree::Json(raw) => {
                match serde_json::from_str::<serde_json::Value>(raw.get()).map_err(|_| bad())? {
                    serde_json::Value::Null => Ok(Scalar::Null),
                    serde_json::Value::Bool(b) => Ok(Scalar::Bool(b)),
                    serde_json::Value::Number(n) => {
                        if let Some(u) = n.as_u64() {
                            Ok(Scalar::UInt(u))
                        } else if let Some(i) = n.as_i64() {
                            Ok(Scalar::Int(i))
                        } else {
                            Ok(Scalar::Float(n.as_f64().unwrap_or(f64::NAN)))
                        }
                    }
                    _ => Err(bad()),
                }
            }
            Tree::Pack(v) => match v {
                Value::Nil => Ok(Scalar::Null),
                Value::Boolean(b) => Ok(Scalar::Bool(*b)),
                Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => Ok(Scalar::UInt(u)),
                    (None, Some(i)) => Ok(Scalar::Int(i)),
                    (None, None) => Err(bad()),
                },
                Value::F32(f) => Ok(Scalar::Float(f64::from(*f))),
                Value::F64(f) => Ok(Scalar::Float(*f)),
                _ => Err(bad()),
            },
        }
    }
}

// ---- writing a message in either encoding ----------------------------------------------------------------------

/// A message about to be written: objects keep the member order given, so one description yields Node's bytes
/// in JSON and in msgpack.
enum Out<'a> {
    Str(&'a str),
    UInt(u64),
    Bool(bool),
    Scalar(&'a Scalar),
    Strings(&'a [String]),
    Payload(&'a Payload),
    Array(Vec<Out<'a>>),
    Object(Vec<(&'a str, Out<'a>)>),
}

impl Out<'_> {
    fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Json => {
                let mut out = Vec::new();
                self.json(&mut out);
                out
            }
            Encoding::Msgpack => {
                let mut out = ByteBuf::new();
                self.msgpack(&mut out);
                out.into_vec()
            }
        }
    }

    fn json(&self, out: &mut Vec<u8>) {
        match self {
            Out::Str(s) => write_json_str(out, s),
            Out::UInt(n) => {
                let _ = write!(VecWriter(out), "{n}");
            }
            Out::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Out::Scalar(s) => s.json(out),
            Out::Strings(items) => {
                out.push(b'[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, s);
                }
                out.push(b']');
            }
            Out::Payload(p) => match p {
                Payload::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
                Payload::Msgpack(v) => match value_to_json(v, None) {
                    Ok(text) => out.extend_from_slice(text.as_bytes()),
                    Err(_) => out.extend_from_slice(b"null"),
                },
            },
            Out::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.json(out);
                }
                out.push(b']');
            }
            Out::Object(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, k);
                    out.push(b':');
                    v.json(out);
                }
                out.push(b'}');
            }
        }
    }

    fn msgpack(&self, out: &mut ByteBuf) {
        use rmp::encode as e;
        match self {
            Out::Str(s) => {
                let Ok(()) = e::write_str(out, s);
            }
            Out::UInt(n) => {
                let Ok(_) = e::write_uint(out, *n);
            }
            Out::Bool(b) => {
                let Ok(()) = e::write_bool(out, *b);
            }
            Out::Scalar(s) => s.msgpack(out),
            Out::Strings(items) => {
                let Ok(_) = e::write_array_len(out, items.len() as u32);
                for s in *items {
                    let Ok(()) = e::write_str(out, s);
                }
            }
            Out::Payload(p) => match p {
                Payload::Msgpack(v) => write_msgpack(out, v),
                Payload::Json(raw) => match json_to_value(raw.get(), None) {
                    Ok(v) => write_msgpack(out, &v),
                    Err(_) => {
                        let Ok(()) = e::write_nil(out);
                    }
                },
            },
            Out::Array(items) => {
                let Ok(_) = e::write_array_len(out, items.len() as u32);
                for item in items {
                    item.msgpack(out);
                }
            }
            Out::Object(members) => {
                let Ok(_) = e::write_map_len(out, members.len() as u32);
                for (k, v) in members {
                    let Ok(()) = e::write_str(out, k);
                    v.msgpack(out);
                }
            }
        }
    }
}

// ---- the pieces of messages -------------------------------------------------------------------------------------

/// A flag's value: flags are booleans and numbers (`timeout`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
}

impl Scalar {
    fn json(&self, out: &mut Vec<u8>) {
        let _ = match self {
            Scalar::Null => write!(VecWriter(out), "null"),
            Scalar::Bool(b) => write!(VecWriter(out), "{b}"),
            Scalar::UInt(n) => write!(VecWriter(out), "{n}"),
            Scalar::Int(n) => write!(VecWriter(out), "{n}"),
            Scalar::Float(f) => {
                write_json_f64(out, *f);
                Ok(())
            }
        };
    }

    fn msgpack(&self, out: &mut ByteBuf) {
        use rmp::encode as e;
        match self {
            Scalar::Null => {
                let Ok(()) = e::write_nil(out);
            }
            Scalar::Bool(b) => {
                let Ok(()) = e::write_bool(out, *b);
            }
            Scalar::UInt(n) => {
                let Ok(_) = e::write_uint(out, *n);
            }
            Scalar::Int(n) => {
                let Ok(_) = e::write_sint(out, *n);
            }
            Scalar::Float(f) => {
                let Ok(()) = e::write_f64(out, *f);
            }
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::UInt(n) => Some(*n as f64),
            Scalar::Int(n) => Some(*n as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// A `BroadcastOperator`'s flags, in the order the caller set them (`volatile`, `compress`, `local`,
/// `broadcast`, `binary`, `timeout`, `expectSingleResponse`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flags(pub Vec<(String, Scalar)>);

impl Flags {
    pub fn get(&self, key: &str) -> Option<&Scalar> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A flag set to true (JavaScript truthiness of booleans; other values count as unset).
    pub fn is_set(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Scalar::Bool(true)))
    }

    pub fn volatile(&self) -> bool {
        self.is_set("volatile")
    }

    pub fn local(&self) -> bool {
        self.is_set("local")
    }

    pub fn expect_single_response(&self) -> bool {
        self.is_set("expectSingleResponse")
    }

    /// The `timeout` flag in milliseconds.
    pub fn timeout_ms(&self) -> Option<f64> {
        self.get("timeout").and_then(Scalar::as_f64)
    }

    /// Sets a flag, keeping its place if it was set already.
    pub fn set(&mut self, key: &str, value: Scalar) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
        let fields = t.object("flags")?;
        let mut flags = Vec::with_capacity(fields.0.len());
        for (k, v) in &fields.0 {
            if !v.is_null() {
                flags.push((k.clone(), v.scalar(k)?));
            }
        }
        Ok(Flags(flags))
    }

    fn out(&self) -> Out<'_> {
        Out::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.as_str(), Out::Scalar(v)))
                .collect(),
        )
    }
}

/// The member order of broadcast options on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptsLayout {
    /// `{rooms, except, flags}`: the adapters (and `{rooms, except}` in the classic requests).
    #[default]
    Adapter,
    /// `{rooms, flags, except}`: the emitter's broadcasts.
    Emitter,
}

/// Which sockets an operation targets: those in any of `rooms` (every socket when empty) but in none of
/// `except` (a socket id is a room too).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BroadcastOpts {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    /// Absent in the classic requests (REMOTE_JOIN and the like carry rooms and except only).
    pub flags: Option<Flags>,
    pub layout: OptsLayout,
}

impl BroadcastOpts {
    pub fn new(rooms: Vec<String>, except: Vec<String>, flags: Option<Flags>) -> Self {
        BroadcastOpts {
            rooms,
            except,
            flags,
            layout: OptsLayout::Adapter,
        }
    }

    fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
        let fields = t.object("opts")?;
        // Node: `new Set(opts.rooms)`; absent means none.
        let rooms = fields
            .get("rooms")
            .map(|r| r.rooms("opts.rooms"))
            .transpose()?
            .unwrap_or_default();
        let except = fields
            .get("except")
            .map(|r| r.rooms("opts.except"))
            .transpose()?
            .unwrap_or_default();
        let flags = fields.get("flags").map(Flags::decode).transpose()?;
        let layout = match (fields.position("flags"), fields.position("except")) {
            (Some(f), Some(e)) if f < e => OptsLayout::Emitter,
            _ => OptsLayout::Adapter,
        };
        Ok(BroadcastOpts {
            rooms,
            except,
            flags,
            layout,
        })
    }

    fn out(&self) -> Out<'_> {
        let rooms = ("rooms", Out::Strings(&self.rooms));
        let except = ("except", Out::Strings(&self.except));
        let members = match (&self.flags, self.layout) {
            (None, _) => vec![rooms, except],
            (Some(f), OptsLayout::Adapter) => vec![rooms, except, ("flags", f.out())],
            (Some(f), OptsLayout::Emitter) => vec![rooms, ("flags", f.out()), except],
        };
        Out::Object(members)
    }

    pub fn volatile(&self) -> bool {
        self.flags.as_ref().is_some_and(Flags::volatile)
    }

    pub fn local(&self) -> bool {
        self.flags.as_ref().is_some_and(Flags::local)
    }
}

/// Socket.IO's EVENT packet type, the only one broadcast.
pub const EVENT: u64 = 2;

/// A Socket.IO packet object as Node's adapters pass it around: `{type, data, nsp}` (`nsp` missing in the
/// sharded adapter's broadcasts, `id` never sent by Node).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub packet_type: u64,
    /// `[event, ...args]`.
    pub data: Payload,
    pub nsp: Option<String>,
    pub id: Option<u64>,
}

impl Packet {
    /// An EVENT packet for `nsp` from Socket.IO's form of its arguments (see [`Payload::from_socketio`]).
    pub fn event(
        nsp: Option<&str>,
        data_json: &str,
        attachments: &[Vec<u8>],
    ) -> Result<Self, DecodeError> {
        let data = Payload::from_socketio(data_json, attachments)?;
        if !data.is_json_array() {
            return fail("event data is not an array");
        }
        Ok(Packet {
            packet_type: EVENT,
            data,
            nsp: nsp.map(str::to_owned),
            id: None,
        })
    }

    fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
        let fields = t.object("packet")?;
        Ok(Packet {
            packet_type: fields.req("type")?.u64("packet.type")?,
            data: fields.req("data")?.payload(),
            nsp: fields.string("nsp")?,
            id: fields.get("id").map(|t| t.u64("packet.id")).transpose()?,
        })
    }

    fn out(&self) -> Out<'_> {
        let mut members = vec![
            ("type", Out::UInt(self.packet_type)),
            ("data", Out::Payload(&self.data)),
        ];
        if let Some(nsp) = &self.nsp {
            members.push(("nsp", Out::Str(nsp)));
        }
        if let Some(id) = self.id {
            members.push(("id", Out::UInt(id)));
        }
        Out::Object(members)
    }

    /// The namespace, `/` when absent (as the classic adapter's `onmessage` defaults it).
    pub fn namespace(&self) -> &str {
        self.nsp.as_deref().unwrap_or("/")
    }
}

/// What the local Socket.IO layer needs to deliver a broadcast heard from Redis, decoded once.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalBroadcast {
    pub nsp: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub volatile: bool,
    /// `[event, ...args]` as JSON, placeholders for binary values.
    pub data_json: String,
    pub attachments: Vec<Vec<u8>>,
}

fn local_broadcast(
    packet: &Packet,
    opts: &BroadcastOpts,
    nsp: &str,
) -> Result<LocalBroadcast, DecodeError> {
    if packet.packet_type != EVENT {
        return fail(format!("packet type {} is not EVENT", packet.packet_type));
    }
    if !packet.data.is_json_array() {
        return fail("packet data is not an array");
    }
    let (data_json, attachments) = packet.data.to_socketio()?;
    Ok(LocalBroadcast {
        nsp: nsp.to_owned(),
        rooms: opts.rooms.clone(),
        except: opts.except.clone(),
        volatile: opts.volatile(),
        data_json,
        attachments,
    })
}

/// A socket as `fetchSockets` describes it to another server: `{id, handshake, rooms, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketDetails {
    pub id: String,
    pub handshake: Option<Payload>,
    pub rooms: Vec<String>,
    pub data: Option<Payload>,
}

impl SocketDetails {
    fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
        let fields = t.object("socket")?;
        Ok(SocketDetails {
            id: fields.req("id")?.string("socket.id")?,
            handshake: fields.get("handshake").map(Tree::payload),
            rooms: fields
                .get("rooms")
                .map(|r| r.rooms("socket.rooms"))
                .transpose()?
                .unwrap_or_default(),
            data: fields.get("data").map(Tree::payload),
        })
    }

    fn out(&self) -> Out<'_> {
        let mut members = vec![("id", Out::Str(&self.id))];
        if let Some(h) = &self.handshake {
            members.push(("handshake", Out::Payload(h)));
        }
        members.push(("rooms", Out::Strings(&self.rooms)));
        if let Some(d) = &self.data {
            members.push(("data", Out::Payload(d)));
        }
        Out::Object(members)
    }
}

fn array_items<'a>(t: Tree<'a>, what: &str) -> Result<Vec<Tree<'a>>, DecodeError> {
    match t {
        Tree::Json(raw) => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .map(|v| v.into_iter().map(Tree::Json).collect())
            .map_err(|_| DecodeError(format!("{what} is not an array"))),
        Tree::Pack(Value::Array(items)) => Ok(items.iter().map(Tree::Pack).collect()),
        Tree::Pack(_) => fail(format!("{what} is not an array")),
    }
}

// ---- classic adapter: broadcasts --------------------------------------------------------------------------------

/// A broadcast on `<key>#<nsp>#` or `<key>#<nsp>#<room>#`: msgpack `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub uid: String,
    pub packet: Packet,
    pub opts: BroadcastOpts,
}

impl Broadcast {
    /// Decodes a broadcast (msgpack only, as Node's `onmessage`); elements past the third are ignored, as Node
    /// does.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let value = read_msgpack(bytes)?;
        let Value::Array(items) = &value else {
            return fail("broadcast is not an array");
        };
        if items.len() < 3 {
            return fail("broadcast has fewer than 3 elements");
        }
        let uid = items[0]
            .as_str()
            .ok_or_else(|| DecodeError("broadcast uid is not a string".into()))?;
        Ok(Broadcast {
            uid: uid.to_owned(),
            packet: Packet::decode(Tree::Pack(&items[1]))?,
            opts: BroadcastOpts::decode(Tree::Pack(&items[2]))?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        Out::Array(vec![
            Out::Str(&self.uid),
            self.packet.out(),
            self.opts.out(),
        ])
        .encode(Encoding::Msgpack)
    }

    /// Namespace, targets and the packet's data for local delivery (the caller drops its own uid first, and
    /// broadcasts for another namespace).
    pub fn local(&self) -> Result<LocalBroadcast, DecodeError> {
        local_broadcast(&self.packet, &self.opts, self.packet.namespace())
    }
}

// ---- classic adapter: requests and responses --------------------------------------------------------------------

/// `RequestType` of `lib/index.ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Sockets = 0,
    AllRooms = 1,
    RemoteJoin = 2,
    RemoteLeave = 3,
    RemoteDisconnect = 4,
    RemoteFetch = 5,
    ServerSideEmit = 6,
    Broadcast = 7,
    BroadcastClientCount = 8,
    BroadcastAck = 9,
}

impl RequestType {
    pub fn from_u64(n: u64) -> Option<Self> {
        use RequestType::*;
        Some(match n {
            0 => Sockets,
            1 => AllRooms,
            2 => RemoteJoin,
            3 => RemoteLeave,
            4 => RemoteDisconnect,
            5 => RemoteFetch,
            6 => ServerSideEmit,
            7 => Broadcast,
            8 => BroadcastClientCount,
            9 => BroadcastAck,
            _ => return None,
        })
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// The 6.x `clients()` request; 8.x answers it but never sends it.
    Sockets {
        rooms: Vec<String>,
    },
    AllRooms,
    /// `socketsJoin`: every matching socket joins `rooms`.
    RemoteJoin {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    RemoteLeave {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    RemoteDisconnect {
        opts: BroadcastOpts,
        close: bool,
    },
    RemoteFetch {
        opts: BroadcastOpts,
    },
    /// `[event, ...args]`; with a request id the sender awaits one reply per server.
    ServerSideEmit {
        data: Payload,
    },
    /// A broadcast whose clients' acks are gathered by the origin.
    Broadcast {
        packet: Packet,
        opts: BroadcastOpts,
    },
    /// The 6.x form of REMOTE_JOIN / REMOTE_LEAVE / REMOTE_DISCONNECT, aimed at one socket (`sid`); answered
    /// with `{"requestId"}` by the server that has it.
    Legacy {
        kind: RequestType,
        sid: String,
        room: Option<String>,
        close: Option<bool>,
    },
}

/// A message on `<key>-request#<nsp>#`: `{uid, requestId, type, ...}` (members absent when unset: the
/// emitter's requests have no uid, fire-and-forget requests no request id).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub uid: Option<String>,
    pub request_id: Option<String>,
    pub body: RequestBody,
    pub encoding: Encoding,
}

impl Request {
    /// A request encoded as Node's adapter encodes it (msgpack for BROADCAST, JSON for the rest).
    pub fn new(uid: Option<&str>, request_id: Option<&str>, body: RequestBody) -> Self {
        let encoding = match body {
            RequestBody::Broadcast { .. } => Encoding::Msgpack,
            _ => Encoding::Json,
        };
        Request {
            uid: uid.map(str::to_owned),
            request_id: request_id.map(str::to_owned),
            body,
            encoding,
        }
    }

    pub fn kind(&self) -> RequestType {
        match &self.body {
            RequestBody::Sockets { .. } => RequestType::Sockets,
            RequestBody::AllRooms => RequestType::AllRooms,
            RequestBody::RemoteJoin { .. } => RequestType::RemoteJoin,
            RequestBody::RemoteLeave { .. } => RequestType::RemoteLeave,
            RequestBody::RemoteDisconnect { .. } => RequestType::RemoteDisconnect,
            RequestBody::RemoteFetch { .. } => RequestType::RemoteFetch,
            RequestBody::ServerSideEmit { .. } => RequestType::ServerSideEmit,
            RequestBody::Broadcast { .. } => RequestType::Broadcast,
            RequestBody::Legacy { kind, .. } => *kind,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let encoding = Encoding::of(bytes);
        let value;
        let fields = match encoding {
            Encoding::Json => Fields::parse_json(bytes)?,
            Encoding::Msgpack => {
                value = read_msgpack(bytes)?;
                Tree::Pack(&value).object("request")?
            }
        };
        let n = fields.req("type")?.u64("type")?;
        let kind = RequestType::from_u64(n)
            .ok_or_else(|| DecodeError(format!("unknown request type {n}")))?;
        let opts = || fields.req("opts").and_then(BroadcastOpts::decode);
        let legacy = || -> Result<RequestBody, DecodeError> {
            Ok(RequestBody::Legacy {
                kind,
                sid: fields.req("sid")?.string("sid")?,
                room: fields.string("room")?,
                close: fields.get("close").map(|c| c.bool("close")).transpose()?,
            })
        };
        let body = match kind {
            RequestType::Sockets => RequestBody::Sockets {
                rooms: fields
                    .get("rooms")
                    .map(|r| r.rooms("rooms"))
                    .transpose()?
                    .unwrap_or_default(),
            },
            RequestType::AllRooms => RequestBody::AllRooms,
            RequestType::RemoteJoin | RequestType::RemoteLeave if fields.get("opts").is_none() => {
                legacy()?
            }
            RequestType::RemoteJoin => RequestBody::RemoteJoin {
                opts: opts()?,
                rooms: fields.req("rooms")?.rooms("rooms")?,
            },
            RequestType::RemoteLeave => RequestBody::RemoteLeave {
                opts: opts()?,
                rooms: fields.req("rooms")?.rooms("rooms")?,
            },
            RequestType::RemoteDisconnect if fields.get("opts").is_none() => legacy()?,
            RequestType::RemoteDisconnect => RequestBody::RemoteDisconnect {
                opts: opts()?,
                // `socket.disconnect(undefined)` is `disconnect(false)`.
                close: fields
                    .get("close")
                    .map(|c| c.bool("close"))
                    .transpose()?
                    .unwrap_or(false),
            },
            RequestType::RemoteFetch => RequestBody::RemoteFetch { opts: opts()? },
            RequestType::ServerSideEmit => {
                let data = fields.req("data")?.payload();
                if !data.is_json_array() {
                    return fail("server-side emit data is not an array");
                }
                RequestBody::ServerSideEmit { data }
            }
            RequestType::Broadcast => RequestBody::Broadcast {
                packet: Packet::decode(fields.req("packet")?)?,
                opts: opts()?,
            },
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
                return fail(format!("type {n} is a response"));
            }
        };
        Ok(Request {
            uid: fields.string("uid")?,
            request_id: fields.string("requestId")?,
            body,
            encoding,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut members = Vec::new();
        if let Some(uid) = &self.uid {
            members.push(("uid", Out::Str(uid)));
        }
        if let Some(id) = &self.request_id {
            members.push(("requestId", Out::Str(id)));
        }
        members.push(("type", Out::UInt(self.kind() as u64)));
        match &self.body {
            RequestBody::Sockets { rooms } => members.push(("rooms", Out::Strings(rooms))),
            RequestBody::AllRooms => {}
            RequestBody::RemoteJoin { opts, rooms } | RequestBody::RemoteLeave { opts, rooms } => {
                members.push(("opts", opts.out()));
                members.push(("rooms", Out::Strings(rooms)));
            }
            RequestBody::RemoteDisconnect { opts, close } => {
                members.push(("opts", opts.out()));
                members.push(("close", Out::Bool(*close)));
            }
            RequestBody::RemoteFetch { opts } => members.push(("opts", opts.out())),
            RequestBody::ServerSideEmit { data } => members.push(("data", Out::Payload(data))),
            RequestBody::Broadcast { packet, opts } => {
                members.push(("packet", packet.out()));
                members.push(("opts", opts.out()));
            }
            RequestBody::Legacy {
                sid, room, close, ..
            } => {
                members.push(("sid", Out::Str(sid)));
                if let Some(room) = room {
                    members.push(("room", Out::Str(room)));
                }
                if let Some(close) = close {
                    members.push(("close", Out::Bool(*close)));
                }
            }
        }
        Out::Object(members).encode(self.encoding)
    }

    /// For a BROADCAST request: namespace, targets and data for local delivery (the ack id is the receiver's).
    pub fn local_broadcast(&self, nsp: &str) -> Option<Result<LocalBroadcast, DecodeError>> {
        match &self.body {
            RequestBody::Broadcast { packet, opts } => Some(local_broadcast(packet, opts, nsp)),
            _ => None,
        }
    }
}

/// One entry of a `sockets` response: an id (SOCKETS) or a socket's details (REMOTE_FETCH).
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEntry {
    Id(String),
    Details(SocketDetails),
}

/// What a response carries. The first three have no `type` on the wire: the requester knows what it asked by
/// the request id.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    /// `{"requestId","sockets":[..]}`: socket ids (SOCKETS) or details (REMOTE_FETCH).
    Sockets { sockets: Vec<SocketEntry> },
    /// `{"requestId","rooms":[..]}` (ALL_ROOMS).
    Rooms { rooms: Vec<String> },
    /// `{"requestId"}`: a legacy join/leave/disconnect was done.
    Done,
    /// `{"type":6,"requestId","data"}`: one server's reply to a server-side emit (absent when `undefined`).
    ServerSideEmit { data: Option<Payload> },
    /// `{"type":8,"requestId","clientCount"}`: how many clients a server sent a broadcast-with-ack to.
    BroadcastClientCount { client_count: u64 },
    /// msgpack `{type: 9, requestId, packet}`: one client's reply (its first argument; absent when `undefined`).
    BroadcastAck { packet: Option<Payload> },
}

/// A message on `<key>-response#<nsp>#` (or `...#<uid>#`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub request_id: String,
    pub body: ResponseBody,
    pub encoding: Encoding,
}

impl Response {
    /// A response encoded as Node encodes it (msgpack for BROADCAST_ACK, JSON for the rest).
    pub fn new(request_id: &str, body: ResponseBody) -> Self {
        let encoding = match body {
            ResponseBody::BroadcastAck { .. } => Encoding::Msgpack,
            _ => Encoding::Json,
        };
        Response {
            request_id: request_id.to_owned(),
            body,
            encoding,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let encoding = Encoding::of(bytes);
        let value;
        let fields = match encoding {
            Encoding::Json => Fields::parse_json(bytes)?,
            Encoding::Msgpack => {
                value = read_msgpack(bytes)?;
                Tree::Pack(&value).object("response")?
            }
        };
        let request_id = fields.req("requestId")?.string("requestId")?;
        let body = match fields.get("type").map(|t| t.u64("type")).transpose()? {
            Some(6) => ResponseBody::ServerSideEmit {
                data: fields.get("data").map(Tree::payload),
            },
            Some(8) => ResponseBody::BroadcastClientCount {
                client_count: fields.req("clientCount")?.u64("clientCount")?,
            },
            Some(9) => ResponseBody::BroadcastAck {
                packet: fields.get("packet").map(Tree::payload),
            },
            Some(n) => return fail(format!("unknown response type {n}")),
            None => {
                if let Some(sockets) = fields.get("sockets") {
                    let sockets = array_items(sockets, "sockets")?
                        .into_iter()
                        .map(|s| match s.string("socket") {
                            Ok(id) => Ok(SocketEntry::Id(id)),
                            Err(_) => SocketDetails::decode(s).map(SocketEntry::Details),
                        })
                        .collect::<Result<_, _>>()?;
                    ResponseBody::Sockets { sockets }
                } else if let Some(rooms) = fields.get("rooms") {
                    ResponseBody::Rooms {
                        rooms: rooms.rooms("rooms")?,
                    }
                } else {
                    ResponseBody::Done
                }
            }
        };
        Ok(Response {
            request_id,
            body,
            encoding,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let id = ("requestId", Out::Str(&self.request_id));
        let members = match &self.body {
            ResponseBody::Sockets { sockets } => vec![
                id,
                (
                    "sockets",
                    Out::Array(
                        sockets
                            .iter()
                            .map(|s| match s {
                                SocketEntry::Id(id) => Out::Str(id),
                                SocketEntry::Details(d) => d.out(),
                            })
                            .collect(),
                    ),
                ),
            ],
            ResponseBody::Rooms { rooms } => vec![id, ("rooms", Out::Strings(rooms))],
            ResponseBody::Done => vec![id],
            ResponseBody::ServerSideEmit { data } => {
                let mut m = vec![("type", Out::UInt(RequestType::ServerSideEmit as u64)), id];
                if let Some(d) = data {
                    m.push(("data", Out::Payload(d)));
                }
                m
            }
            ResponseBody::BroadcastClientCount { client_count } => vec![
                ("type", Out::UInt(RequestType::BroadcastClientCount as u64)),
                id,
                ("clientCount", Out::UInt(*client_count)),
            ],
            ResponseBody::BroadcastAck { packet } => {
                let mut m = vec![("type", Out::UInt(RequestType::BroadcastAck as u64)), id];
                if let Some(p) = packet {
                    m.push(("packet", Out::Payload(p)));
                }
                m
            }
        };
        Out::Object(members).encode(self.encoding)
    }
}

// ---- classic adapter: channels ----------------------------------------------------------------------------------

/// The classic adapter's channels for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    broadcast: String,
    request: String,
    response: String,
    own_response: String,
}

/// What an incoming channel is, for one namespace's [`Channels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'c> {
    /// A broadcast; `room` when it came on a room's channel (Node drops those for rooms it does not have,
    /// before decoding).
    Broadcast {
        room: Option<&'c str>,
    },
    Request,
    Response,
}

impl Channels {
    /// `key` is the `key` option (`socket.io` by default), `uid` this server's uid for the namespace.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let response = format!("{key}-response#{nsp}#");
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            own_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// `<key>#<nsp>#`: broadcasts to the whole namespace or to several rooms.
    pub fn broadcast(&self) -> &str {
        &self.broadcast
    }

    /// The pattern subscribed with PSUBSCRIBE: `<key>#<nsp>#*`.
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// `<key>#<nsp>#<room>#`.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.broadcast)
    }

    /// Where Node publishes a broadcast: the room's channel when it targets exactly one room.
    pub fn for_broadcast(&self, opts: &BroadcastOpts) -> String {
        match opts.rooms.as_slice() {
            [room] => self.room(room),
            _ => self.broadcast.clone(),
        }
    }

    pub fn request(&self) -> &str {
        &self.request
    }

    /// The shared response channel (Node's default, `publishOnSpecificResponseChannel: false`).
    pub fn response(&self) -> &str {
        &self.response
    }

    /// `<key>-response#<nsp>#<uid>#`: this server's own response channel.
    pub fn own_response(&self) -> &str {
        &self.own_response
    }

    /// Another server's own response channel.
    pub fn response_for(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// The three channels subscribed with SUBSCRIBE, in Node's order.
    pub fn subscriptions(&self) -> [&str; 3] {
        [&self.request, &self.response, &self.own_response]
    }

    pub fn classify<'c>(&self, channel: &'c [u8]) -> Option<Incoming<'c>> {
        if channel == self.request.as_bytes() {
            return Some(Incoming::Request);
        }
        if channel.starts_with(self.response.as_bytes()) {
            return Some(Incoming::Response);
        }
        let rest = channel.strip_prefix(self.broadcast.as_bytes())?;
        // Node: `channel.slice(prefix.length, -1)`.
        let room = std::str::from_utf8(&rest[..rest.len().saturating_sub(1)]).ok()?;
        Some(Incoming::Broadcast {
            room: (!room.is_empty()).then_some(room),
        })
    }
}

// ---- sharded adapter --------------------------------------------------------------------------------------------

/// `MessageType` of socket.io-adapter's `cluster-adapter.ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    InitialHeartbeat = 1,
    Heartbeat = 2,
    Broadcast = 3,
    SocketsJoin = 4,
    SocketsLeave = 5,
    DisconnectSockets = 6,
    FetchSockets = 7,
    FetchSocketsResponse = 8,
    ServerSideEmit = 9,
    ServerSideEmitResponse = 10,
    BroadcastClientCount = 11,
    BroadcastAck = 12,
    AdapterClose = 13,
}

/// The `data` of a sharded message, by type (members in Node's order).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterBody {
    InitialHeartbeat,
    Heartbeat,
    AdapterClose,
    /// `{packet, opts}`, with ack `{packet, requestId, opts}`.
    Broadcast {
        packet: Packet,
        request_id: Option<String>,
        opts: BroadcastOpts,
    },
    SocketsJoin {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    SocketsLeave {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    DisconnectSockets {
        opts: BroadcastOpts,
        close: Option<bool>,
    },
    FetchSockets {
        opts: BroadcastOpts,
        request_id: String,
    },
    FetchSocketsResponse {
        request_id: String,
        sockets: Vec<SocketDetails>,
    },
    /// `{packet}`, with ack `{requestId, packet}`; `packet` is `[event, ...args]`.
    ServerSideEmit {
        request_id: Option<String>,
        packet: Payload,
    },
    ServerSideEmitResponse {
        request_id: String,
        packet: Option<Payload>,
    },
    BroadcastClientCount {
        request_id: String,
        client_count: u64,
    },
    BroadcastAck {
        request_id: String,
        packet: Option<Payload>,
    },
}

impl ClusterBody {
    pub fn kind(&self) -> MessageType {
        match self {
            ClusterBody::InitialHeartbeat => MessageType::InitialHeartbeat,
            ClusterBody::Heartbeat => MessageType::Heartbeat,
            ClusterBody::AdapterClose => MessageType::AdapterClose,
            ClusterBody::Broadcast { .. } => MessageType::Broadcast,
            ClusterBody::SocketsJoin { .. } => MessageType::SocketsJoin,
            ClusterBody::SocketsLeave { .. } => MessageType::SocketsLeave,
            ClusterBody::DisconnectSockets { .. } => MessageType::DisconnectSockets,
            ClusterBody::FetchSockets { .. } => MessageType::FetchSockets,
            ClusterBody::FetchSocketsResponse { .. } => MessageType::FetchSocketsResponse,
            ClusterBody::ServerSideEmit { .. } => MessageType::ServerSideEmit,
            ClusterBody::ServerSideEmitResponse { .. } => MessageType::ServerSideEmitResponse,
            ClusterBody::BroadcastClientCount { .. } => MessageType::BroadcastClientCount,
            ClusterBody::BroadcastAck { .. } => MessageType::BroadcastAck,
        }
    }

    /// Whether this is a response (it goes to the requester's own channel).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            ClusterBody::FetchSocketsResponse { .. }
                | ClusterBody::ServerSideEmitResponse { .. }
                | ClusterBody::BroadcastClientCount { .. }
                | ClusterBody::BroadcastAck { .. }
        )
    }

    fn has_binary(&self) -> bool {
        let opt = |p: &Option<Payload>| p.as_ref().is_some_and(Payload::has_binary);
        match self {
            ClusterBody::Broadcast { packet, .. } => packet.data.has_binary(),
            ClusterBody::BroadcastAck { packet, .. }
            | ClusterBody::ServerSideEmitResponse { packet, .. } => opt(packet),
            ClusterBody::ServerSideEmit { packet, .. } => packet.has_binary(),
            ClusterBody::FetchSocketsResponse { sockets, .. } => {
                sockets.iter().any(|s| opt(&s.handshake) || opt(&s.data))
            }
            _ => false,
        }
    }

    fn decode<'a>(n: u64, tree: Option<Tree<'a>>) -> Result<Self, DecodeError> {
        let data = || -> Result<Fields<'a>, DecodeError> {
            tree.ok_or_else(|| DecodeError("missing data".into()))?
                .object("data")
        };
        let rid = |f: &Fields<'_>| f.req("requestId").and_then(|t| t.string("requestId"));
        let opts = |f: &Fields<'_>| f.req("opts").and_then(BroadcastOpts::decode);
        let rooms = |f: &Fields<'_>| f.req("rooms").and_then(|t| t.rooms("rooms"));
        Ok(match n {
            1 => ClusterBody::InitialHeartbeat,
            2 => ClusterBody::Heartbeat,
            13 => ClusterBody::AdapterClose,
            3 => {
                let f = data()?;
                ClusterBody::Broadcast {
                    packet: Packet::decode(f.req("packet")?)?,
                    request_id: f.string("requestId")?,
                    opts: opts(&f)?,
                }
            }
            4 => {
                let f = data()?;
                ClusterBody::SocketsJoin {
                    opts: opts(&f)?,
                    rooms: rooms(&f)?,
                }
            }
            5 => {
                let f = data()?;
                ClusterBody::SocketsLeave {
                    opts: opts(&f)?,
                    rooms: rooms(&f)?,
                }
            }
            6 => {
                let f = data()?;
                ClusterBody::DisconnectSockets {
                    opts: opts(&f)?,
                    close: f.get("close").map(|c| c.bool("close")).transpose()?,
                }
            }
            7 => {
                let f = data()?;
                ClusterBody::FetchSockets {
                    opts: opts(&f)?,
                    request_id: rid(&f)?,
                }
            }
            8 => {
                let f = data()?;
                let sockets = array_items(f.req("sockets")?, "sockets")?
                    .into_iter()
                    .map(SocketDetails::decode)
                    .collect::<Result<_, _>>()?;
                ClusterBody::FetchSocketsResponse {
                    request_id: rid(&f)?,
                    sockets,
                }
            }
            9 => {
                let f = data()?;
                let packet = f.req("packet")?.payload();
                if !packet.is_json_array() {
                    return fail("server-side emit packet is not an array");
                }
                ClusterBody::ServerSideEmit {
                    request_id: f.string("requestId")?,
                    packet,
                }
            }
            10 => {
                let f = data()?;
                ClusterBody::ServerSideEmitResponse {
                    request_id: rid(&f)?,
                    packet: f.get("packet").map(Tree::payload),
                }
            }
            11 => {
                let f = data()?;
                ClusterBody::BroadcastClientCount {
                    request_id: rid(&f)?,
                    client_count: f.req("clientCount")?.u64("clientCount")?,
                }
            }
            12 => {
                let f = data()?;
                ClusterBody::BroadcastAck {
                    request_id: rid(&f)?,
                    packet: f.get("packet").map(Tree::payload),
                }
            }
            _ => return fail(format!("unknown message type {n}")),
        })
    }

    fn data_out(&self) -> Option<Out<'_>> {
        let members = match self {
            ClusterBody::InitialHeartbeat | ClusterBody::Heartbeat | ClusterBody::AdapterClose => {
                return None
            }
            ClusterBody::Broadcast {
                packet,
                request_id,
                opts,
            } => {
                let mut m = vec![("packet", packet.out())];
                if let Some(id) = request_id {
                    m.push(("requestId", Out::Str(id)));
                }
                m.push(("opts", opts.out()));
                m
            }
            ClusterBody::SocketsJoin { opts, rooms }
            | ClusterBody::SocketsLeave { opts, rooms } => {
                vec![("opts", opts.out()), ("rooms", Out::Strings(rooms))]
            }
            ClusterBody::DisconnectSockets { opts, close } => {
                let mut m = vec![("opts", opts.out())];
                if let Some(c) = close {
                    m.push(("close", Out::Bool(*c)));
                }
                m
            }
            ClusterBody::FetchSockets { opts, request_id } => {
                vec![("opts", opts.out()), ("requestId", Out::Str(request_id))]
            }
            ClusterBody::FetchSocketsResponse {
                request_id,
                sockets,
            } => vec![
                ("requestId", Out::Str(request_id)),
                (
                    "sockets",
                    Out::Array(sockets.iter().map(SocketDetails::out).collect()),
                ),
            ],
            ClusterBody::ServerSideEmit { request_id, packet } => {
                let mut m = Vec::new();
                if let Some(id) = request_id {
                    m.push(("requestId", Out::Str(id)));
                }
                m.push(("packet", Out::Payload(packet)));
                m
            }
            ClusterBody::ServerSideEmitResponse { request_id, packet }
            | ClusterBody::BroadcastAck { request_id, packet } => {
                let mut m = vec![("requestId", Out::Str(request_id))];
                if let Some(p) = packet {
                    m.push(("packet", Out::Payload(p)));
                }
                m
            }
            ClusterBody::BroadcastClientCount {
                request_id,
                client_count,
            } => {
                vec![
                    ("requestId", Out::Str(request_id)),
                    ("clientCount", Out::UInt(*client_count)),
                ]
            }
        };
        Some(Out::Object(members))
    }
}

/// A sharded adapter's message: `{type, data, uid, nsp}` on `<prefix>#<nsp>#` (or a room's or a server's
/// channel), JSON unless its data holds binary.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    pub uid: String,
    pub nsp: String,
    pub body: ClusterBody,
    pub encoding: Encoding,
}

impl ClusterMessage {
    /// A message encoded as the sharded adapter encodes it: msgpack when its type may carry binary and does.
    pub fn new(uid: &str, nsp: &str, body: ClusterBody) -> Self {
        let encoding = if body.has_binary() {
            Encoding::Msgpack
        } else {
            Encoding::Json
        };
        ClusterMessage {
            uid: uid.to_owned(),
            nsp: nsp.to_owned(),
            body,
            encoding,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let encoding = Encoding::of(bytes);
        let value;
        let fields = match encoding {
            Encoding::Json => Fields::parse_json(bytes)?,
            Encoding::Msgpack => {
                value = read_msgpack(bytes)?;
                Tree::Pack(&value).object("message")?
            }
        };
        let n = fields.req("type")?.u64("type")?;
        Ok(ClusterMessage {
            uid: fields.req("uid")?.string("uid")?,
            nsp: fields.req("nsp")?.string("nsp")?,
            body: ClusterBody::decode(n, fields.get("data"))?,
            encoding,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut members = vec![("type", Out::UInt(self.body.kind() as u64))];
        if let Some(data) = self.body.data_out() {
            members.push(("data", data));
        }
        members.push(("uid", Out::Str(&self.uid)));
        members.push(("nsp", Out::Str(&self.nsp)));
        Out::Object(members).encode(self.encoding)
    }

    /// For a BROADCAST: namespace, targets and data for local delivery.
    pub fn local_broadcast(&self) -> Option<Result<LocalBroadcast, DecodeError>> {
        match &self.body {
            ClusterBody::Broadcast { packet, opts, .. } => {
                Some(local_broadcast(packet, opts, &self.nsp))
            }
            _ => None,
        }
    }
}

/// The sharded adapter's `subscriptionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace.
    Static,
    /// Plus one per public room (not a socket id): the default.
    #[default]
    Dynamic,
    /// Plus one per room, socket ids included.
    DynamicPrivate,
}

/// Node's `looksLikeASocketId`: a string of 20 (UTF-16) characters.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// The sharded adapter's channels for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedChannels {
    main: String,
    own_response: String,
    pub mode: SubscriptionMode,
}

impl ShardedChannels {
    pub fn new(prefix: &str, nsp: &str, uid: &str, mode: SubscriptionMode) -> Self {
        let main = format!("{prefix}#{nsp}#");
        ShardedChannels {
            own_response: format!("{main}{uid}#"),
            main,
            mode,
        }
    }

    /// `<prefix>#<nsp>#`, SSUBSCRIBEd by every server; its SHARDNUMSUB is the server count.
    pub fn main(&self) -> &str {
        &self.main
    }

    /// `<prefix>#<nsp>#<uid>#`: responses to this server.
    pub fn own_response(&self) -> &str {
        &self.own_response
    }

    /// Where responses to server `uid` go.
    pub fn response_to(&self, uid: &str) -> String {
        format!("{}{uid}#", self.main)
    }

    /// A room's dynamic channel.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// Whether a server subscribes to `room`'s own channel when the room appears (`is_socket_id`: the room is
    /// one of this server's socket ids).
    pub fn subscribes_room(&self, is_socket_id: bool) -> bool {
        match self.mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !is_socket_id,
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// Node's `computeChannel`: a broadcast without ack to exactly one room goes to that room's channel (in
    /// `dynamic` mode only when the room does not look like a socket id); everything else to the main channel.
    /// Responses go to [`Self::response_to`] the requester instead.
    pub fn for_message(&self, msg: &ClusterMessage) -> String {
        if let ClusterBody::Broadcast {
            request_id: None,
            opts,
            ..
        } = &msg.body
        {
            if let [room] = opts.rooms.as_slice() {
                let dynamic = match self.mode {
                    SubscriptionMode::Static => false,
                    SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
                    SubscriptionMode::DynamicPrivate => true,
                };
                if dynamic {
                    return self.room(room);
                }
            }
        }
        self.main.clone()
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
