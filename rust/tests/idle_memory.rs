//! What the Rust side holds per idle WebSocket connection: resident memory through the real socket driver
//! (loopback clients, handshake, CONNECT accepted and a room joined, one heartbeat), as the benchmark's idle
//! scenario measures a server. Its own test binary, so that no other test runs beside it.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anysio::core::Core;
use anysio::driver::Driver;
use anysio::engineio::{Config, Engine};
use anysio::socketio::{Event, SocketIo};
use anysio::websocket::{encode_frame_masked, Opcode};

/// This process's resident memory, as the benchmark reads the server's.
fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: isize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const CLIENTS: usize = 400;
const HANDSHAKE: &[u8] =
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn frame(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_masked(Opcode::Text, text, [1, 2, 3, 4], &mut out);
    out
}

/// Read what the clients were sent, turning the driver, until each got `want` (a substring) in it.
fn until_all_got(
    driver: &mut Driver,
    core: &mut Core<SocketIo>,
    clients: &mut [TcpStream],
    want: &[u8],
) {
    let mut got = vec![false; clients.len()];
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(90);
    while got.iter().any(|g| !g) {
        assert!(Instant::now() < deadline, "not every client got {want:?}");
        std::thread::sleep(Duration::from_millis(20));
        turn(driver, core);
        for (c, got) in clients.iter_mut().zip(&mut got) {
            loop {
                match c.read(&mut buf) {
                    Ok(0) => panic!("the server closed a client"),
                    Ok(n) => *got |= buf[..n].windows(want.len()).any(|w| w == want),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
}

fn turn(driver: &mut Driver, core: &mut Core<SocketIo>) {
    driver.turn(core, Instant::now()).unwrap();
    while let Some(ev) = core.poll_event() {
        if let Event::Connect { socket, .. } = ev {
            assert!(core.layer.accept(socket, &mut core.engine));
            core.layer.join(socket, "bench");
        }
    }
    driver.turn(core, Instant::now()).unwrap();
}

#[test]
fn an_idle_websocket_connection_holds_little() {
    let config = Config {
        ping_interval: Duration::from_millis(300),
        // Clients answer the ping only once every client got one: on a loaded machine that can take longer than
        // the default timeout, which would close the first ones.
        ping_timeout: Duration::from_secs(120),
        path: "/socket.io/".into(),
        ..Config::default()
    };
    let mut layer = SocketIo::new(Duration::from_secs(45));
    layer.add_namespace("/");
    let mut core = Core::new(Engine::new(config), layer);
    let mut driver = Driver::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    driver.listen_fd(listener.into()).unwrap();

    // One client first, so that the tables' first allocations are not counted per connection.
    let mut clients = Vec::with_capacity(CLIENTS + 1);
    let connect = frame(b"40");
    let open = |clients: &mut Vec<TcpStream>| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        c.write_all(&[HANDSHAKE, &connect].concat()).unwrap();
        c.set_nonblocking(true).unwrap();
        clients.push(c);
    };
    open(&mut clients);
    turn(&mut driver, &mut core);
    let before = rss();
    for _ in 0..CLIENTS {
        open(&mut clients);
        if clients.len() % 128 == 0 {
            turn(&mut driver, &mut core);
        }
    }
    until_all_got(&mut driver, &mut core, &mut clients, b"40{\"sid\"");
    // One heartbeat, as the benchmark holds its connections past one: every client is pinged and answers.
    until_all_got(&mut driver, &mut core, &mut clients, &[0x81, 1, b'2']);
    let pong = frame(b"3");
    for c in &mut clients {
        c.write_all(&pong).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    turn(&mut driver, &mut core);
    turn(&mut driver, &mut core);
    assert_eq!(core.layer.socket_count("/"), CLIENTS + 1);
    let per_conn = (rss() - before) / CLIENTS as isize;
    eprintln!("resident bytes per idle WebSocket connection: {per_conn}");
    // 3,584 before idle connections stopped keeping their answer queue, their output and input buffers, the
    // HTTP parser inline, the handshake's request and a binary reassembly slot; 2,324 after.
    assert!(per_conn <= 3072, "{per_conn} bytes per idle connection");
}
