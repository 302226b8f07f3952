//! The pieces messages share (flags, broadcast options, Socket.IO packets, socket details), and the classic
//! adapter's broadcasts.
use rmpv::Value;
use serde_json::value::RawValue;

use super::fields::{Out, Scalar, Tree};
use super::payload::{read_msgpack, Payload};
use super::{fail, DecodeError, Encoding};

// ---- the pieces of messages -------------------------------------------------------------------------------------

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

    /// Node's `compress(false)` sets the flag false; unset (or anything else) compresses as usual.
    pub fn compress(&self) -> bool {
        !matches!(self.get("compress"), Some(Scalar::Bool(false)))
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

    pub(super) fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
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

    pub(super) fn out(&self) -> Out<'_> {
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

    pub(super) fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
        let fields = t.object("packet")?;
        Ok(Packet {
            packet_type: fields.req("type")?.u64("packet.type")?,
            data: fields.req("data")?.payload(),
            nsp: fields.string("nsp")?,
            id: fields.get("id").map(|t| t.u64("packet.id")).transpose()?,
        })
    }

    pub(super) fn out(&self) -> Out<'_> {
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
    /// False for Node's `compress(false)`: sent without permessage-deflate or HTTP compression.
    pub compress: bool,
    /// `[event, ...args]` as JSON, placeholders for binary values.
    pub data_json: String,
    pub attachments: Vec<Vec<u8>>,
}

pub(super) fn local_broadcast(
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
        compress: opts.flags.as_ref().is_none_or(Flags::compress),
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
    pub(super) fn decode(t: Tree<'_>) -> Result<Self, DecodeError> {
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

    pub(super) fn out(&self) -> Out<'_> {
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

pub(super) fn array_items<'a>(t: Tree<'a>, what: &str) -> Result<Vec<Tree<'a>>, DecodeError> {
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
