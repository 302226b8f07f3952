//! Reading the fields of a message in either encoding (a JSON object with raw members, or a msgpack map), and
//! writing one back byte for byte as Node does.
use rmp::encode::ByteBuf;
use rmpv::Value;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt::{self, Write as _};

use super::payload::{
    is_undefined, json_to_value, read_msgpack, value_to_json, write_json_f64, write_json_str,
    write_msgpack, Payload, VecWriter,
};
use super::{fail, DecodeError, Encoding};

// ---- reading fields of a JSON or msgpack object -----------------------------------------------------------------

/// Reads a message that is one object, JSON or msgpack as its first byte says (Node's receivers decide so for
/// requests, responses and sharded messages alike), and hands its members to `read` with the encoding it came in.
/// `what` names the message in the error when it is no object.
pub(super) fn read_message<T>(
    bytes: &[u8],
    what: &str,
    read: impl FnOnce(&Fields<'_>, Encoding) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    match Encoding::of(bytes) {
        Encoding::Json => read(&Fields::parse_json(bytes)?, Encoding::Json),
        Encoding::Msgpack => {
            let value = read_msgpack(bytes)?;
            read(&Tree::Pack(&value).object(what)?, Encoding::Msgpack)
        }
    }
}

/// A member of a decoded message, in either encoding.
#[derive(Clone, Copy)]
pub(super) enum Tree<'a> {
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
pub(super) struct Fields<'a>(pub(super) Vec<(String, Tree<'a>)>);

impl<'a> Fields<'a> {
    pub(super) fn parse_json(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let obj: JsonObject<'a> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("json: {e}")))?;
        Ok(Fields(
            obj.0.into_iter().map(|(k, v)| (k, Tree::Json(v))).collect(),
        ))
    }

    /// The member (the last one of that name, as `JSON.parse` and notepack keep), None if absent or null.
    pub(super) fn get(&self, key: &str) -> Option<Tree<'a>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    pub(super) fn req(&self, key: &str) -> Result<Tree<'a>, DecodeError> {
        self.get(key)
            .ok_or_else(|| DecodeError(format!("missing {key}")))
    }

    pub(super) fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        self.get(key).map(|t| t.string(key)).transpose()
    }
}

impl<'a> Tree<'a> {
    pub(super) fn is_null(self) -> bool {
        match self {
            Tree::Json(raw) => raw.get() == "null",
            Tree::Pack(v) => v.is_nil() || is_undefined(v),
        }
    }

    pub(super) fn object(self, what: &str) -> Result<Fields<'a>, DecodeError> {
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

    pub(super) fn string(self, what: &str) -> Result<String, DecodeError> {
        match self {
            Tree::Json(raw) => serde_json::from_str::<String>(raw.get())
                .map_err(|_| DecodeError(format!("{what} is not a string"))),
            Tree::Pack(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| DecodeError(format!("{what} is not a string"))),
        }
    }

    pub(super) fn u64(self, what: &str) -> Result<u64, DecodeError> {
        let n = match self {
            Tree::Json(raw) => serde_json::from_str::<u64>(raw.get()).ok(),
            Tree::Pack(v) => v.as_u64(),
        };
        n.ok_or_else(|| DecodeError(format!("{what} is not a non-negative integer")))
    }

    pub(super) fn bool(self, what: &str) -> Result<bool, DecodeError> {
        let b = match self {
            Tree::Json(raw) => serde_json::from_str::<bool>(raw.get()).ok(),
            Tree::Pack(v) => v.as_bool(),
        };
        b.ok_or_else(|| DecodeError(format!("{what} is not a boolean")))
    }

    pub(super) fn payload(self) -> Payload {
        match self {
            Tree::Json(raw) => Payload::Json(raw.to_owned()),
            Tree::Pack(v) => Payload::Msgpack(v.clone()),
        }
    }

    /// Room names: strings, or numbers (JavaScript allows `io.to(42)`; Node's rooms then hold the number, whose
    /// string form is the room's channel name).
    pub(super) fn rooms(self, what: &str) -> Result<Vec<String>, DecodeError> {
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

    pub(super) fn scalar(self, what: &str) -> Result<Scalar, DecodeError> {
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
pub(super) enum Out<'a> {
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
    pub(super) fn encode(&self, encoding: Encoding) -> Vec<u8> {
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
    pub(super) fn json(&self, out: &mut Vec<u8>) {
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

    pub(super) fn msgpack(&self, out: &mut ByteBuf) {
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
