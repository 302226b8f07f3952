//! msgpack as notepack.io writes and reads it (the msgpack of Node's socket.io ecosystem: socket.io-msgpack-parser,
//! the Redis adapter and emitter), and the conversions between its values and Socket.IO's JSON form: msgpack
//! values to JSON text as Node's `JSON.stringify` writes what notepack decoded (binary values as placeholders and
//! attachments, or as Node's Buffer JSON), and JSON text to msgpack values (placeholders back to binary).
//! Shared by the msgpack parser (socketio::msgpack) and the Redis adapter's codec (adapter::redis).
use rmp::encode::ByteBuf;
use rmpv::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// Nesting deeper than this is refused, in msgpack as in JSON (serde_json's own limit is 128 too).
pub const MAX_DEPTH: usize = 128;

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

pub fn value_has_binary(v: &Value) -> bool {
    match v {
        Value::Binary(_) => true,
        Value::Ext(ty, data) => matches!(ext_kind(*ty, data), Ext::Bytes(_) | Ext::Pair(..)),
        Value::Array(items) => items.iter().any(value_has_binary),
        Value::Map(entries) => entries.iter().any(|(_, v)| value_has_binary(v)),
        _ => false,
    }
}

pub fn is_undefined(v: &Value) -> bool {
    matches!(v, Value::Ext(ty, data) if matches!(ext_kind(*ty, data), Ext::Undefined))
}

/// `JSON.stringify` of a msgpack tree as notepack decodes it. With `attachments`, binary values become
/// socket.io-parser placeholders and are collected; without, they become Node's Buffer JSON.
pub fn value_to_json(
    v: &Value,
    attachments: Option<&mut Vec<Vec<u8>>>,
) -> Result<String, DecodeError> {
    write_json(v, attachments, false)
}

/// A msgpack tree as the JSON text a Python reader turns back into the same values, for arguments that go
/// to Python (the msgpack parser's events and acks): as `value_to_json` with attachments, but floats stay
/// floats (`3.0`, not JavaScript's `3`) and NaN and the infinities are written `NaN`, `Infinity` and
/// `-Infinity` (which Python's and pydantic's JSON readers take), where `JSON.stringify` writes null.
pub fn value_to_python_json(
    v: &Value,
    attachments: &mut Vec<Vec<u8>>,
) -> Result<String, DecodeError> {
    write_json(v, Some(attachments), true)
}

/// `value_to_python_json` of an array of `items` (an EVENT's arguments after its name), without copying them.
pub fn array_to_python_json(
    items: &[Value],
    attachments: &mut Vec<Vec<u8>>,
) -> Result<String, DecodeError> {
    let mut w = JsonWriter {
        out: Vec::new(),
        attachments: Some(attachments),
        exact_floats: true,
    };
    w.array(items)?;
    String::from_utf8(w.out).map_err(|e| DecodeError(format!("json output: {e}")))
}

fn write_json(
    v: &Value,
    attachments: Option<&mut Vec<Vec<u8>>>,
    exact_floats: bool,
) -> Result<String, DecodeError> {
    let mut w = JsonWriter {
        out: Vec::new(),
        attachments,
        exact_floats,
    };
    w.value(v)?;
    String::from_utf8(w.out).map_err(|e| DecodeError(format!("json output: {e}")))
}

struct JsonWriter<'a> {
    out: Vec<u8>,
    attachments: Option<&'a mut Vec<Vec<u8>>>,
    exact_floats: bool,
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

pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes as JSON.stringify does: quote, backslash, control characters (\b \f \n \r \t, else
    // \u00xx); everything else stays literal.
    let _ = serde_json::to_writer(out, s);
}

/// A number as JavaScript's `JSON.stringify` writes it: non-finite -> null, integral values below 1e21 without a
/// fraction, others in the shortest form that reads back the same.
pub fn write_json_f64(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
    } else if f == f.trunc() && f.abs() < 1e21 {
        let _ = write!(VecWriter(out), "{:.0}", if f == 0.0 { 0.0 } else { f });
    } else {
        let _ = serde_json::to_writer(out, &f);
    }
}

pub struct VecWriter<'a>(pub &'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `Date.prototype.toJSON`: ISO 8601 with milliseconds in UTC, or null for an invalid date.
pub fn write_json_date(out: &mut Vec<u8>, ms: f64) {
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
    fn float(&mut self, f: f64) {
        if !self.exact_floats {
            write_json_f64(&mut self.out, f);
        } else if f.is_nan() {
            self.out.extend_from_slice(b"NaN");
        } else if f.is_infinite() {
            let token: &[u8] = if f > 0.0 { b"Infinity" } else { b"-Infinity" };
            self.out.extend_from_slice(token);
        } else {
            // serde_json writes the shortest text that reads back the same double, with ".0" when integral.
            let _ = serde_json::to_writer(&mut self.out, &f);
        }
    }

    fn array(&mut self, items: &[Value]) -> Result<(), DecodeError> {
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
        Ok(())
    }

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
            Value::F32(f) => self.float(f64::from(*f)),
            Value::F64(f) => self.float(*f),
            Value::String(s) => match s.as_str() {
                Some(s) => write_json_str(&mut self.out, s),
                None => write_json_str(&mut self.out, &String::from_utf8_lossy(s.as_bytes())),
            },
            Value::Binary(b) => self.binary(b),
            Value::Array(items) => self.array(items)?,
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
    read_json(text, attachments, false)
}

/// As `json_to_value`, but numbers as Python wrote them, for the msgpack parser's output: integers exact (within
/// 64 bits), floats as float64 even when integral. A JavaScript peer reads the same numbers either way.
pub fn json_to_exact_value(
    text: &str,
    attachments: Option<&[Vec<u8>]>,
) -> Result<Value, DecodeError> {
    read_json(text, attachments, true)
}

fn read_json(
    text: &str,
    attachments: Option<&[Vec<u8>]>,
    exact: bool,
) -> Result<Value, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ToValue { attachments, exact }
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
    exact: bool,
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
        Ok(if self.exact || n.unsigned_abs() <= MAX_SAFE_INTEGER {
            Value::from(n)
        } else {
            number_value(n as f64)
        })
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(if self.exact || n <= MAX_SAFE_INTEGER {
            Value::from(n)
        } else {
            number_value(n as f64)
        })
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(if self.exact {
            Value::F64(f)
        } else {
            number_value(f)
        })
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

/// Bytes from hex text, for the tests' vectors (recorded from Node).
#[cfg(test)]
pub fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
