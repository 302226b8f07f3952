//! Socket.IO v5 over Engine.IO: packets, namespaces, rooms and acks.
pub mod packet;
