//! A sequence of client messages through the Socket.IO session state machine over WebSocket, with an
//! application that accepts, refuses, acks, echoes, joins rooms and broadcasts, and a clock that moves. The
//! engine is fed values, as the ASGI driver feeds it (frames and HTTP have targets of their own), and every
//! packet it answers must decode as a client decodes it: an Engine.IO packet and, for a message, a Socket.IO
//! packet.
//!
//! The input is records separated by 0x1e. A record is a text message, unless its first byte says otherwise:
//! 0x01 a binary message (the rest), 0x02 the clock moves by the next byte's seconds, 0x03 the client drops the
//! connection, 0x04 it sends a close frame (the next record opens another connection). A first record of 0x05
//! alone makes the server speak socket.io-msgpack-parser (its packets are binary messages, each checked with
//! that parser's decoder). Events named "join", "leave", "broadcast" and "disconnect" make the application do so.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anysio::core::Core;
use anysio::engineio::{Answer, Config, ConnId, Data, Engine, Packet as EioPacket};
use anysio::http::{Request, RequestParser, DEFAULT_MAX_HEADER_BYTES};
use anysio::socketio::packet::decode_lenient;
use anysio::socketio::{msgpack, Event, Parser, SocketIo, SocketKey};
use anysio::websocket::{close_code, Message};
use libfuzzer_sys::fuzz_target;

const RECORD_SEPARATOR: u8 = 0x1e;
const BINARY: u8 = 0x01;
const CLOCK: u8 = 0x02;
const DROP: u8 = 0x03;
const CLOSE: u8 = 0x04;
const MSGPACK: u8 = 0x05;

/// The WebSocket handshake every connection opens with, parsed once.
static UPGRADE: LazyLock<Request> = LazyLock::new(|| {
    let mut parser = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 0);
    parser.feed(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    parser
        .next_request()
        .ok()
        .flatten()
        .expect("a valid handshake")
});

struct Harness {
    core: Core<SocketIo>,
    now: Instant,
    next_conn: ConnId,
    /// The client's open connection.
    conn: Option<ConnId>,
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
            now: Instant::now(),
            next_conn: ConnId(1),
            conn: None,
        }
    }

    fn record(&mut self, record: &[u8]) {
        match record.split_first() {
            Some((&CLOCK, rest)) => {
                let seconds = rest.first().copied().unwrap_or(1);
                self.now += Duration::from_secs(seconds.into());
            }
            Some((&DROP, _)) => {
                if let Some(conn) = self.conn.take() {
                    self.core.engine.on_disconnect(conn, self.now);
                }
            }
            Some((&CLOSE, _)) => self.send(Message::Close(Some(close_code::NORMAL), String::new())),
            Some((&BINARY, rest)) => self.send(Message::Binary(rest.to_vec())),
            _ => self.send(Message::Text(String::from_utf8_lossy(record).into_owned())),
        }
        self.settle();
    }

    /// A message from the client, on a new connection when the last one is gone.
    fn send(&mut self, message: Message) {
        let conn = match self.conn {
            Some(conn) => conn,
            None => {
                let conn = self.next_conn;
                self.next_conn = conn.next();
                self.conn = Some(conn);
                self.core.engine.on_connect(conn, None);
                self.core.engine.on_request(conn, UPGRADE.clone(), self.now);
                self.settle();
                conn
            }
        };
        self.core.engine.on_message(conn, message, self.now);
    }

    /// Timers, the layers, the application's answers, then every connection's output, until quiet.
    fn settle(&mut self) {
        loop {
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
            Some("disconnect") => {
                sio.disconnect(socket, args.len().is_multiple_of(2), engine, self.now)
            }
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
        self.core.engine.take_dirty(&mut dirty);
        for conn in dirty {
            let parser = self.core.layer.parser;
            self.core
                .engine
                .drain_answers(conn, |answer| check(&answer, parser));
            if self.core.engine.should_close(conn) {
                self.core.engine.on_disconnect(conn, self.now);
                if self.conn == Some(conn) {
                    self.conn = None;
                }
            }
        }
    }
}

/// What the server answers: the handshake's 101, then packets a client must read.
fn check(answer: &Answer, parser: Parser) {
    match answer {
        Answer::Accept(response) => assert_eq!(response.status, 101),
        Answer::Response(response) => panic!("the handshake was refused: {response:?}"),
        _ => {}
    }
    match (answer.packet(), parser) {
        (Some(EioPacket::Message(Data::Text(text))), Parser::Default) => check_text(text),
        (Some(EioPacket::Message(Data::Binary(bytes))), Parser::Msgpack) => {
            if let Err(err) = msgpack::decode(bytes) {
                panic!("the server wrote {bytes:02x?}: {err}");
            }
        }
        (Some(EioPacket::Message(data)), Parser::Msgpack) => {
            panic!("the msgpack parser wrote a text message: {data:?}")
        }
        _ => {}
    }
}

/// An Engine.IO message's text from the server: a Socket.IO packet a client reads.
fn check_text(sio: &str) {
    if let Err(err) = decode_lenient(sio) {
        // An ack id past 1e21 is written as JavaScript writes the number ("1e+21", "Infinity"), as Node echoes
        // it: no parser reads that back, in Node either.
        let js_ack =
            sio.starts_with(['3', '6']) && (sio.contains("e+") || sio.contains("Infinity"));
        assert!(js_ack, "the server wrote {sio:?}: {err}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut harness = Harness::new();
    let mut records = data.split(|&b| b == RECORD_SEPARATOR).take(64).peekable();
    if records.next_if(|r| *r == [MSGPACK]).is_some() {
        harness.core.layer.parser = Parser::Msgpack;
    }
    for record in records {
        harness.record(record);
    }
    // The clock past every timeout: whatever is open closes cleanly.
    harness.now += Duration::from_secs(3600);
    harness.settle();
});
