//! The WebSocket scenarios: connect (rate and memory per connection, up to the fd limit), echo with acks
//! (throughput and latency), and broadcast to a room (deliveries/s; every delivery checked for loss and order).
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::payload::{Check, Payload};
use crate::stats::{rss_kib, CpuWindow, Latencies};
use crate::tcp::source_for;
use crate::ws::{Net, Scenario};
use crate::Args;

const TICK: Duration = Duration::from_millis(5);
const DRAIN: Duration = Duration::from_secs(5);
const MAX_SAMPLES: usize = 20_000_000;

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the run's --timeout passed")
}

/// Open `a.clients` clients, at most `a.window` handshakes at a time, and wait until each is ready or lost.
fn connect_all(
    net: &mut Net,
    sc: &mut impl Scenario,
    a: &Args,
    deadline: Instant,
) -> io::Result<()> {
    let mut attempted = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        while attempted < a.clients && net.handshaking() < a.window {
            net.open(source_for(attempted, a.sources, a.source_offset), now);
            attempted += 1;
        }
        net.turn(sc, TICK)?;
        net.expire(sc, a.handshake_timeout);
        if attempted == a.clients && net.handshaking() == 0 {
            return Ok(());
        }
    }
}

/// Keep serving (answering heartbeats) for `d`.
fn idle(net: &mut Net, sc: &mut impl Scenario, d: Duration) -> io::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        net.turn(
            sc,
            TICK.max(
                until
                    .saturating_duration_since(Instant::now())
                    .min(TICK * 20),
            ),
        )?;
    }
    Ok(())
}

fn failures(net: &Net) -> Value {
    json!(net.failures)
}

struct Tally {
    last_ready: Option<Instant>,
    /// From the TCP connect to the Socket.IO CONNECT reply.
    latencies: Latencies,
}

impl Scenario for Tally {
    fn ready(&mut self, net: &mut Net, id: usize, now: Instant) {
        self.last_ready = Some(now);
        if let Some(t) = net.opened_at(id) {
            self.latencies.record(now - t);
        }
    }
    fn packet(&mut self, _: &mut Net, _: usize, _: &str, _: Instant) {}
}

/// Connect `clients` as fast as the server accepts them (`window` handshakes in flight), with RSS samples at
/// the `rss_at` counts (opening pauses there) and at the end; then hold every connection for `hold`.
pub fn connect(a: &Args, addr: SocketAddr) -> io::Result<Value> {
    let mut net = Net::new(addr)?;
    net.msgpack = a.msgpack;
    net.deflate = a.deflate;
    let mut sc = Tally {
        last_ready: None,
        latencies: Latencies::new(1 << 20),
    };
    let pid = a.server_pid.as_deref();
    let rss_base = pid.and_then(rss_kib);
    let start = Instant::now();
    let deadline = start + a.timeout;
    let cpu = CpuWindow::start(pid);
    let mut checkpoints: VecDeque<usize> = a
        .rss_at
        .iter()
        .copied()
        .filter(|&n| n < a.clients)
        .collect();
    let mut samples = Vec::new();
    let mut attempted = 0;
    let mut paused = Duration::ZERO;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        let stop_at = checkpoints.front().copied().unwrap_or(a.clients);
        let gave_up = net.total_failures() >= a.max_failures;
        while attempted < stop_at && net.handshaking() < a.window && !gave_up {
            net.open(source_for(attempted, a.sources, a.source_offset), now);
            attempted += 1;
        }
        net.turn(&mut sc, TICK)?;
        net.expire(&mut sc, a.handshake_timeout);
        if net.handshaking() > 0 || (attempted < stop_at && !gave_up) {
            continue;
        }
        if attempted < a.clients && !gave_up {
            let t = Instant::now();
            idle(&mut net, &mut sc, a.settle)?;
            samples.push(json!({"connected": net.ready, "rss_kib": pid.and_then(rss_kib)}));
            checkpoints.pop_front();
            paused += t.elapsed();
        } else {
            break;
        }
    }
    let connecting = sc
        .last_ready
        .map_or(Duration::ZERO, |t| t - start)
        .saturating_sub(paused);
    let (loadgen_cpu, server_cpu) = cpu.finish(start.elapsed().saturating_sub(paused));
    let connected = net.ready;
    idle(&mut net, &mut sc, a.settle)?;
    let rss_end = pid.and_then(rss_kib);
    samples.push(json!({"connected": net.ready, "rss_kib": rss_end}));
    let run = ConnectRun {
        attempted,
        connected,
        before_hold: net.ready,
        connecting,
        cpu: (loadgen_cpu, server_cpu),
        rss: (rss_base, rss_end),
        samples,
    };
    idle(&mut net, &mut sc, a.hold)?;
    if a.wait_stdin {
        // Say where we are, then hold on (answering heartbeats) until told to finish.
        println!("{}", run.report(a, &net, &sc));
        wait_for_stdin(&mut net, &mut sc, deadline)?;
    }
    Ok(run.report(a, &net, &sc))
}

/// Keep serving until a line (or EOF) arrives on stdin, or the run's deadline.
fn wait_for_stdin(net: &mut Net, sc: &mut Tally, deadline: Instant) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread, because stdin cannot be put in the poller portably (it may be a file); it only reads one line.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    while Instant::now() < deadline {
        if rx.try_recv().is_ok() {
            return Ok(());
        }
        net.turn(sc, TICK * 20)?;
    }
    Err(timed_out())
}

struct ConnectRun {
    attempted: usize,
    connected: usize,
    before_hold: usize,
    connecting: Duration,
    cpu: (Option<f64>, Option<f64>),
    rss: (Option<u64>, Option<u64>),
    samples: Vec<Value>,
}

impl ConnectRun {
    fn report(&self, a: &Args, net: &Net, sc: &Tally) -> Value {
        let (rss_base, rss_end) = self.rss;
        let per_conn = |rss: Option<u64>, n: usize| -> Option<f64> {
            let grown = rss?.checked_sub(rss_base?)?;
            (n > 0).then(|| grown as f64 / n as f64)
        };
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let n = s["connected"].as_u64().unwrap_or(0) as usize;
                s["kib_per_conn"] = per_conn(s["rss_kib"].as_u64(), n).into();
                s
            })
            .collect();
        let secs = self.connecting.as_secs_f64();
        json!({
            "ok": self.connected > 0,
            "attempted": self.attempted,
            "connected": self.connected,
            "held": net.ready,
            "lost_while_holding": self.before_hold.saturating_sub(net.ready),
            "hold_s": a.hold.as_secs_f64(),
            "connect_s": secs,
            "connects_per_s": (secs > 0.0).then(|| self.connected as f64 / secs),
            "connect_latency": sc.latencies.summary_ref(),
            "rss_base_kib": rss_base,
            "rss_kib": rss_end,
            "kib_per_conn": per_conn(rss_end, self.connected),
            "rss_samples": samples,
            "loadgen_cpu": self.cpu.0,
            "server_cpu": self.cpu.1,
            "failures": failures(net),
        })
    }
}

/// 8 (`depth`) acknowledged echoes in flight per client, each answered by sending the next one. The argument is
/// an object (`Payload`) whose `id` is the ack id; the ack must carry it back.
struct Echo {
    depth: usize,
    payload: Payload,
    packet: String,
    scratch: String,
    next_id: u64,
    inflight: Vec<VecDeque<(u64, Instant)>>,
    sending: bool,
    window: (Instant, Instant),
    acks_in_window: u64,
    acks: u64,
    sent: u64,
    bad: u64,
    reencoded: u64,
    latencies: Latencies,
}

impl Echo {
    fn fire(&mut self, net: &mut Net, id: usize, now: Instant) {
        use std::fmt::Write;
        let ack_id = self.next_id;
        self.next_id += 1;
        self.packet.clear();
        let _ = write!(self.packet, "2{ack_id}");
        self.payload.event(&mut self.packet, "echo", ack_id, now);
        net.send(id, &self.packet);
        if let Some(q) = self.inflight.get_mut(id) {
            q.push_back((ack_id, now));
        }
        self.sent += 1;
    }

    fn pending(&self) -> usize {
        self.inflight.iter().map(VecDeque::len).sum()
    }
}

impl Scenario for Echo {
    fn ready(&mut self, _: &mut Net, _: usize, _: Instant) {}

    fn packet(&mut self, net: &mut Net, id: usize, packet: &str, now: Instant) {
        let Some(rest) = packet.strip_prefix('3') else {
            return;
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack_id: Option<u64> = rest.get(..digits).and_then(|d| d.parse().ok());
        let tail = rest.get(digits..).unwrap_or_default();
        let Some(q) = self.inflight.get_mut(id) else {
            return;
        };
        let Some(pos) = q.iter().position(|&(i, _)| Some(i) == ack_id) else {
            self.bad += 1;
            return;
        };
        let Some((ack_id, sent_at)) = q.remove(pos) else {
            return;
        };
        self.acks += 1;
        match self
            .payload
            .check(tail.as_bytes(), ack_id, sent_at, &mut self.scratch)
        {
            Check::Exact => {}
            Check::Reencoded => self.reencoded += 1,
            Check::Wrong => self.bad += 1,
        }
        if now >= self.window.0 && now < self.window.1 {
            self.acks_in_window += 1;
            self.latencies.record(now - sent_at);
        }
        if self.sending {
            self.fire(net, id, now);
        }
    }

    fn lost(&mut self, id: usize, _: Instant) {
        if let Some(q) = self.inflight.get_mut(id) {
            q.clear();
        }
    }
}

pub fn echo(a: &Args, addr: SocketAddr) -> io::Result<Value> {
    let deadline = Instant::now() + a.timeout;
    let mut net = Net::new(addr)?;
    net.msgpack = a.msgpack;
    net.deflate = a.deflate;
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut sc = Echo {
        depth: a.depth,
        payload: Payload::new(a.payload),
        packet: String::new(),
        scratch: String::new(),
        next_id: 0,
        inflight: Vec::new(),
        sending: false,
        window: (far, far),
        acks_in_window: 0,
        acks: 0,
        sent: 0,
        bad: 0,
        reencoded: 0,
        latencies: Latencies::new(MAX_SAMPLES),
    };
    connect_all(&mut net, &mut sc, a, deadline)?;
    let clients: Vec<usize> = net.ready_ids();
    sc.inflight = vec![VecDeque::new(); clients.last().map_or(0, |&m| m + 1)];
    let t0 = Instant::now();
    sc.window = (t0 + a.warmup, t0 + a.warmup + a.duration);
    sc.sending = true;
    for &id in &clients {
        for _ in 0..sc.depth {
            sc.fire(&mut net, id, t0);
        }
    }
    while Instant::now() < sc.window.0 {
        net.turn(&mut sc, TICK)?;
    }
    let cpu = CpuWindow::start(a.server_pid.as_deref());
    while Instant::now() < sc.window.1 && Instant::now() < deadline {
        net.turn(&mut sc, TICK)?;
    }
    let (loadgen_cpu, server_cpu) = cpu.finish(a.duration);
    sc.sending = false;
    let drain_until = Instant::now() + DRAIN;
    while sc.pending() > 0 && Instant::now() < drain_until.min(deadline) {
        net.turn(&mut sc, TICK)?;
    }
    let unanswered = sc.pending();
    Ok(json!({
        "ok": sc.bad == 0 && unanswered == 0 && !clients.is_empty() && sc.acks_in_window > 0,
        "connected": clients.len(),
        "depth": a.depth,
        "payload_bytes": a.payload,
        "duration_s": a.duration.as_secs_f64(),
        "acks_in_window": sc.acks_in_window,
        "echo_per_s": sc.acks_in_window as f64 / a.duration.as_secs_f64().max(1e-9),
        "sent": sc.sent,
        "acked": sc.acks,
        "unanswered": unanswered,
        "bad_acks": sc.bad,
        "reencoded_acks": sc.reencoded,
        "latency": sc.latencies.summary(),
        "loadgen_cpu": loadgen_cpu,
        "server_cpu": server_cpu,
        "failures": failures(&net),
    }))
}

/// One sender (a room member too) keeps `window` broadcasts in flight; a broadcast is complete when every member
/// has received it. Each member checks that every sequence number arrives once, and in order.
struct Bcast {
    sender: usize,
    members: Vec<usize>,
    window: u64,
    payload: Payload,
    packet: String,
    /// Per client: the highest seq seen, and which seqs in flight it has (bit seq % RING).
    highest: Vec<Option<u64>>,
    seen: Vec<u64>,
    /// Deliveries per seq in flight, at seq % RING.
    counts: Vec<u32>,
    sent_at: Vec<Instant>,
    sent: u64,
    complete: u64,
    sending: bool,
    measure: (Instant, Instant),
    deliveries: u64,
    deliveries_in_window: u64,
    out_of_order: u64,
    duplicates: u64,
    unexpected: u64,
    latencies: Latencies,
}

/// Seqs in flight are tracked in a u64 bitmask per client, so at most RING / 2 broadcasts are in flight.
const RING: u64 = 64;
pub const MAX_BCAST_WINDOW: usize = (RING / 2) as usize;

impl Bcast {
    fn pump(&mut self, net: &mut Net, now: Instant) {
        while self.sending && self.sent - self.complete < self.window {
            let seq = self.sent;
            self.packet.clear();
            self.packet.push('2');
            self.payload.event(&mut self.packet, "bcast", seq, now);
            net.send(self.sender, &self.packet);
            if let Some(t) = self.sent_at.get_mut((seq % RING) as usize) {
                *t = now;
            }
            self.sent += 1;
        }
    }

    /// Retire the broadcasts every member has, oldest first.
    fn retire(&mut self, now: Instant) {
        while self.complete < self.sent {
            let slot = (self.complete % RING) as usize;
            match self.counts.get_mut(slot) {
                Some(c) if *c as usize >= self.members.len() => *c = 0,
                _ => break,
            }
            let bit = !(1u64 << slot);
            for &m in &self.members {
                if let Some(mask) = self.seen.get_mut(m) {
                    *mask &= bit;
                }
            }
            if let Some(&t) = self.sent_at.get(slot) {
                if t >= self.measure.0 && t < self.measure.1 {
                    self.latencies.record(now - t);
                }
            }
            self.complete += 1;
        }
    }
}

/// The sequence number (the object's `id`) of a `bcast` event, whatever the JSON spacing.
fn seq_of(packet: &str) -> Option<u64> {
    let rest = packet.get(packet.find("\"id\"")? + 4..)?;
    let rest = rest.trim_start_matches([' ', ':']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest.get(..digits)?.parse().ok()
}

impl Scenario for Bcast {
    fn ready(&mut self, _: &mut Net, _: usize, _: Instant) {}

    fn packet(&mut self, net: &mut Net, id: usize, packet: &str, now: Instant) {
        if !packet.starts_with('2') {
            return;
        }
        let (Some(seq), Some(mask), Some(highest)) = (
            seq_of(packet),
            self.seen.get_mut(id),
            self.highest.get_mut(id),
        ) else {
            return;
        };
        self.deliveries += 1;
        if now >= self.measure.0 && now < self.measure.1 {
            self.deliveries_in_window += 1;
        }
        if seq < self.complete {
            self.duplicates += 1;
            return;
        }
        if seq >= self.sent {
            self.unexpected += 1;
            return;
        }
        let bit = 1u64 << (seq % RING);
        if *mask & bit != 0 {
            self.duplicates += 1;
            return;
        }
        *mask |= bit;
        if highest.is_some_and(|h| seq < h) || (highest.is_none() && seq != 0) {
            self.out_of_order += 1;
        }
        *highest = Some(highest.map_or(seq, |h| h.max(seq)));
        if let Some(c) = self.counts.get_mut((seq % RING) as usize) {
            *c += 1;
        }
        self.retire(now);
        self.pump(net, now);
    }
}

pub fn bcast(a: &Args, addr: SocketAddr) -> io::Result<Value> {
    let deadline = Instant::now() + a.timeout;
    let mut net = Net::new(addr)?;
    net.msgpack = a.msgpack;
    net.deflate = a.deflate;
    if let Some(port2) = a.port2 {
        net.also(crate::tcp::loopback(&a.host, port2)?);
    }
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut sc = Bcast {
        sender: 0,
        members: Vec::new(),
        window: a.window.min(MAX_BCAST_WINDOW) as u64,
        payload: Payload::new(a.payload),
        packet: String::new(),
        highest: Vec::new(),
        seen: Vec::new(),
        counts: vec![0; RING as usize],
        sent_at: vec![far; RING as usize],
        sent: 0,
        complete: 0,
        sending: false,
        measure: (far, far),
        deliveries: 0,
        deliveries_in_window: 0,
        out_of_order: 0,
        duplicates: 0,
        unexpected: 0,
        latencies: Latencies::new(MAX_SAMPLES),
    };
    connect_all(&mut net, &mut sc, a, deadline)?;
    let members: Vec<usize> = net.ready_ids();
    let Some(&sender) = members.first() else {
        return Ok(
            json!({"ok": false, "error": "no client connected", "failures": failures(&net)}),
        );
    };
    sc.sender = sender;
    let slots = members.last().map_or(0, |&m| m + 1);
    sc.highest = vec![None; slots];
    sc.seen = vec![0; slots];
    sc.members = members;
    let t0 = Instant::now();
    sc.measure = (t0 + a.warmup, t0 + a.warmup + a.duration);
    sc.sending = true;
    sc.pump(&mut net, t0);
    while Instant::now() < sc.measure.0 {
        net.turn(&mut sc, TICK)?;
    }
    let cpu = CpuWindow::start(a.server_pid.as_deref());
    while Instant::now() < sc.measure.1 && Instant::now() < deadline {
        net.turn(&mut sc, TICK)?;
    }
    let (loadgen_cpu, server_cpu) = cpu.finish(a.duration);
    sc.sending = false;
    let drain_until = Instant::now() + DRAIN;
    while sc.complete < sc.sent && Instant::now() < drain_until.min(deadline) {
        net.turn(&mut sc, TICK)?;
    }
    let expected = sc.sent * sc.members.len() as u64;
    let lost = expected.saturating_sub(sc.deliveries - sc.duplicates - sc.unexpected);
    let members_left = net.ready;
    Ok(json!({
        "ok": lost == 0 && sc.out_of_order == 0 && sc.duplicates == 0 && sc.unexpected == 0
            && members_left == sc.members.len() && sc.deliveries_in_window > 0,
        "members": sc.members.len(),
        "members_left": members_left,
        "window": sc.window,
        "payload_bytes": a.payload,
        "duration_s": a.duration.as_secs_f64(),
        "broadcasts": sc.sent,
        "deliveries": sc.deliveries,
        "expected_deliveries": expected,
        "lost": lost,
        "out_of_order": sc.out_of_order,
        "duplicates": sc.duplicates,
        "unexpected": sc.unexpected,
        "deliveries_in_window": sc.deliveries_in_window,
        "deliveries_per_s": sc.deliveries_in_window as f64 / a.duration.as_secs_f64().max(1e-9),
        "fanout_latency": sc.latencies.summary(),
        "loadgen_cpu": loadgen_cpu,
        "server_cpu": server_cpu,
        "failures": failures(&net),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_found_in_any_spacing() {
        assert_eq!(seq_of(r#"2["bcast",{"id":42,"text":"x"}]"#), Some(42));
        assert_eq!(seq_of(r#"2["bcast", {"id": 7, "text": "x"}]"#), Some(7));
        assert_eq!(seq_of(r#"2["bcast",{"text":"x"}]"#), None);
        assert_eq!(seq_of(r#"2["bcast",{"id":"#), None);
    }
}
