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
//! An Engine.IO v3 client (socket.io-client 2.x, Socket.IO's protocol 4) is served as Node's socket.io 4.x serves
//! it with allowEIO3: it is in "/" from its Open on (it sends no CONNECT there), a CONNECT's namespace may carry a
//! query that is its auth, its socket id is the Engine.IO sid (`<nsp>#<sid>` outside "/"), the CONNECT reply
//! has no data and a refusal carries `err.data || err.message`.
//! The application decides connections (middleware, auth): `Event::Connect` asks, `accept` / `refuse` answer.
//! A broadcast encodes its packet once and hands one frame to the engine for every target session.
//!
//! Packets are written and read by the server's parser (Node's `parser` option): socket.io-parser's text
//! packets with binary attachments (`packet`), or socket.io-msgpack-parser's binary messages (`msgpack`). The
//! msgpack codec turns its packets into the text parser's parts (JSON with placeholders, and attachments), so
//! the layer and the application above it handle one form.
mod calls;
pub mod msgpack;
pub mod packet;
pub mod recovery;
pub mod rooms;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engineio::{self, CloseReason, Data, Engine, RequestInfo, SessionKey};
use crate::ids::IdMap;
use crate::metrics::{BadInput, SioCounters};
// A packet as the layer received it, in either parser's form (the text parser's EVENT is split here).
use msgpack::Decoded as Incoming;
use msgpack::OutId;
use packet::{BinaryReassembly, EventArgs, Packet, PacketType};
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

/// The packet format the server's clients speak (Node's `parser` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parser {
    /// socket.io-parser: text packets, binary values as attachments after them.
    #[default]
    Default,
    /// socket.io-msgpack-parser: each packet one binary message.
    Msgpack,
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
    pub parser: Parser,
    /// Why the last packet the application gave could not be encoded by the msgpack parser (JSON nested past
    /// its depth, a placeholder naming no attachment): taken by the binding, which raises it.
    /// Boxed: it is rare, and the layer's size counts (core::AnyCore holds it beside the Engine.IO-only core).
    encode_error: Option<Box<str>>,
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
    /// What `/metrics` reports (crate::metrics); boxed, as the engine's and the layer's tables share one enum.
    pub counters: Box<SioCounters>,
}

fn new_sid() -> Arc<str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes).into()
}

/// What a CONNECT to an unknown namespace is refused with (Node's Client.connect), whatever the protocol.
const INVALID_NAMESPACE: &str = r#"{"message":"Invalid namespace"}"#;

/// Whether `client` speaks Engine.IO v3, hence Socket.IO v4 (socket.io-client 2.x).
fn is_eio3(engine: &Engine, client: SessionKey) -> bool {
    matches!(
        engine.protocol_of(client),
        Some(engineio::Protocol::V3 { .. })
    )
}

/// Node's Client._parseNamespace for a v3 client: the namespace may carry a query (`/nsp?token=abc`), which
/// is the CONNECT's auth (an object of strings, the last of a repeated name winning, as Object.fromEntries).
fn v3_namespace(mut p: Packet) -> Packet {
    let Some((path, query)) = p.nsp.split_once('?') else {
        if p.kind == PacketType::Connect {
            p.data = None;
        }
        return p;
    };
    let mut auth = serde_json::Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::http::percent_decode(value);
        auth.insert(crate::http::percent_decode(name), value.into());
    }
    p.nsp = path.to_owned();
    if p.kind == PacketType::Connect {
        p.data = Some(serde_json::Value::Object(auth).to_string());
    }
    p
}

/// One packet as the Engine.IO messages `parser` writes; with `recovery` it is stamped with an offset first
/// (returned). The text parser writes the packet then each attachment; the msgpack parser one binary message,
/// or none when the data cannot be encoded (the reason in `error`).
#[allow(clippy::too_many_arguments)]
fn frames(
    parser: Parser,
    kind: PacketType,
    nsp: &str,
    id: Option<OutId<'_>>,
    data: Option<&str>,
    attachments: Vec<Vec<u8>>,
    recovery: Option<&mut Recovery>,
    error: &mut Option<Box<str>>,
) -> (Vec<Data>, Option<u64>) {
    match parser {
        Parser::Default => {
            let (kind, count) = match (kind, attachments.len()) {
                (_, 0) => (kind, None),
                (PacketType::Event, n) => (PacketType::BinaryEvent, Some(n)),
                (PacketType::Ack, n) => (PacketType::BinaryAck, Some(n)),
                (_, n) => (kind, Some(n)),
            };
            let mut text = String::with_capacity(data.map_or(0, str::len) + nsp.len() + 8);
            let id = id.as_ref().map(|id| id as &dyn std::fmt::Display);
            packet::encode_parts(kind, count, nsp, id, data, &mut text);
            let offset = recovery.map(|r| r.stamp(&mut text));
            let mut out = Vec::with_capacity(1 + attachments.len());
            out.push(Data::Text(text));
            out.extend(attachments.into_iter().map(Data::Binary));
            (out, offset)
        }
        Parser::Msgpack => {
            let mut stamped;
            let mut offset = None;
            let mut data = data;
            if let Some(r) = recovery {
                stamped = data.unwrap_or("[]").to_owned();
                offset = Some(r.stamp(&mut stamped));
                data = Some(&stamped);
            }
            match msgpack::encode(kind, nsp, id, data, &attachments) {
                Ok(bytes) => (vec![Data::Binary(bytes)], offset),
                Err(e) => {
                    let why = format!("the packet cannot be encoded as msgpack: {e}");
                    *error = Some(why.into_boxed_str());
                    (Vec::new(), offset)
                }
            }
        }
    }
}

impl SocketIo {
    /// Send a packet with no id and no attachments (CONNECT, CONNECT_ERROR, DISCONNECT) to a client.
    fn send_control(
        &mut self,
        engine: &mut Engine,
        client: SessionKey,
        kind: PacketType,
        nsp: &str,
        data: Option<&str>,
    ) {
        let error = &mut self.encode_error;
        let (msgs, _) = frames(self.parser, kind, nsp, None, data, Vec::new(), None, error);
        for m in msgs {
            engine.send(client, m);
        }
    }

    /// Why the last packet the application gave could not be encoded, once.
    pub fn take_encode_error(&mut self) -> Option<String> {
        self.encode_error.take().map(String::from)
    }
}

impl SocketIo {
    pub fn new(connect_timeout: Duration) -> Self {
        SocketIo {
            connect_timeout,
            parser: Parser::Default,
            encode_error: None,
            dynamic_namespaces: false,
            namespaces: HashMap::new(),
            clients: IdMap::default(),
            sockets: IdMap::default(),
            next_socket: SocketKey(1),
            next_js_id: packet::MAX_ID + 1,
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            recovery: None,
            counters: Box::default(),
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
                if is_eio3(engine, key) {
                    // Node's Server.onconnection: a v3 client is in "/" without asking (it sends no CONNECT
                    // for "/").
                    self.on_connect(key, Packet::connect("/"), engine);
                }
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
        engine.counters.bad(BadInput::SocketIo);
        self.events.push_back(Event::ProtocolError {
            client,
            remote: engine.remote_of(client),
            message: why,
        });
        engine.close(client, now);
    }

    fn on_message(&mut self, key: SessionKey, data: Data, engine: &mut Engine, now: Instant) {
        if self.parser == Parser::Msgpack {
            if !self.clients.contains_key(&key) {
                return;
            }
            // As Node's msgpack Decoder: every message is one packet, and a text one is none.
            return match data {
                Data::Binary(bytes) => match msgpack::decode(&bytes) {
                    Ok(incoming) => self.on_packet(key, incoming, engine, now),
                    Err(e) => self.violation(key, format!("malformed packet: {e}"), engine, now),
                },
                Data::Text(_) => self.violation(
                    key,
                    "malformed packet: text where the msgpack parser expects binary".into(),
                    engine,
                    now,
                ),
            };
        }
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        match data {
            Data::Binary(bytes) => {
                let Some((partial, js_id)) = client.partial.as_deref_mut() else {
                    return self.violation(key, "unexpected binary attachment".into(), engine, now);
                };
                let js_id = *js_id;
                if let Some((packet, attachments)) = partial.push(bytes) {
                    client.partial = None;
                    let incoming = Incoming {
                        packet,
                        js_id,
                        attachments,
                        event: None,
                    };
                    self.on_packet(key, incoming, engine, now);
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
                    Ok((packet, js_id)) => {
                        let incoming = Incoming {
                            packet,
                            js_id,
                            attachments: Vec::new(),
                            event: None,
                        };
                        self.on_packet(key, incoming, engine, now)
                    }
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
        incoming: Incoming,
        engine: &mut Engine,
        now: Instant,
    ) {
        let Incoming {
            packet: p,
            js_id,
            attachments,
            event,
        } = incoming;
        // Only v3 clients' CONNECTs, and namespaces with a query, can need it: events skip the lookup.
        let v3 = (p.kind == PacketType::Connect || p.nsp.contains('?')) && is_eio3(engine, client);
        let p = if v3 { v3_namespace(p) } else { p };
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
                let split = match event {
                    Some(e) => Some(e),
                    None => p
                        .data
                        .as_deref()
                        .and_then(|d| packet::split_event(d).ok().flatten()),
                };
                if let Some(EventArgs { name, args, argc }) = split {
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
            self.send_control(
                engine,
                client,
                PacketType::ConnectError,
                &p.nsp,
                Some(INVALID_NAMESPACE),
            );
            self.counters.connects[2] += 1;
            return;
        };
        let key = self.next_socket;
        self.next_socket = key.next();
        // Node gives a v3 client's socket the id the client computes itself: the Engine.IO sid, behind
        // "<nsp>#" outside "/".
        let sid = match (is_eio3(engine, client), engine.sid_of(client)) {
            (true, Some(eio)) if &*nsp == "/" => eio.clone(),
            (true, Some(eio)) => format!("{nsp}#{eio}").into(),
            _ => new_sid(),
        };
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
            self.counters.disconnected(reason.as_str());
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
