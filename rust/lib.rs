//! anysio's core. Layers, bottom up; every layer below the drivers is sans-IO (input and the time in, events
//! and answers out):
//!
//! ```text
//! http        HTTP/1.1 requests and responses for the Engine.IO path
//! websocket   RFC 6455 frames and the opening handshake; permessage_deflate, RFC 7692 (its negotiation and
//!             each message compressed or inflated)
//! ids         ConnId, SessionKey, SocketKey
//! notepack    msgpack as Node's notepack.io reads and writes it, and its values to and from JSON
//! deadline    the earliest of the layers' next deadlines
//! engineio    Engine.IO v4 packets, payloads, sessions, heartbeat, upgrade (typed requests and messages in)
//! socketio    Socket.IO v5 packets, namespaces, rooms, acks
//! metrics     the counts behind /metrics, kept where they happen
//! client      the client side of Engine.IO and Socket.IO on the same codecs (anysio.Client drives it)
//! core        the engine and the layer above it, wired once for every driver
//! driver      the mio poller that owns the sockets (its connection layer, wire, reads their bytes into
//!             requests and messages); the socket-less driver behind the ASGI app
//! python      the PyO3 module (feature "python"): conversions and thin classes, and (pyjson) event
//!             arguments to JSON
//! ```
pub mod adapter;
pub mod client;
pub mod core;
pub mod deadline;
pub mod driver;
pub mod engineio;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod notepack;
pub mod permessage_deflate;
#[cfg(feature = "python")]
mod pyjson;
#[cfg(feature = "python")]
mod python;
pub mod socketio;
pub mod websocket;
