//! The application's calls on the Socket.IO layer: deciding connections, emitting to one socket or many,
//! rooms, and what it may ask about sockets.
use std::sync::Arc;
use std::time::Instant;

use super::msgpack::OutId;
use super::packet::{self, PacketType};
use super::recovery::Session;
use super::{
    frames, is_eio3, DisconnectReason, SocketIo, SocketKey, SocketState, INVALID_NAMESPACE,
};
use crate::engineio::{Data, Engine, SessionKey, Transport};

impl SocketIo {
    /// Let a socket in: the client gets CONNECT with the socket's id, then whatever was emitted meanwhile.
    pub fn accept(&mut self, socket: SocketKey, engine: &mut Engine) -> bool {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return false;
        };
        let SocketState::Connecting { held } =
            std::mem::replace(&mut s.state, SocketState::Connected)
        else {
            return false;
        };
        let (client, nsp) = (s.client, s.nsp.clone());
        // Node's Socket._onconnect: the socket joins its own room and the namespace only now. A child namespace
        // created, or emptied and removed, while the socket was connecting is (re)made here.
        let ns = self.namespaces.entry(s.nsp.clone()).or_default();
        ns.sockets.insert(socket);
        ns.rooms.join(socket, &s.sid);
        if let Some(c) = self.clients.get_mut(&s.client) {
            c.connect_deadline = None;
        }
        let sid = serde_json::Value::from(&*s.sid);
        // With recovery the reply carries the private session id the client sends back to recover (Node's);
        // a v3 client's carries nothing (it knows its id).
        let reply = match self.recovery.as_ref().and_then(|r| r.pid_of(socket)) {
            _ if is_eio3(engine, s.client) => None,
            Some(pid) => Some(format!(
                r#"{{"sid":{sid},"pid":{}}}"#,
                serde_json::Value::from(&**pid)
            )),
            None => Some(format!(r#"{{"sid":{sid}}}"#)),
        };
        self.send_control(engine, client, PacketType::Connect, &nsp, reply.as_deref());
        self.counters.connects[0] += 1;
        for d in held {
            engine.send(client, d);
        }
        true
    }

    /// Refuse a connecting socket: the client gets CONNECT_ERROR with `data_json` (an object, or a string).
    /// A v3 client gets an ERROR packet (the same type) with `err.data || err.message`, as Node sends it.
    pub fn refuse(&mut self, socket: SocketKey, data_json: &str, engine: &mut Engine) {
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        let (client, nsp) = (s.client, s.nsp.clone());
        let data = match is_eio3(engine, client) && data_json != INVALID_NAMESPACE {
            true => v3_refusal(data_json),
            false => data_json.to_owned(),
        };
        self.send_control(engine, client, PacketType::ConnectError, &nsp, Some(&data));
        self.counters.connects[1] += 1;
        self.remove_socket(socket, None);
    }

    /// Disconnect a socket from its namespace (DISCONNECT packet). With `close`, as Node's `disconnect(true)`:
    /// every socket of its client is disconnected that way, then the session is closed. A socket still
    /// connecting is left alone, as Node ignores `disconnect()` before the connection.
    pub fn disconnect(
        &mut self,
        socket: SocketKey,
        close: bool,
        engine: &mut Engine,
        now: Instant,
    ) {
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        if s.state != SocketState::Connected {
            return;
        }
        let client = s.client;
        let all = match (close, self.clients.get(&client)) {
            (true, Some(c)) => c.sockets.clone(),
            _ => vec![socket],
        };
        for key in all {
            let Some(s) = self.sockets.get(&key) else {
                continue;
            };
            if s.state != SocketState::Connected {
                continue;
            }
            let nsp = s.nsp.clone();
            self.send_control(engine, client, PacketType::Disconnect, &nsp, None);
            self.remove_socket(key, Some(DisconnectReason::ServerNamespaceDisconnect));
        }
        if close {
            engine.close(client, now);
        }
    }

    fn deliver(&mut self, socket: SocketKey, msgs: Vec<Data>, engine: &mut Engine) {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        match &mut s.state {
            SocketState::Connecting { held } => held.extend(msgs),
            SocketState::Connected => {
                for m in msgs {
                    engine.send(s.client, m);
                }
            }
        }
    }

    /// Emit an event (or, with `ack_reply`, an ACK) to one socket. False when the socket is gone, or when `id`
    /// is a stand-in for a client's id over MAX_ID that was already answered or forgotten.
    pub fn emit_to(
        &mut self,
        socket: SocketKey,
        data_json: &str,
        attachments: Vec<Vec<u8>>,
        id: Option<u64>,
        ack_reply: bool,
        engine: &mut Engine,
    ) -> bool {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return false;
        };
        let js;
        let (kind, out_id) = match (ack_reply, id) {
            (true, Some(id)) if id > packet::MAX_ID => {
                let Some(at) = s.js_ids.iter().position(|(k, _)| *k == id) else {
                    return false;
                };
                let Some((_, text)) = s.js_ids.remove(at) else {
                    return false;
                };
                js = text;
                (PacketType::Ack, Some(OutId::Js(&js)))
            }
            (true, Some(id)) => (PacketType::Ack, Some(OutId::Number(id))),
            _ => (PacketType::Event, id.map(OutId::Number)),
        };
        // Node stores a packet to one socket as a broadcast to its room: it carries an offset too.
        let recovery = match (ack_reply, id) {
            (false, None) => self.recovery.as_deref_mut(),
            _ => None,
        };
        let error = &mut self.encode_error;
        let (msgs, offset) = frames(
            self.parser,
            kind,
            &s.nsp,
            out_id,
            Some(data_json),
            attachments,
            recovery,
            error,
        );
        if let (Some(r), Some(offset)) = (&mut self.recovery, offset) {
            r.written(socket, offset);
        }
        self.deliver(socket, msgs, engine);
        true
    }

    /// The sockets of `nsp` in any of `rooms` (all when empty) and in none of `except`.
    pub fn targets(&self, nsp: &str, rooms: &[String], except: &[String]) -> Vec<SocketKey> {
        let Some(ns) = self.namespaces.get(nsp) else {
            return Vec::new();
        };
        let mut targets = ns.rooms.targets(&ns.sockets, rooms, except);
        // A socket still in the middlewares may have joined rooms, but Node's broadcasts skip it.
        targets.retain(|k| ns.sockets.contains(k));
        targets
    }

    /// Broadcast an event: encoded once, one frame for every target session. Returns the sockets reached.
    #[allow(clippy::too_many_arguments)]
    pub fn broadcast(
        &mut self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        data_json: &str,
        attachments: Vec<Vec<u8>>,
        id: Option<u64>,
        engine: &mut Engine,
    ) -> Vec<SocketKey> {
        let targets = self.targets(nsp, rooms, except);
        // Packets with an ack id are not kept, as in Node: the ack could not be restored with them.
        let recovery = match id {
            None => self.recovery.as_deref_mut(),
            Some(_) => None,
        };
        let error = &mut self.encode_error;
        let (msgs, offset) = frames(
            self.parser,
            PacketType::Event,
            nsp,
            id.map(OutId::Number),
            Some(data_json),
            attachments,
            recovery,
            error,
        );
        if let (Some(r), Some(offset)) = (&mut self.recovery, offset) {
            for t in &targets {
                r.written(*t, offset);
            }
            r.keep(nsp, rooms, except, &msgs, offset);
        }
        let sessions: Vec<SessionKey> = targets
            .iter()
            .filter_map(|t| self.sockets.get(t).map(|s| s.client))
            .collect();
        for m in msgs {
            engine.broadcast(&sessions, m);
        }
        self.counters.broadcasts += 1;
        self.counters.deliveries += targets.len() as u64;
        targets
    }

    /// A volatile broadcast (Node's `volatile` flag): sockets whose transport is not ready to send right now
    /// miss it, instead of having it queued. Returns the sockets reached.
    #[allow(clippy::too_many_arguments)]
    pub fn broadcast_volatile(
        &mut self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        data_json: &str,
        attachments: Vec<Vec<u8>>,
        engine: &mut Engine,
    ) -> Vec<SocketKey> {
        let mut targets = self.targets(nsp, rooms, except);
        targets.retain(|t| {
            self.sockets
                .get(t)
                .is_some_and(|s| engine.is_writable(s.client))
        });
        let error = &mut self.encode_error;
        let (msgs, _) = frames(
            self.parser,
            PacketType::Event,
            nsp,
            None,
            Some(data_json),
            attachments,
            None,
            error,
        );
        let sessions: Vec<SessionKey> = targets
            .iter()
            .filter_map(|t| self.sockets.get(t).map(|s| s.client))
            .collect();
        for m in msgs {
            engine.broadcast(&sessions, m);
        }
        self.counters.broadcasts += 1;
        self.counters.deliveries += targets.len() as u64;
        targets
    }

    /// Connected sockets by the transport of their session now: [polling, websocket].
    pub fn sockets_by_transport(&self, engine: &Engine) -> [usize; 2] {
        let mut by = [0; 2];
        for s in self.sockets.values() {
            if s.state != SocketState::Connected {
                continue;
            }
            if let Some(t) = engine.transport_of(s.client) {
                by[usize::from(t == Transport::WebSocket)] += 1;
            }
        }
        by
    }

    /// Bytes waiting for the peer of `socket`'s session (`Engine::buffered_amount`); None when it is gone.
    pub fn buffered_amount(&self, socket: SocketKey, engine: &Engine) -> Option<usize> {
        engine.buffered_amount(self.sockets.get(&socket)?.client)
    }

    pub fn join(&mut self, socket: SocketKey, room: &str) {
        if let Some(s) = self.sockets.get(&socket) {
            if let Some(ns) = self.namespaces.get_mut(&s.nsp) {
                ns.rooms.join(socket, room);
            }
        }
    }

    pub fn leave(&mut self, socket: SocketKey, room: &str) {
        if let Some(s) = self.sockets.get(&socket) {
            if let Some(ns) = self.namespaces.get_mut(&s.nsp) {
                ns.rooms.leave(socket, room);
            }
        }
    }

    pub fn rooms_of(&self, socket: SocketKey) -> Vec<Arc<str>> {
        self.sockets
            .get(&socket)
            .and_then(|s| self.namespaces.get(&s.nsp))
            .map(|ns| ns.rooms.rooms_of(socket).to_vec())
            .unwrap_or_default()
    }

    pub fn sid_of(&self, socket: SocketKey) -> Option<&Arc<str>> {
        self.sockets.get(&socket).map(|s| &s.sid)
    }

    pub fn client_of(&self, socket: SocketKey) -> Option<SessionKey> {
        self.sockets.get(&socket).map(|s| s.client)
    }

    /// The private session id of a socket, when recovery is on.
    pub fn pid_of(&self, socket: SocketKey) -> Option<&Arc<str>> {
        self.recovery.as_ref()?.pid_of(socket)
    }

    /// Recover the state of the disconnected socket `pid` into the connecting `socket` (the client's CONNECT
    /// carried `pid` and `offset`): returns its id, or None when there is no such state here (unknown, expired,
    /// or the offset is not the last packet written to it).
    pub fn restore(
        &mut self,
        socket: SocketKey,
        pid: &str,
        offset: &str,
        engine: &mut Engine,
        now: Instant,
    ) -> Option<Arc<str>> {
        let nsp = self.sockets.get(&socket)?.nsp.clone();
        let session = self.take_session(&nsp, pid, offset, now)?;
        self.adopt_session(socket, session, engine)
    }

    /// Hand over the state of a disconnected socket, to recover it here or in another worker.
    pub fn take_session(
        &mut self,
        nsp: &str,
        pid: &str,
        offset: &str,
        now: Instant,
    ) -> Option<Session> {
        self.recovery.as_mut()?.take(nsp, pid, offset, now)
    }

    /// Give a connecting socket a recovered state: its old id and rooms, and the packets it missed, sent now, before
    /// the CONNECT reply, in the order Node sends them.
    pub fn adopt_session(
        &mut self,
        socket: SocketKey,
        session: Session,
        engine: &mut Engine,
    ) -> Option<Arc<str>> {
        let r = self.recovery.as_mut()?;
        let s = self.sockets.get_mut(&socket)?;
        if !matches!(s.state, SocketState::Connecting { .. }) {
            return None;
        }
        r.restored(socket, &session);
        s.sid = session.sid.clone();
        if let Some(ns) = self.namespaces.get_mut(&s.nsp) {
            for room in &session.rooms {
                ns.rooms.join(socket, room);
            }
        }
        for kept in &session.missed {
            for m in kept.messages.iter() {
                engine.send(s.client, m.clone());
            }
        }
        Some(session.sid)
    }

    /// Disconnected sockets kept for recovery.
    pub fn disconnected_count(&self) -> usize {
        self.recovery.as_ref().map_or(0, |r| r.disconnected())
    }

    pub fn socket_count(&self, nsp: &str) -> usize {
        self.namespaces.get(nsp).map_or(0, |ns| ns.sockets.len())
    }
}

/// `{"message": m, "data": d}` as Node refuses a v3 client: `d` when JavaScript finds it true, else `m`.
fn v3_refusal(data_json: &str) -> String {
    use serde_json::Value;
    let Ok(Value::Object(mut refusal)) = serde_json::from_str::<Value>(data_json) else {
        return data_json.to_owned();
    };
    let truthy = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    };
    match refusal.remove("data").filter(truthy) {
        Some(data) => data.to_string(),
        None => refusal.remove("message").unwrap_or(Value::Null).to_string(),
    }
}
