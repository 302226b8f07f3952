//! Application payloads: a value kept in the encoding it came in (the conversions are crate::notepack's).
use rmpv::Value;
use serde_json::value::RawValue;

#[cfg(test)]
pub use crate::notepack::write_json_date;
pub use crate::notepack::{
    is_undefined, json_to_value, read_msgpack, value_to_json, write_json_f64, write_json_str,
    write_msgpack, VecWriter,
};
use crate::notepack::{value_has_binary, DecodeError};

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

    pub(super) fn is_json_array(&self) -> bool {
        match self {
            Payload::Json(raw) => raw.get().trim_start().starts_with('['),
            Payload::Msgpack(v) => matches!(v, Value::Array(_)),
        }
    }
}
