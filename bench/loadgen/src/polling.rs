//! Echo over HTTP long-polling (`transport=polling`): each client keeps one GET waiting on one keep-alive
//! connection and POSTs its packets on a second one, as browsers do.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::payload::{Check, Payload};
use crate::stats::{CpuWindow, Latencies};
use crate::tcp;
use crate::Args;

const SEPARATOR: u8 = 0x1e;
const TICK: Duration = Duration::from_millis(5);

/// One complete response at the start of `buf`: status, body and the bytes it took. `Ok(None)`: need more.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, Vec<u8>, usize)>, String> {
    let Some(end) = tcp::head_end(buf) else {
        return Ok(None);
    };
    let head = buf.get(..end).unwrap_or_default();
    let status = tcp::status(head).ok_or("bad status line")?;
    if let Some(len) = tcp::header(head, "content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        return Ok(buf
            .get(end..end + len)
            .map(|body| (status, body.to_vec(), end + len)));
    }
    let chunked =
        tcp::header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if !chunked {
        return Err("response without a length".into());
    }
    let mut body = Vec::new();
    let mut pos = end;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(line_len) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(rest.get(..line_len).unwrap_or_default())
            .map_err(|_| "bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        let data_start = pos + line_len + 2;
        let Some(data) = buf.get(data_start..data_start + size) else {
            return Ok(None);
        };
        if buf.get(data_start + size..data_start + size + 2).is_none() {
            return Ok(None);
        }
        body.extend_from_slice(data);
        pos = data_start + size + 2;
        if size == 0 {
            return Ok(Some((status, body, pos)));
        }
    }
}

#[derive(Default)]
struct Http {
    stream: Option<TcpStream>,
    connecting: bool,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    busy: bool,
}

#[derive(Default)]
struct Client {
    sid: Option<String>,
    get: Http,
    post: Http,
    queue: Vec<u8>,
    ready: bool,
    dead: bool,
    inflight: VecDeque<(u64, Instant)>,
}

struct Polling {
    poll: Poll,
    addr: SocketAddr,
    host: String,
    clients: Vec<Client>,
    depth: usize,
    payload: Payload,
    scratch: String,
    next_id: u64,
    sending: bool,
    window: (Instant, Instant),
    requests: u64,
    requests_in_window: u64,
    acks: u64,
    acks_in_window: u64,
    bad: u64,
    reencoded: u64,
    ready: usize,
    latencies: Latencies,
    failures: HashMap<String, u64>,
}

impl Polling {
    fn path(&self, id: usize) -> String {
        match self.clients.get(id).and_then(|c| c.sid.as_deref()) {
            Some(sid) => format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
            None => "/socket.io/?EIO=4&transport=polling".into(),
        }
    }

    fn open_conn(&mut self, id: usize, post: bool) -> io::Result<()> {
        let mut stream = tcp::connect(self.addr, None)?;
        let token = Token(id * 2 + usize::from(post));
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if let Some(c) = self.clients.get_mut(id) {
            let h = if post { &mut c.post } else { &mut c.get };
            h.stream = Some(stream);
            h.connecting = true;
        }
        Ok(())
    }

    fn lose(&mut self, id: usize, why: String) {
        if let Some(c) = self.clients.get_mut(id) {
            if c.dead {
                return;
            }
            c.dead = true;
            if c.ready {
                self.ready -= 1;
            }
            for h in [&mut c.get, &mut c.post] {
                if let Some(mut s) = h.stream.take() {
                    let _ = self.poll.registry().deregister(&mut s);
                }
            }
            c.inflight.clear();
            *self.failures.entry(why).or_default() += 1;
        }
    }

    fn request_get(&mut self, id: usize) {
        let path = self.path(id);
        let host = &self.host;
        if let Some(c) = self.clients.get_mut(id) {
            let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            c.get.out.extend_from_slice(req.as_bytes());
            c.get.busy = true;
            flush(&mut c.get);
        }
    }

    /// POST what is queued unless a POST is already out (Engine.IO allows one at a time).
    fn request_post(&mut self, id: usize) {
        let path = self.path(id);
        let host = &self.host;
        if let Some(c) = self.clients.get_mut(id) {
            if c.post.busy || c.queue.is_empty() || c.post.stream.is_none() {
                return;
            }
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
                 Content-Length: {}\r\n\r\n",
                c.queue.len()
            );
            c.post.out.extend_from_slice(head.as_bytes());
            c.post.out.append(&mut c.queue);
            c.post.busy = true;
            flush(&mut c.post);
        }
    }

    fn queue(&mut self, id: usize, packet: &[u8]) {
        if let Some(c) = self.clients.get_mut(id) {
            if !c.queue.is_empty() {
                c.queue.push(SEPARATOR);
            }
            c.queue.extend_from_slice(packet);
        }
        self.request_post(id);
    }

    fn fire(&mut self, id: usize, now: Instant) {
        let ack_id = self.next_id;
        self.next_id += 1;
        let mut packet = format!("42{ack_id}");
        self.payload.event(&mut packet, "echo", ack_id, now);
        if let Some(c) = self.clients.get_mut(id) {
            c.inflight.push_back((ack_id, now));
        }
        self.queue(id, packet.as_bytes());
    }

    fn counted(&mut self, now: Instant) {
        self.requests += 1;
        if now >= self.window.0 && now < self.window.1 {
            self.requests_in_window += 1;
        }
    }

    fn on_get(&mut self, id: usize, status: u16, body: &[u8], now: Instant) {
        self.counted(now);
        if status != 200 {
            return self.lose(id, format!("GET status {status}"));
        }
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        c.get.busy = false;
        if c.sid.is_none() {
            let sid = body
                .strip_prefix(b"0")
                .and_then(|open| serde_json::from_slice::<Value>(open).ok())
                .and_then(|v| v["sid"].as_str().map(str::to_owned));
            let Some(sid) = sid else {
                return self.lose(id, "bad open packet".into());
            };
            c.sid = Some(sid);
            if let Err(e) = self.open_conn(id, true) {
                return self.lose(id, format!("connect: {}", e.kind()));
            }
            self.queue(id, b"40");
            return self.request_get(id);
        }
        for packet in body.split(|&b| b == SEPARATOR) {
            match packet {
                b"2" => self.queue(id, b"3"),
                [b'1', ..] => return self.lose(id, "engine.io close".into()),
                [b'4', b'0', ..] => {
                    if let Some(c) = self.clients.get_mut(id) {
                        if !c.ready {
                            c.ready = true;
                            self.ready += 1;
                            if self.sending {
                                for _ in 0..self.depth {
                                    self.fire(id, now);
                                }
                            }
                        }
                    }
                }
                [b'4', b'3', rest @ ..] => self.on_ack(id, rest, now),
                _ => {}
            }
        }
        self.request_get(id);
    }

    fn on_ack(&mut self, id: usize, rest: &[u8], now: Instant) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let ack_id: Option<u64> = std::str::from_utf8(rest.get(..digits).unwrap_or_default())
            .ok()
            .and_then(|d| d.parse().ok());
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        let Some(pos) = c.inflight.iter().position(|&(i, _)| Some(i) == ack_id) else {
            self.bad += 1;
            return;
        };
        let Some((ack_id, sent_at)) = c.inflight.remove(pos) else {
            return;
        };
        self.acks += 1;
        let tail = rest.get(digits..).unwrap_or_default();
        match self.payload.check(tail, ack_id, sent_at, &mut self.scratch) {
            Check::Exact => {}
            Check::Reencoded => self.reencoded += 1,
            Check::Wrong => self.bad += 1,
        }
        if now >= self.window.0 && now < self.window.1 {
            self.acks_in_window += 1;
            self.latencies.record(now - sent_at);
        }
        if self.sending {
            self.fire(id, now);
        }
    }

    fn on_event(&mut self, token: usize, ev: (bool, bool, bool), buf: &mut [u8], now: Instant) {
        let (readable, closing, writable) = ev;
        let (id, post) = (token / 2, token % 2 == 1);
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        if c.dead {
            return;
        }
        let h = if post { &mut c.post } else { &mut c.get };
        let Some(stream) = h.stream.as_mut() else {
            return;
        };
        if writable && h.connecting {
            if let Err(e) = tcp::connected(stream) {
                return self.lose(id, format!("connect: {}", e.kind()));
            }
            h.connecting = false;
        }
        if writable {
            flush(h);
        }
        if !readable || h.connecting {
            return;
        }
        let Some(stream) = h.stream.as_mut() else {
            return;
        };
        let inbuf = &mut h.inbuf;
        let open = tcp::drain(stream, buf, closing, |chunk| inbuf.extend_from_slice(chunk));
        let mut responses = Vec::new();
        loop {
            match parse_response(&h.inbuf) {
                Ok(Some((status, body, used))) => {
                    h.inbuf.drain(..used);
                    responses.push((status, body));
                }
                Ok(None) => break,
                Err(e) => return self.lose(id, e),
            }
        }
        for (status, body) in responses {
            if post {
                self.counted(now);
                if status != 200 {
                    return self.lose(id, format!("POST status {status}"));
                }
                if let Some(c) = self.clients.get_mut(id) {
                    c.post.busy = false;
                }
                self.request_post(id);
            } else {
                self.on_get(id, status, &body, now);
            }
        }
        match open {
            Ok(true) => {}
            Ok(false) => self.lose(id, "eof".into()),
            Err(e) => self.lose(id, format!("read: {}", e.kind())),
        }
    }

    fn pending(&self) -> usize {
        self.clients.iter().map(|c| c.inflight.len()).sum()
    }
}

/// Write what is queued on a connection once it is up; errors surface as a read error or EOF later.
fn flush(h: &mut Http) {
    if let (Some(s), false) = (h.stream.as_mut(), h.connecting) {
        let _ = tcp::flush(s, &mut h.out, &mut h.out_pos);
    }
}

pub fn echo(a: &Args, addr: SocketAddr) -> io::Result<Value> {
    let start = Instant::now();
    let deadline = start + a.timeout;
    let far = start + Duration::from_secs(86_400);
    let mut p = Polling {
        poll: Poll::new()?,
        addr,
        host: addr.to_string(),
        clients: (0..a.clients).map(|_| Client::default()).collect(),
        depth: a.depth,
        payload: Payload::new(a.payload),
        scratch: String::new(),
        next_id: 0,
        sending: false,
        window: (far, far),
        requests: 0,
        requests_in_window: 0,
        acks: 0,
        acks_in_window: 0,
        bad: 0,
        reencoded: 0,
        ready: 0,
        latencies: Latencies::new(10_000_000),
        failures: HashMap::new(),
    };
    for id in 0..a.clients {
        match p.open_conn(id, false) {
            Ok(()) => p.request_get(id),
            Err(e) => p.lose(id, format!("connect: {}", e.kind())),
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut turn = |p: &mut Polling| -> io::Result<()> {
        p.poll.poll(&mut events, Some(TICK))?;
        let now = Instant::now();
        for e in events.iter() {
            let closing = e.is_read_closed() || e.is_error();
            let ev = (e.is_readable() || closing, closing, e.is_writable());
            p.on_event(e.token().0, ev, &mut buf, now);
        }
        Ok(())
    };
    let settled = |p: &Polling| p.clients.iter().all(|c| c.dead || c.ready);
    while !settled(&p) && Instant::now() < (start + a.handshake_timeout).min(deadline) {
        turn(&mut p)?;
    }
    let connected = p.ready;
    let t0 = Instant::now();
    p.window = (t0 + a.warmup, t0 + a.warmup + a.duration);
    p.sending = true;
    for id in 0..a.clients {
        if p.clients.get(id).is_some_and(|c| c.ready && !c.dead) {
            for _ in 0..a.depth {
                p.fire(id, t0);
            }
        }
    }
    while Instant::now() < p.window.0 {
        turn(&mut p)?;
    }
    let cpu = CpuWindow::start(a.server_pid.as_deref());
    while Instant::now() < p.window.1 && Instant::now() < deadline {
        turn(&mut p)?;
    }
    let (loadgen_cpu, server_cpu) = cpu.finish(a.duration);
    p.sending = false;
    let drain_until = Instant::now() + Duration::from_secs(5);
    while p.pending() > 0 && Instant::now() < drain_until.min(deadline) {
        turn(&mut p)?;
    }
    let secs = a.duration.as_secs_f64().max(1e-9);
    let unanswered = p.pending();
    Ok(json!({
        "ok": connected == a.clients && p.bad == 0 && unanswered == 0 && p.acks_in_window > 0,
        "connected": connected,
        "depth": a.depth,
        "payload_bytes": a.payload,
        "duration_s": a.duration.as_secs_f64(),
        "requests_in_window": p.requests_in_window,
        "requests_per_s": p.requests_in_window as f64 / secs,
        "echo_per_s": p.acks_in_window as f64 / secs,
        "requests": p.requests,
        "acked": p.acks,
        "unanswered": unanswered,
        "bad_acks": p.bad,
        "reencoded_acks": p.reencoded,
        "latency": p.latencies.summary(),
        "loadgen_cpu": loadgen_cpu,
        "server_cpu": server_cpu,
        "failures": p.failures,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
        assert_eq!(
            parse_response(r),
            Ok(Some((200, b"ok".to_vec(), r.len() - 8)))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"),
            Ok(None)
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_responses() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(r),
            Ok(Some((200, b"ok!!!".to_vec(), r.len())))
        );
        assert_eq!(parse_response(&r[..r.len() - 2]), Ok(None));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nbody").is_err());
    }
}
