//! A sequence of client messages through the Socket.IO session state machine over WebSocket, read by the
//! connection layer (`Wire`) as a socket's bytes are, with an application that accepts, refuses, acks, echoes,
//! joins rooms and broadcasts, and a clock that moves. Every frame the server writes must decode as a client
//! decodes it: an Engine.IO packet, and for a message a Socket.IO packet.
//!
//! The input is records separated by 0x1e. A record is a text message, unless its first byte says otherwise:
//! 0x01 a binary message (the rest), 0x02 the clock moves by the next byte's seconds, 0x03 the client drops the
//! connection (the next record opens another). Events named "join", "leave", "broadcast" and "disconnect" make
//! the application do so.
#![no_main]

use std::time::{Duration, Instant};

use anysio::core::Core;
use anysio::driver::wire::Wire;
use anysio::engineio::{Config, ConnId, Data, Engine, Packet as EioPacket};
use anysio::socketio::packet::decode_lenient;
use anysio::socketio::{Event, SocketIo, SocketKey};
use anysio::websocket::{encode_frame_masked, ClientDecoder, Message, Opcode};
use libfuzzer_sys::fuzz_target;

const RECORD_SEPARATOR: u8 = 0x1e;
const BINARY: u8 = 0x01;
const CLOCK: u8 = 0x02;
const DROP: u8 = 0x03;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const UPGRADE: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// The client's end of the connection: the server's bytes, read as the HTTP answer and then as frames.
struct Client {
    conn: ConnId,
    head: Option<Vec<u8>>,
    frames: ClientDecoder,
}

struct Harness {
    core: Core<SocketIo>,
    wire: Wire,
    now: Instant,
    next_conn: ConnId,
    client: Option<Client>,
}

impl Harness {
    fn new() -> Self {
        let mut config = Config::default();
        config.set_path("/socket.io");
        let mut sio = SocketIo::new(Duration::from_secs(45));
        for nsp in ["/", "/custom", "/refused"] {
            sio.add_namespace(nsp);
        }
        Harness {
            core: Core::new(Engine::new(config), sio),
            wire: Wire::new(),
            now: Instant::now(),
            next_conn: ConnId(1),
            client: None,
        }
    }

    fn record(&mut self, record: &[u8]) {
        match record.split_first() {
            Some((&CLOCK, rest)) => {
                let seconds = rest.first().copied().unwrap_or(1);
                self.now += Duration::from_secs(seconds.into());
            }
            Some((&DROP, _)) => {
                if let Some(client) = self.client.take() {
                    self.wire
                        .disconnect(&mut self.core.engine, client.conn, self.now);
                }
            }
            Some((&BINARY, rest)) => self.send(Opcode::Binary, rest),
            _ => self.send(Opcode::Text, record),
        }
        self.settle();
    }

    /// A frame from the client, on a new connection when the last one is gone.
    fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        let conn = match &self.client {
            Some(client) => client.conn,
            None => {
                let conn = self.next_conn;
                self.next_conn = conn.next();
                self.wire
                    .connect(&mut self.core.engine, conn, None, Some(self.now));
                self.wire
                    .input(&mut self.core.engine, conn, UPGRADE, self.now);
                let frames = ClientDecoder::new(usize::MAX);
                self.client = Some(Client {
                    conn,
                    head: Some(Vec::new()),
                    frames,
                });
                self.settle();
                conn
            }
        };
        let mut frame = Vec::new();
        encode_frame_masked(opcode, payload, MASK, &mut frame);
        self.wire
            .input(&mut self.core.engine, conn, &frame, self.now);
    }

    /// Timers, the layers, the application's answers, then every connection's output, until quiet.
    fn settle(&mut self) {
        for _ in 0..16 {
            self.wire.handle_timeout(&mut self.core.engine, self.now);
            self.core.settle(self.now);
            let mut acted = false;
            while let Some(event) = self.core.poll_event() {
                self.application(event);
                acted = true;
            }
            self.flush();
            if !acted {
                return;
            }
        }
    }

    fn application(&mut self, event: Event) {
        let (sio, engine) = (&mut self.core.layer, &mut self.core.engine);
        match event {
            Event::Connect { socket, nsp, .. } if &*nsp == "/refused" => {
                sio.refuse(socket, r#"{"message":"refused"}"#, engine);
            }
            Event::Connect { socket, .. } => {
                sio.accept(socket, engine);
            }
            Event::Event {
                socket,
                name,
                args,
                id,
                attachments,
                ..
            } => {
                self.on_event(socket, name.as_deref(), &args, id, attachments);
            }
            _ => {}
        }
    }

    fn on_event(
        &mut self,
        socket: SocketKey,
        name: Option<&str>,
        args: &str,
        id: Option<u64>,
        attachments: Vec<Vec<u8>>,
    ) {
        let (sio, engine) = (&mut self.core.layer, &mut self.core.engine);
        match name {
            Some("join") => sio.join(socket, args),
            Some("leave") => sio.leave(socket, args),
            Some("broadcast") => {
                for nsp in ["/", "/custom"] {
                    let rooms = [args.to_owned()];
                    sio.broadcast(nsp, &rooms, &[], r#"["news"]"#, Vec::new(), None, engine);
                }
            }
            Some("disconnect") => sio.disconnect(socket, args.len() % 2 == 0, engine, self.now),
            _ => {}
        }
        if let Some(id) = id {
            sio.emit_to(socket, args, attachments.clone(), Some(id), true, engine);
        }
        let echo = match args.strip_prefix('[').filter(|rest| *rest != "]") {
            Some(rest) => format!(r#"["echo",{rest}"#),
            None => r#"["echo"]"#.to_owned(),
        };
        sio.emit_to(socket, &echo, attachments, None, false, engine);
    }

    fn flush(&mut self) {
        let mut dirty = Vec::new();
        self.wire
            .take_dirty(&mut self.core.engine, self.now, &mut dirty);
        for conn in dirty {
            let Some(out) = self.wire.output(&mut self.core.engine, conn) else {
                continue;
            };
            let bytes = out.to_vec();
            self.wire.written(&mut self.core.engine, conn, bytes.len());
            let ours = self.client.as_ref().is_some_and(|c| c.conn == conn);
            if ours {
                self.read(&bytes);
            }
            if self.core.engine.should_close(conn) {
                self.wire.disconnect(&mut self.core.engine, conn, self.now);
                if ours {
                    self.client = None;
                }
            }
        }
    }

    /// What the client reads: the handshake's answer, then frames, each of which must decode.
    fn read(&mut self, mut bytes: &[u8]) {
        let Some(client) = &mut self.client else {
            return;
        };
        if let Some(head) = &mut client.head {
            head.extend_from_slice(bytes);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            assert!(
                head.starts_with(b"HTTP/1.1 101 "),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            let rest = head.split_off(end + 4);
            client.head = None;
            client.frames.feed(&rest);
            bytes = &[];
        }
        client.frames.feed(bytes);
        loop {
            match client.frames.next_message() {
                Ok(Some(Message::Text(text))) => check_text(&text),
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(err) => panic!("the server wrote a bad frame: {err}"),
            }
        }
    }
}

/// A text frame from the server: an Engine.IO packet, and for a message a Socket.IO packet a client reads.
fn check_text(text: &str) {
    let packet = EioPacket::decode_text(text).expect("an Engine.IO packet");
    let EioPacket::Message(Data::Text(sio)) = packet else {
        return;
    };
    if let Err(err) = decode_lenient(&sio) {
        // An ack id past 1e21 is written as JavaScript writes the number ("1e+21", "Infinity"), as Node echoes
        // it: no parser reads that back, in Node either.
        let js_ack =
            sio.starts_with(['3', '6']) && (sio.contains("e+") || sio.contains("Infinity"));
        assert!(js_ack, "the server wrote {sio:?}: {err}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut harness = Harness::new();
    for record in data.split(|&b| b == RECORD_SEPARATOR).take(64) {
        harness.record(record);
    }
    // The clock past every timeout: whatever is open closes cleanly.
    harness.now += Duration::from_secs(3600);
    harness.settle();
});
