//! Socket.IO v5 over Engine.IO, sans-IO: namespaces, sockets, rooms, acks and binary reassembly.
//!
//! ```text
//! client (one Engine.IO session)  Open ─CONNECT(nsp)─► one socket per namespace; no socket accepted within
//!                                 connect_timeout closes the session (Node's Client.connectTimeout)
//! socket                          Connecting ─accept─► Connected ─DISCONNECT (either side) or session close─► gone
//!                                 Connecting ─refuse─► gone (CONNECT_ERROR sent)
//!                                 with recovery (recovery.rs): a Connected socket whose transport goes is kept
//!                                 disconnected until its deadline; `restore` gives a Connecting socket its state
//!                                 packets emitted while Connecting wait until the CONNECT is sent; broadcasts,
//!                                 room targets and counts see Connected sockets only, as in Node
//! packets from the client         a packet for a namespace the client is not connected to, or that cannot be
//!                                 decoded, closes the whole session, as Node does; an EVENT without data is
//!                                 ignored and an ACK without data has no arguments, as in socket.io-parser
//! ```
//! The application decides connections (middleware, auth): `Event::Connect` asks, `accept` / `refuse` answer.
//! A broadcast encodes its packet once and hands one frame to the engine for every target session.
mod calls;
pub mod packet;
pub mod recovery;
pub mod rooms;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engineio::{self, CloseReason, Data, Engine, RequestInfo, SessionKey};
use crate::ids::IdMap;
use packet::{BinaryReassembly, Packet, PacketType};
use recovery::Recovery;
pub use rooms::{Rooms, SocketKey};

/// Why a socket left its namespace, in Node's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ServerNamespaceDisconnect,
    ClientNamespaceDisconnect,
    Transport(CloseReason),
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::Transport(r) => r.as_str(),
        }
    }
}

/// Node's RECOVERABLE_DISCONNECT_REASONS: the transport went, not the client or the server's application.
fn recoverable(reason: CloseReason) -> bool {
    !matches!(reason, CloseReason::ParseError)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open {
        client: SessionKey,
        eio_sid: Arc<str>,
        request: Arc<RequestInfo>,
    },
    Connect {
        client: SessionKey,
        socket: SocketKey,
        nsp: Arc<str>,
        sid: Arc<str>,
        auth: Option<String>,
    },
    /// The name apart from the arguments (see `packet::EventArgs`), so each is parsed once.
    Event {
        socket: SocketKey,
        name: Option<String>,
        args: String,
        argc: usize,
        id: Option<u64>,
        attachments: Vec<Vec<u8>>,
    },
    Ack {
        socket: SocketKey,
        id: u64,
        data: String,
        attachments: Vec<Vec<u8>>,
    },
    Disconnect {
        socket: SocketKey,
        reason: DisconnectReason,
    },
    Close {
        client: SessionKey,
        reason: CloseReason,
    },
    /// A client broke the Socket.IO protocol (its session is closed), reported once so the application can
    /// log it. The engine reports bad input below this layer as `Event::Engine(engineio::Event::ProtocolError)`.
    ProtocolError {
        client: SessionKey,
        remote: Option<std::net::SocketAddr>,
        message: String,
    },
    /// A disconnected socket kept for recovery passed its deadline: its state is gone.
    Expired { pid: Arc<str> },
    /// Passed through from the engine.
    Engine(engineio::Event),
}

#[derive(Debug, PartialEq, Eq)]
enum SocketState {
    Connecting { held: Vec<Data> },
    Connected,
}

#[derive(Debug)]
struct Socket {
    client: SessionKey,
    nsp: Arc<str>,
    sid: Arc<str>,
    state: SocketState,
    /// Stand-ins handed to the application for the client's ack ids over MAX_ID, with the text Node would
    /// echo for each (see `packet::js_number`); the oldest are forgotten past MAX_JS_IDS.
    js_ids: VecDeque<(u64, String)>,
}

/// Outstanding stand-in ack ids per socket: enough for any client, bounded against one that sends many.
const MAX_JS_IDS: usize = 16;

#[derive(Debug, Default)]
struct Client {
    sockets: Vec<SocketKey>,
    /// A binary packet waiting for its attachments, and its id when over MAX_ID.
    /// Boxed: rare, and a hundred bytes that every client would otherwise carry in the table.
    partial: Option<Box<(BinaryReassembly, Option<f64>)>>,
    connect_deadline: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Namespace {
    /// The connected sockets (accepted, not yet gone).
    pub sockets: HashSet<SocketKey>,
    pub rooms: Rooms,
}

pub struct SocketIo {
    pub connect_timeout: Duration,
    /// CONNECTs to unknown namespaces go to the application (Node's parent namespaces decide) instead of being
    /// answered "Invalid namespace".
    pub dynamic_namespaces: bool,
    namespaces: HashMap<Arc<str>, Namespace>,
    clients: IdMap<SessionKey, Client>,
    sockets: IdMap<SocketKey, Socket>,
    next_socket: SocketKey,
    /// Stand-in ack ids start above MAX_ID, so they never meet a real one.
    next_js_id: u64,
    timers: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    events: VecDeque<Event>,
    /// Connection state recovery, when the application enables it (boxed: off, it costs one pointer).
    recovery: Option<Box<Recovery>>,
}

fn new_sid() -> Arc<str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes).into()
}

/// Send a packet with no id and no attachments (CONNECT, CONNECT_ERROR, DISCONNECT) to a client.
fn send_control(
    engine: &mut Engine,
    client: SessionKey,
    kind: PacketType,
    nsp: &str,
    data: Option<String>,
) {
    let mut text = String::new();
    let p = Packet {
        kind,
        nsp: nsp.to_owned(),
        id: None,
        attachments: 0,
        data,
    };
    packet::encode(&p, &mut text);
    engine.send(client, Data::Text(text));
}

/// Encode a packet and its attachments as Engine.IO messages: the text packet first, then each attachment.
fn messages(text: String, attachments: Vec<Vec<u8>>) -> Vec<Data> {
    let mut out = Vec::with_capacity(1 + attachments.len());
    out.push(Data::Text(text));
    out.extend(attachments.into_iter().map(Data::Binary));
    out
}

impl SocketIo {
    pub fn new(connect_timeout: Duration) -> Self {
        SocketIo {
            connect_timeout,
            dynamic_namespaces: false,
            namespaces: HashMap::new(),
            clients: IdMap::default(),
            sockets: IdMap::default(),
            next_socket: SocketKey(1),
            next_js_id: packet::MAX_ID + 1,
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            recovery: None,
        }
    }

    /// Keep the state of sockets whose transport goes for `max_disconnection` (Node's connectionStateRecovery).
    pub fn enable_recovery(&mut self, max_disconnection: Duration) {
        self.recovery = Some(Box::new(Recovery::new(max_disconnection)));
    }

    pub fn add_namespace(&mut self, nsp: &str) {
        self.namespaces.entry(nsp.into()).or_default();
    }

    /// Forget a namespace with no connected socket (Node's `cleanupEmptyChildNamespaces`); false if it has one.
    /// A socket still connecting to it brings it back when accepted.
    pub fn remove_namespace(&mut self, nsp: &str) -> bool {
        if self
            .namespaces
            .get(nsp)
            .is_some_and(|ns| ns.sockets.is_empty())
        {
            self.namespaces.remove(nsp);
            return true;
        }
        false
    }

    pub fn namespace(&self, nsp: &str) -> Option<&Namespace> {
        self.namespaces.get(nsp)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let connect = self.timers.peek().map(|Reverse((at, _))| *at);
        let recovery = self.recovery.as_ref().and_then(|r| r.next_deadline());
        crate::deadline::earliest(connect, recovery)
    }

    pub fn handle_timeout(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(Reverse((at, client))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let expired = self
                .clients
                .get(&client)
                .and_then(|c| c.connect_deadline)
                .is_some_and(|d| d <= now);
            if expired {
                // Node: a client that joins no namespace within connectTimeout is closed.
                engine.close(client, now);
            }
        }
        if let Some(r) = &mut self.recovery {
            for pid in r.expire(now) {
                self.events.push_back(Event::Expired { pid });
            }
        }
    }

    /// Feed every event the engine produced.
    pub fn pump(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(ev) = engine.poll_event() {
            self.on_engine_event(ev, engine, now);
        }
    }

    fn on_engine_event(&mut self, ev: engineio::Event, engine: &mut Engine, now: Instant) {
        match ev {
            engineio::Event::Open {
                key, sid, request, ..
            } => {
                let deadline = now + self.connect_timeout;
                self.clients.insert(
                    key,
                    Client {
                        connect_deadline: Some(deadline),
                        ..Client::default()
                    },
                );
                self.timers.push(Reverse((deadline, key)));
                self.events.push_back(Event::Open {
                    client: key,
                    eio_sid: sid,
                    request,
                });
            }
            engineio::Event::Message { key, data } => self.on_message(key, data, engine, now),
            engineio::Event::Close { key, reason } => {
                let Some(client) = self.clients.remove(&key) else {
                    return;
                };
                if recoverable(reason) {
                    for socket in &client.sockets {
                        self.persist(*socket, now);
                    }
                }
                for socket in client.sockets {
                    self.remove_socket(socket, Some(DisconnectReason::Transport(reason)));
                }
                self.events.push_back(Event::Close {
                    client: key,
                    reason,
                });
            }
            engineio::Event::Upgrade { .. } => {}
            other => self.events.push_back(Event::Engine(other)),
        }
    }

    fn violation(&mut self, client: SessionKey, why: String, engine: &mut Engine, now: Instant) {
        self.events.push_back(Event::ProtocolError {
            client,
            remote: engine.remote_of(client),
            message: why,
        });
        engine.close(client, now);
    }

    fn on_message(&mut self, key: SessionKey, data: Data, engine: &mut Engine, now: Instant) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        match data {
            Data::Binary(bytes) => {
                let Some((partial, js_id)) = client.partial.as_deref_mut() else {
                    return self.violation(key, "unexpected binary attachment".into(), engine, now);
                };
                let js_id = *js_id;
                if let Some((p, attachments)) = partial.push(bytes) {
                    client.partial = None;
                    self.on_packet(key, p, js_id, attachments, engine, now);
                }
            }
            Data::Text(text) => {
                if client.partial.is_some() {
                    return self.violation(
                        key,
                        "text packet while binary attachments were expected".into(),
                        engine,
                        now,
                    );
                }
                match packet::decode_lenient(&text) {
                    Err(e) => self.violation(key, format!("malformed packet: {e}"), engine, now),
                    Ok((p, js_id)) if p.kind.is_binary() => {
                        client.partial = Some(Box::new((BinaryReassembly::new(p), js_id)));
                    }
                    Ok((p, js_id)) => self.on_packet(key, p, js_id, Vec::new(), engine, now),
                }
            }
        }
    }

    fn socket_in(&self, client: SessionKey, nsp: &str) -> Option<SocketKey> {
        let c = self.clients.get(&client)?;
        c.sockets
            .iter()
            .copied()
            .find(|s| self.sockets.get(s).is_some_and(|s| &*s.nsp == nsp))
    }

    fn on_packet(
        &mut self,
        client: SessionKey,
        p: Packet,
        js_id: Option<f64>,
        attachments: Vec<Vec<u8>>,
        engine: &mut Engine,
        now: Instant,
    ) {
        // Node's Client.ondecoded: only a CONNECT may name a namespace the client has no socket in, and every
        // other packet needs a connected socket (one still in the middlewares is not in `nsps` yet).
        let socket = self.socket_in(client, &p.nsp);
        let connected = socket.filter(|s| {
            self.sockets
                .get(s)
                .is_some_and(|s| s.state == SocketState::Connected)
        });
        match (p.kind, socket, connected) {
            (PacketType::Connect, None, _) => self.on_connect(client, p, engine),
            (PacketType::Disconnect, _, Some(s)) => {
                self.remove_socket(s, Some(DisconnectReason::ClientNamespaceDisconnect))
            }
            (PacketType::Event | PacketType::BinaryEvent, _, Some(socket)) => {
                // Without data Node dispatches no event at all. `decode` validated the data as an event.
                let split = p.data.as_deref().map(packet::split_event);
                if let Some(Ok(Some(packet::EventArgs { name, args, argc }))) = split {
                    let id = p.id.or_else(|| js_id.map(|n| self.js_id(socket, n)));
                    self.events.push_back(Event::Event {
                        socket,
                        name,
                        args,
                        argc,
                        id,
                        attachments,
                    });
                }
            }
            (PacketType::Ack | PacketType::BinaryAck, _, Some(socket)) => {
                // Node looks the ack up by id; without one nothing matches.
                if let Some(id) = p.id {
                    self.events.push_back(Event::Ack {
                        socket,
                        id,
                        data: p.data.unwrap_or_else(|| "[]".into()),
                        attachments,
                    });
                }
            }
            (kind, _, _) => self.violation(
                client,
                format!(
                    "{kind:?} packet for namespace {:?} in the wrong state",
                    p.nsp
                ),
                engine,
                now,
            ),
        }
    }

    /// A stand-in for a client's ack id over MAX_ID, remembered with the text the ACK must carry.
    fn js_id(&mut self, socket: SocketKey, n: f64) -> u64 {
        let id = self.next_js_id;
        self.next_js_id = self.next_js_id.saturating_add(1);
        if let Some(s) = self.sockets.get_mut(&socket) {
            if s.js_ids.len() == MAX_JS_IDS {
                s.js_ids.pop_front();
            }
            s.js_ids.push_back((id, packet::js_number(n)));
        }
        id
    }

    fn on_connect(&mut self, client: SessionKey, p: Packet, engine: &mut Engine) {
        let known = (self.namespaces.get_key_value(p.nsp.as_str())).map(|(k, _)| k.clone());
        let Some(nsp) = known.or_else(|| self.dynamic_namespaces.then(|| p.nsp.as_str().into()))
        else {
            send_control(
                engine,
                client,
                PacketType::ConnectError,
                &p.nsp,
                Some(r#"{"message":"Invalid namespace"}"#.into()),
            );
            return;
        };
        let key = self.next_socket;
        self.next_socket = key.next();
        let sid = new_sid();
        self.sockets.insert(
            key,
            Socket {
                client,
                nsp: nsp.clone(),
                sid: sid.clone(),
                state: SocketState::Connecting { held: Vec::new() },
                js_ids: VecDeque::new(),
            },
        );
        if let Some(c) = self.clients.get_mut(&client) {
            c.sockets.push(key);
        }
        if let Some(r) = &mut self.recovery {
            r.open(key);
        }
        self.events.push_back(Event::Connect {
            client,
            socket: key,
            nsp,
            sid,
            auth: p.data,
        });
    }

    /// A connected socket's transport went: keep its state for recovery (before `remove_socket` forgets it).
    fn persist(&mut self, socket: SocketKey, now: Instant) {
        let (Some(r), Some(s)) = (&mut self.recovery, self.sockets.get(&socket)) else {
            return;
        };
        if s.state != SocketState::Connected {
            return;
        }
        let rooms = self
            .namespaces
            .get(&s.nsp)
            .map_or(&[][..], |ns| ns.rooms.rooms_of(socket));
        r.persist(socket, &s.nsp, &s.sid, rooms, now);
    }

    /// Drop a socket from every table; with a reason, tell the application.
    fn remove_socket(&mut self, socket: SocketKey, reason: Option<DisconnectReason>) {
        let Some(s) = self.sockets.remove(&socket) else {
            return;
        };
        if let Some(r) = &mut self.recovery {
            r.forget(socket);
        }
        if let Some(ns) = self.namespaces.get_mut(&s.nsp) {
            ns.sockets.remove(&socket);
            ns.rooms.leave_all(socket);
        }
        if let Some(c) = self.clients.get_mut(&s.client) {
            c.sockets.retain(|k| *k != socket);
        }
        if let (Some(reason), SocketState::Connected) = (reason, &s.state) {
            self.events.push_back(Event::Disconnect { socket, reason });
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod size_tests {
    /// One of each per connected client in the layer's tables; a binary packet being reassembled is boxed.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn per_client_state_is_small() {
        assert!(std::mem::size_of::<super::Client>() <= 48);
        assert!(std::mem::size_of::<super::Socket>() <= 96);
    }
}
