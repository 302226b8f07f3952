//! Socket.IO packets as `socket.io-msgpack-parser` 3.x writes them (the official clients' `parser` option): one
//! binary Engine.IO message per packet, a msgpack map `{type, data, nsp, id}` as notepack.io encodes the packet
//! object. There are no BINARY_EVENT / BINARY_ACK types and no attachments: binary values sit in the data.
//!
//! The packet is turned into what the rest of the layer already handles (a `Packet` whose data is JSON text with
//! `{"_placeholder":true,"num":n}` for each binary value, and the attachments), so everything above the codec is
//! the same for both parsers; going out, the JSON text the application wrote is turned back into msgpack. The
//! conversions are `crate::notepack`'s, shared with the Redis adapter.
//!
//! Validation is `socket.io-msgpack-parser`'s `checkPacket` (type an integer 0..=4, nsp a string, data as each
//! type needs it, id an integer), plus what `socket.io-parser` checks of an EVENT's name (a string that is not
//! reserved, or a number), which the msgpack parser leaves to the application.
use std::fmt;

use rmp::encode::ByteBuf;
use rmpv::Value;

use super::packet::{EventArgs, Packet, PacketType, MAX_ID, RESERVED_EVENTS};
use crate::notepack::{self, is_undefined, DecodeError};

/// A packet read from one binary message (also what the layer makes of a text packet and its attachments).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `data` is JSON text (None for an EVENT taken apart: see `event`).
    pub packet: Packet,
    /// An id that is no JavaScript-safe non-negative integer (over MAX_ID; with msgpack, negative too), as the
    /// JavaScript number it is.
    pub js_id: Option<f64>,
    /// The binary values of an EVENT's or ACK's data, which its JSON names by placeholders.
    pub attachments: Vec<Vec<u8>>,
    /// An EVENT's data taken apart (the text parser's is taken apart later, by the layer).
    pub event: Option<EventArgs>,
}

fn invalid<T>(what: &str) -> Result<T, DecodeError> {
    Err(DecodeError(what.to_owned()))
}

/// A JavaScript object's property as notepack builds it: the last of repeated keys wins, `undefined` is absent.
fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .rev()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .filter(|v| !is_undefined(v))
}

/// `Number.isInteger`: an integer, or a float with no fraction.
fn integer(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(n) => n
            .as_u64()
            .map(|u| u as f64)
            .or(n.as_i64().map(|i| i as f64)),
        Value::F32(_) | Value::F64(_) => v.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0),
        _ => None,
    }
}

fn kind_of(v: Option<&Value>) -> Result<PacketType, DecodeError> {
    Ok(match v.and_then(integer) {
        Some(0.0) => PacketType::Connect,
        Some(1.0) => PacketType::Disconnect,
        Some(2.0) => PacketType::Event,
        Some(3.0) => PacketType::Ack,
        Some(4.0) => PacketType::ConnectError,
        _ => return invalid("invalid packet type"),
    })
}

/// The id, or the JavaScript number it is when it does not fit `Packet::id`.
fn id_of(v: Option<&Value>) -> Result<(Option<u64>, Option<f64>), DecodeError> {
    let Some(v) = v else {
        return Ok((None, None));
    };
    if let Some(u) = v.as_u64().filter(|&u| u <= MAX_ID) {
        return Ok((Some(u), None));
    }
    match integer(v) {
        Some(f) if (0.0..=MAX_ID as f64).contains(&f) => Ok((Some(f as u64), None)),
        Some(f) => Ok((None, Some(f))),
        None => invalid("invalid packet id"),
    }
}

/// Decode one packet from a binary Engine.IO message.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let root = notepack::read_msgpack(bytes)?;
    let Value::Map(entries) = &root else {
        return invalid("invalid packet type");
    };
    let kind = kind_of(field(entries, "type"))?;
    let nsp = match field(entries, "nsp") {
        Some(Value::String(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => return invalid("invalid namespace"),
    };
    let data = field(entries, "data");
    let (id, js_id) = id_of(field(entries, "id"))?;
    let mut attachments = Vec::new();
    let mut event = None;
    let data = match (kind, data) {
        (PacketType::Connect, None) | (PacketType::Disconnect, None) => None,
        (PacketType::Connect | PacketType::ConnectError, Some(v @ Value::Map(_))) => {
            Some(notepack::value_to_json(v, None)?)
        }
        (PacketType::ConnectError, Some(v @ Value::String(_))) => {
            Some(notepack::value_to_json(v, None)?)
        }
        (PacketType::Event, Some(Value::Array(items))) => {
            event = Some(event_args(items, &mut attachments)?);
            None
        }
        (PacketType::Ack, Some(v @ Value::Array(_))) => {
            Some(notepack::value_to_python_json(v, &mut attachments)?)
        }
        _ => return invalid("invalid payload"),
    };
    let packet = Packet {
        kind,
        nsp,
        id,
        attachments: attachments.len(),
        data,
    };
    Ok(Decoded {
        packet,
        js_id,
        attachments,
        event,
    })
}

/// An EVENT's array taken apart as `packet::split_event` takes the text one.
fn event_args(items: &[Value], attachments: &mut Vec<Vec<u8>>) -> Result<EventArgs, DecodeError> {
    let (name, rest) = match items.split_first() {
        Some((Value::String(s), rest)) => {
            let name = String::from_utf8_lossy(s.as_bytes()).into_owned();
            if RESERVED_EVENTS.contains(&name.as_str()) {
                return invalid("invalid payload: a reserved event name");
            }
            (Some(name), rest)
        }
        Some((Value::Integer(_) | Value::F32(_) | Value::F64(_), _)) => (None, items),
        _ => return invalid("invalid payload: no event name"),
    };
    let args = notepack::array_to_python_json(rest, attachments)?;
    Ok(EventArgs {
        name,
        args,
        argc: rest.len(),
    })
}

/// An ack id going out: a number, or the text `packet::js_number` made of a client's id that was no safe
/// integer (sent back as the number it reads as).
#[derive(Debug, Clone, Copy)]
pub enum OutId<'a> {
    Number(u64),
    Js(&'a str),
}

impl fmt::Display for OutId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutId::Number(n) => write!(f, "{n}"),
            OutId::Js(s) => f.write_str(s),
        }
    }
}

impl OutId<'_> {
    fn value(self) -> Value {
        match self {
            OutId::Number(n) => Value::from(n),
            OutId::Js(s) => {
                let f: f64 = s.parse().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    Value::from(f as i64)
                } else {
                    Value::F64(f)
                }
            }
        }
    }
}

/// One packet as the single binary message `socket.io-msgpack-parser`'s Encoder makes of it. `data_json` is
/// JSON text with a placeholder for each of `attachments` (the application's form); members in Node's order
/// (`id` first in an ACK, as Node's `socket.ack` builds it).
pub fn encode(
    kind: PacketType,
    nsp: &str,
    id: Option<OutId<'_>>,
    data_json: Option<&str>,
    attachments: &[Vec<u8>],
) -> Result<Vec<u8>, DecodeError> {
    let data = match data_json {
        Some(text) => {
            let atts = (!attachments.is_empty()).then_some(attachments);
            Some(notepack::json_to_exact_value(text, atts)?)
        }
        None => None,
    };
    // BINARY_EVENT / BINARY_ACK do not exist here: binary values are in the data.
    let kind = match kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        k => k,
    };
    let mut entries = Vec::with_capacity(4);
    let id = id.map(|id| (Value::from("id"), id.value()));
    if kind == PacketType::Ack {
        entries.extend(id.clone());
    }
    entries.push((Value::from("type"), Value::from(kind as u8)));
    if let Some(data) = data {
        entries.push((Value::from("data"), data));
    }
    if kind != PacketType::Ack {
        entries.extend(id);
    }
    entries.push((Value::from("nsp"), Value::from(nsp)));
    let mut out = ByteBuf::with_capacity(data_json.map_or(0, str::len) + nsp.len() + 24);
    notepack::write_msgpack(&mut out, &Value::Map(entries));
    Ok(out.into_vec())
}

#[cfg(test)]
#[path = "msgpack_tests.rs"]
mod tests;
