//! The classic adapter's requests and responses (`<key>-request#<nsp>#`, `<key>-response#<nsp>#`).
use super::broadcast::{
    array_items, local_broadcast, BroadcastOpts, LocalBroadcast, Packet, SocketDetails,
};
use super::fields::{read_message, Fields, Out, Tree};
use super::payload::Payload;
use super::{fail, DecodeError, Encoding};

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
        read_message(bytes, "request", Self::read)
    }

    fn read(fields: &Fields<'_>, encoding: Encoding) -> Result<Self, DecodeError> {
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
        read_message(bytes, "response", Self::read)
    }

    fn read(fields: &Fields<'_>, encoding: Encoding) -> Result<Self, DecodeError> {
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
