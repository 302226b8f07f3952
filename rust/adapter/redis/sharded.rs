//! The sharded adapter's messages: every one is a `ClusterMessage` (`{type, data, uid, nsp}`).
use super::broadcast::{
    array_items, local_broadcast, BroadcastOpts, LocalBroadcast, Packet, SocketDetails,
};
use super::fields::{read_message, Fields, Out, Tree};
use super::payload::Payload;
use super::{fail, DecodeError, Encoding};

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

    fn decode(n: u64, tree: Option<Tree<'_>>) -> Result<Self, DecodeError> {
        let data = || {
            tree.ok_or_else(|| DecodeError("missing data".into()))?
                .object("data")
        };
        match n {
            1 => Ok(ClusterBody::InitialHeartbeat),
            2 => Ok(ClusterBody::Heartbeat),
            13 => Ok(ClusterBody::AdapterClose),
            3..=7 => Self::decode_operation(n, &data()?),
            8..=12 => Self::decode_exchange(n, &data()?),
            _ => fail(format!("unknown message type {n}")),
        }
    }

    /// The broadcast and the operations on sockets (types 3 to 7): each names its targets in `opts`.
    fn decode_operation(n: u64, f: &Fields<'_>) -> Result<Self, DecodeError> {
        let opts = || f.req("opts").and_then(BroadcastOpts::decode);
        let rooms = || f.req("rooms").and_then(|t| t.rooms("rooms"));
        let rid = || f.req("requestId").and_then(|t| t.string("requestId"));
        Ok(match n {
            3 => ClusterBody::Broadcast {
                packet: Packet::decode(f.req("packet")?)?,
                request_id: f.string("requestId")?,
                opts: opts()?,
            },
            4 => ClusterBody::SocketsJoin {
                opts: opts()?,
                rooms: rooms()?,
            },
            5 => ClusterBody::SocketsLeave {
                opts: opts()?,
                rooms: rooms()?,
            },
            6 => ClusterBody::DisconnectSockets {
                opts: opts()?,
                close: f.get("close").map(|c| c.bool("close")).transpose()?,
            },
            7 => ClusterBody::FetchSockets {
                opts: opts()?,
                request_id: rid()?,
            },
            _ => return fail(format!("unknown message type {n}")),
        })
    }

    /// Responses, server-side emits, and broadcast acks' counts and replies (types 8 to 12).
    fn decode_exchange(n: u64, f: &Fields<'_>) -> Result<Self, DecodeError> {
        let rid = || f.req("requestId").and_then(|t| t.string("requestId"));
        Ok(match n {
            8 => {
                let sockets = array_items(f.req("sockets")?, "sockets")?
                    .into_iter()
                    .map(SocketDetails::decode)
                    .collect::<Result<_, _>>()?;
                ClusterBody::FetchSocketsResponse {
                    request_id: rid()?,
                    sockets,
                }
            }
            9 => {
                let packet = f.req("packet")?.payload();
                if !packet.is_json_array() {
                    return fail("server-side emit packet is not an array");
                }
                ClusterBody::ServerSideEmit {
                    request_id: f.string("requestId")?,
                    packet,
                }
            }
            10 => ClusterBody::ServerSideEmitResponse {
                request_id: rid()?,
                packet: f.get("packet").map(Tree::payload),
            },
            11 => ClusterBody::BroadcastClientCount {
                request_id: rid()?,
                client_count: f.req("clientCount")?.u64("clientCount")?,
            },
            12 => ClusterBody::BroadcastAck {
                request_id: rid()?,
                packet: f.get("packet").map(Tree::payload),
            },
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
        read_message(bytes, "message", |fields, encoding| {
            let n = fields.req("type")?.u64("type")?;
            Ok(ClusterMessage {
                uid: fields.req("uid")?.string("uid")?,
                nsp: fields.req("nsp")?.string("nsp")?,
                body: ClusterBody::decode(n, fields.get("data"))?,
                encoding,
            })
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
