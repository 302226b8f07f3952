//! The client side of Engine.IO v4 and Socket.IO v5, sans-IO: bytes from the server in (a polling GET's body,
//! WebSocket bytes), events out; packets to send in, a polling POST's body or masked WebSocket frames out.
//!
//! It reuses the server's codecs: `engineio::packet` (packets, the polling payload), `websocket` (frames, the
//! client's masked side) and `socketio::packet` (packets, binary reassembly). The caller owns the sockets, the
//! HTTP around polling and the timers (python/anysio/client/ drives it on anyio).
//!
//! ```text
//! transport  polling: packets queue until the caller takes the POST body; websocket: each packet is framed
//!            (masked) at once into the output the caller writes
//! upgrade    the probe's WebSocket has its own decoder (`feed_probe`) until its `3probe`; `upgrade` then sends
//!            `5` on it, moves the packets still queued for polling behind it and makes it the transport
//! heartbeat  a server PING is answered with PONG here (and reported, for the caller's ping-timeout timer)
//! parser     `Parser::Default`: text packets with attachments after them; `Parser::Msgpack`: each packet one
//!            binary message (`socketio::msgpack`, the server's codec), binary values inside it
//! ```
mod masks;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::engineio::packet::{self as eio, Data};
use crate::socketio::msgpack;
use crate::socketio::packet::{self as sio, BinaryReassembly, PacketType};
pub use crate::socketio::Parser;
use crate::websocket::{self, ClientDecoder, Message, Opcode};
use masks::Masks;

/// A server's message bigger than this ends the connection: the official client has no bound, but a peer must
/// not make us buffer without limit.
pub const MAX_MESSAGE: usize = 100 * 1024 * 1024;

/// The open packet's data (Engine.IO's handshake), times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub sid: String,
    pub upgrades: Vec<String>,
    pub ping_interval: u64,
    pub ping_timeout: u64,
    pub max_payload: u64,
}

/// What the server said, in the order it said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open(Handshake),
    /// Engine.IO's close packet, or the WebSocket's close frame: the transport is gone.
    Close,
    /// A PING, already answered.
    Ping,
    /// The probe's `3probe`: the caller may pause polling and `upgrade`.
    Probed,
    Connect {
        nsp: String,
        data: Option<String>,
    },
    ConnectError {
        nsp: String,
        data: Option<String>,
    },
    Disconnect {
        nsp: String,
    },
    /// `args`: the JSON array after the event's name.
    Event {
        nsp: String,
        name: String,
        args: String,
        argc: usize,
        id: Option<u64>,
        attachments: Vec<Vec<u8>>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: String,
        attachments: Vec<Vec<u8>>,
    },
}

/// A server's answer that breaks the protocol: the caller closes the connection ("parse error", as Node's client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn error(what: impl std::fmt::Display) -> ProtocolError {
    ProtocolError(what.to_string())
}

/// Read the open packet's JSON as engine.io-client does: sid, upgrades, pingInterval, pingTimeout (maxPayload
/// optional, as servers before 4.x did not send it).
pub fn parse_handshake(data: &str) -> Result<Handshake, ProtocolError> {
    let value: Value =
        serde_json::from_str(data).map_err(|_| error("the open packet's data is not JSON"))?;
    let field = |name: &str| value.get(name);
    let millis = |name: &str| {
        field(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| error(format!("the open packet has no {name}")))
    };
    let sid = field("sid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| error("the open packet has no sid"))?;
    let upgrades = field("upgrades")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Handshake {
        sid: sid.to_owned(),
        upgrades,
        ping_interval: millis("pingInterval")?,
        ping_timeout: millis("pingTimeout")?,
        max_payload: field("maxPayload").and_then(Value::as_u64).unwrap_or(0),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// One Engine.IO session's client state, with the Socket.IO packets above it.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    /// Packets waiting for the next POST (polling).
    outbox: Vec<eio::Packet>,
    /// Frames waiting to be written (websocket).
    frames: Vec<u8>,
    decoder: ClientDecoder,
    probe: Option<ClientDecoder>,
    pending: Option<BinaryReassembly>,
    masks: Masks,
    opened: bool,
    parser: Parser,
}

impl Client {
    pub fn new(transport: Transport, parser: Parser) -> Self {
        Client {
            parser,
            transport,
            outbox: Vec::new(),
            frames: Vec::new(),
            decoder: ClientDecoder::new(MAX_MESSAGE),
            probe: None,
            pending: None,
            masks: Masks::default(),
            opened: false,
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// A polling GET's body.
    pub fn feed_polling(
        &mut self,
        body: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ProtocolError> {
        if self.transport != Transport::Polling {
            return Err(error("a polling answer after the upgrade"));
        }
        let packets = eio::decode_payload(body).map_err(error)?;
        packets
            .into_iter()
            .try_for_each(|p| self.on_packet(p, events))
    }

    /// Bytes read from the transport's WebSocket.
    pub fn feed_websocket(
        &mut self,
        data: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ProtocolError> {
        self.decoder.feed(data);
        while let Some(message) = self.decoder.next_message().map_err(error)? {
            match message {
                Message::Text(text) => {
                    let packet = eio::Packet::decode_text(&text).map_err(error)?;
                    self.on_packet(packet, events)?;
                }
                Message::Binary(bytes) => {
                    self.on_packet(eio::Packet::Message(Data::Binary(bytes)), events)?
                }
                Message::Ping(payload) => self.frame(Opcode::Pong, &payload),
                Message::Pong(_) => {}
                Message::Close(..) => {
                    events.push(Event::Close);
                    break;
                }
            }
        }
        Ok(())
    }

    /// The probe's first frame, `2probe`, to write on the new WebSocket.
    pub fn probe_frame(&mut self) -> Vec<u8> {
        self.probe = Some(ClientDecoder::new(MAX_MESSAGE));
        let mut out = Vec::new();
        let mask = self.masks.next();
        websocket::encode_frame_masked(Opcode::Text, b"2probe", mask, &mut out);
        out
    }

    /// Bytes read from the probe's WebSocket before the upgrade: `Probed` once `3probe` arrived.
    pub fn feed_probe(
        &mut self,
        data: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ProtocolError> {
        let decoder = self
            .probe
            .as_mut()
            .ok_or_else(|| error("no probe under way"))?;
        decoder.feed(data);
        match decoder.next_message().map_err(error)? {
            None => Ok(()),
            Some(Message::Text(text)) if text == "3probe" => {
                events.push(Event::Probed);
                Ok(())
            }
            Some(other) => Err(error(format!("the probe was answered with {other:?}"))),
        }
    }

    /// Make the probed WebSocket the transport: `5` on it, then what waited for polling.
    pub fn upgrade(&mut self) -> Result<(), ProtocolError> {
        let decoder = self
            .probe
            .take()
            .ok_or_else(|| error("upgrade before a probe"))?;
        self.decoder = decoder;
        self.transport = Transport::WebSocket;
        self.frame(Opcode::Text, b"5");
        for packet in std::mem::take(&mut self.outbox) {
            self.queue(packet);
        }
        Ok(())
    }

    /// A POST's body with every packet queued, or None.
    pub fn take_payload(&mut self) -> Option<Vec<u8>> {
        if self.outbox.is_empty() {
            return None;
        }
        let mut body = Vec::new();
        for p in std::mem::take(&mut self.outbox) {
            eio::push_payload_segment(&p, &mut body);
        }
        Some(body)
    }

    /// The frames to write on the WebSocket.
    pub fn take_frames(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.frames)
    }

    /// Engine.IO's close packet, as the client sends it when it disconnects.
    pub fn close(&mut self) {
        self.queue(eio::Packet::Close);
    }

    /// A CONNECT to `nsp`, with the auth object's JSON.
    pub fn connect(&mut self, nsp: &str, auth: Option<&str>) -> Result<(), ProtocolError> {
        self.packet(PacketType::Connect, nsp, None, auth, Vec::new())
    }

    pub fn disconnect(&mut self, nsp: &str) -> Result<(), ProtocolError> {
        self.packet(PacketType::Disconnect, nsp, None, None, Vec::new())
    }

    /// An EVENT (BINARY_EVENT with attachments): `data` is the JSON array, the event's name first.
    pub fn event(
        &mut self,
        nsp: &str,
        data: &str,
        id: Option<u64>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), ProtocolError> {
        self.packet(PacketType::Event, nsp, id, Some(data), attachments)
    }

    /// An ACK (BINARY_ACK with attachments) of the server's event `id`.
    pub fn ack(
        &mut self,
        nsp: &str,
        id: u64,
        data: &str,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), ProtocolError> {
        self.packet(PacketType::Ack, nsp, Some(id), Some(data), attachments)
    }

    /// One Socket.IO packet in the parser's form. `data` is JSON with a placeholder for each attachment; only
    /// msgpack can refuse it (a placeholder without its attachment).
    fn packet(
        &mut self,
        kind: PacketType,
        nsp: &str,
        id: Option<u64>,
        data: Option<&str>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), ProtocolError> {
        if self.parser == Parser::Msgpack {
            let id = id.map(msgpack::OutId::Number);
            let bytes = msgpack::encode(kind, nsp, id, data, &attachments).map_err(error)?;
            self.queue(eio::Packet::Message(Data::Binary(bytes)));
            return Ok(());
        }
        let mut text = String::new();
        match (kind, data) {
            (PacketType::Event, Some(data)) => {
                sio::encode_event(nsp, id, attachments.len(), data, &mut text)
            }
            (PacketType::Ack, Some(data)) => {
                let id = id.unwrap_or_default();
                sio::encode_ack(nsp, &id, attachments.len(), data, &mut text)
            }
            _ => {
                let packet = sio::Packet {
                    kind,
                    nsp: nsp.to_owned(),
                    id: None,
                    attachments: 0,
                    data: data.map(str::to_owned),
                };
                sio::encode(&packet, &mut text);
            }
        }
        self.message(text);
        self.attachments(attachments);
        Ok(())
    }

    fn message(&mut self, text: String) {
        self.queue(eio::Packet::Message(Data::Text(text)));
    }

    fn attachments(&mut self, attachments: Vec<Vec<u8>>) {
        for bytes in attachments {
            self.queue(eio::Packet::Message(Data::Binary(bytes)));
        }
    }

    fn queue(&mut self, packet: eio::Packet) {
        match self.transport {
            Transport::Polling => self.outbox.push(packet),
            Transport::WebSocket => match &packet {
                eio::Packet::Message(Data::Binary(bytes)) => self.frame(Opcode::Binary, bytes),
                _ => {
                    let mut text = Vec::new();
                    packet.encode_text(&mut text);
                    self.frame(Opcode::Text, &text);
                }
            },
        }
    }

    fn frame(&mut self, opcode: Opcode, payload: &[u8]) {
        let mask = self.masks.next();
        websocket::encode_frame_masked(opcode, payload, mask, &mut self.frames);
    }

    fn on_packet(
        &mut self,
        packet: eio::Packet,
        events: &mut Vec<Event>,
    ) -> Result<(), ProtocolError> {
        if !self.opened && !matches!(packet, eio::Packet::Open(_)) {
            return Err(error(format!(
                "the server's first packet is not an open packet: {packet:?}"
            )));
        }
        match packet {
            eio::Packet::Open(data) => {
                if self.opened {
                    return Err(error("a second open packet"));
                }
                self.opened = true;
                events.push(Event::Open(parse_handshake(&data)?));
            }
            eio::Packet::Close => events.push(Event::Close),
            eio::Packet::Ping(data) => {
                self.queue(eio::Packet::Pong(data));
                events.push(Event::Ping);
            }
            eio::Packet::Pong(_) | eio::Packet::Noop | eio::Packet::Upgrade => {}
            eio::Packet::Message(data) if self.parser == Parser::Msgpack => {
                self.on_msgpack(data, events)?
            }
            eio::Packet::Message(Data::Text(text)) => self.on_text(&text, events)?,
            eio::Packet::Message(Data::Binary(bytes)) => {
                let reassembly = self
                    .pending
                    .as_mut()
                    .ok_or_else(|| error("a binary message without a binary packet before it"))?;
                if let Some((packet, attachments)) = reassembly.push(bytes) {
                    self.pending = None;
                    self.on_sio(packet, attachments, events)?;
                }
            }
        }
        Ok(())
    }

    fn on_text(&mut self, text: &str, events: &mut Vec<Event>) -> Result<(), ProtocolError> {
        if self.pending.is_some() {
            return Err(error("a text packet while attachments were expected"));
        }
        let packet = sio::decode(text).map_err(|e| error(format!("{e}: {text:.100}")))?;
        if packet.kind.is_binary() {
            self.pending = Some(BinaryReassembly::new(packet));
            return Ok(());
        }
        self.on_sio(packet, Vec::new(), events)
    }

    fn on_msgpack(&mut self, data: Data, events: &mut Vec<Event>) -> Result<(), ProtocolError> {
        let Data::Binary(bytes) = data else {
            return Err(error("a text packet from a server that speaks msgpack"));
        };
        let decoded = msgpack::decode(&bytes).map_err(error)?;
        let mut packet = decoded.packet;
        if decoded.js_id.is_some() {
            return Err(error("an ack id that is not a safe integer"));
        }
        if let Some(event) = decoded.event {
            let name = event
                .name
                .ok_or_else(|| error("an event whose name is not a string"))?;
            let nsp = packet.nsp;
            events.push(Event::Event {
                nsp,
                name,
                args: event.args,
                argc: event.argc,
                id: packet.id,
                attachments: decoded.attachments,
            });
            return Ok(());
        }
        packet.attachments = 0;
        self.on_sio(packet, decoded.attachments, events)
    }

    fn on_sio(
        &mut self,
        packet: sio::Packet,
        attachments: Vec<Vec<u8>>,
        events: &mut Vec<Event>,
    ) -> Result<(), ProtocolError> {
        let nsp = packet.nsp;
        events.push(match packet.kind {
            PacketType::Connect => Event::Connect {
                nsp,
                data: packet.data,
            },
            PacketType::ConnectError => Event::ConnectError {
                nsp,
                data: packet.data,
            },
            PacketType::Disconnect => Event::Disconnect { nsp },
            PacketType::Event | PacketType::BinaryEvent => {
                let data = packet.data.unwrap_or_default();
                let split = sio::split_event(&data).map_err(error)?;
                let Some(sio::EventArgs {
                    name: Some(name),
                    args,
                    argc,
                }) = split
                else {
                    return Err(error(format!("an event without a name: {data:.100}")));
                };
                Event::Event {
                    nsp,
                    name,
                    args,
                    argc,
                    id: packet.id,
                    attachments,
                }
            }
            PacketType::Ack | PacketType::BinaryAck => Event::Ack {
                nsp,
                id: packet.id.ok_or_else(|| error("an ack without an id"))?,
                args: packet.data.unwrap_or_else(|| "[]".to_owned()),
                attachments,
            },
        });
        Ok(())
    }
}
