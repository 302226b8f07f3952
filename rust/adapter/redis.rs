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
//!
//! ```text
//! payload     Payload; msgpack in and out; msgpack values to JSON text, JSON text to msgpack values
//! fields      a message's fields read in either encoding (Tree, Fields), and written back (Out)
//! broadcast   flags, broadcast options, packets, socket details; the classic adapter's Broadcast
//! requests    the classic adapter's Request and Response
//! channels    channel names: Channels (classic, the emitter) and ShardedChannels
//! sharded     the sharded adapter's ClusterMessage
//! ```

use std::fmt;
use std::time::Duration;

mod broadcast;
mod channels;
mod fields;
mod payload;
mod requests;
mod sharded;

pub use broadcast::{
    Broadcast, BroadcastOpts, Flags, LocalBroadcast, OptsLayout, Packet, SocketDetails, EVENT,
};
pub use channels::{looks_like_a_socket_id, Channels, Incoming, ShardedChannels, SubscriptionMode};
pub use fields::Scalar;
pub use payload::{json_to_value, read_msgpack, value_to_json, write_msgpack, Payload};
pub use requests::{Request, RequestBody, RequestType, Response, ResponseBody, SocketEntry};
pub use sharded::{ClusterBody, ClusterMessage, MessageType};

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

// What the tests (`use super::*`) name that this module does not use itself.
#[cfg(test)]
use {payload::write_json_date, rmp::encode::ByteBuf, rmpv::Value};

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
