//! anysio's core. Layers, bottom up; every layer below the driver is sans-IO (bytes and the time in,
//! events and bytes out):
//!
//! ```text
//! http        HTTP/1.1 requests and responses for the Engine.IO path
//! websocket   RFC 6455 frames and the opening handshake
//! engineio    Engine.IO v4 packets, payloads, sessions, heartbeat, upgrade
//! socketio    Socket.IO v5 packets, namespaces, rooms, acks
//! driver      the mio poller that owns the sockets and feeds the layers above
//! python      the PyO3 module (feature "python"): conversions, and (pyjson) event arguments to JSON
//! ```
pub mod driver;
pub mod engineio;
pub mod http;
#[cfg(feature = "python")]
mod pyjson;
#[cfg(feature = "python")]
mod python;
pub mod socketio;
pub mod websocket;
