//! Cluster adapters' wire formats, sans-IO: bytes from a message bus in, typed messages out, and back.
//!
//! ```text
//! redis   @socket.io/redis-adapter 8.x (classic and sharded) and @socket.io/redis-emitter 5.x
//! ```
#[cfg(feature = "python")]
pub(crate) mod python_redis;
pub mod redis;
