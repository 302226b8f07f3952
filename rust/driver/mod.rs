//! The socket driver: a mio poller that owns the listening and client sockets and feeds the sans-IO engine.
//!
//! Nothing here blocks and no thread is started. The owner (Python, through `python.rs`) waits until the poller's
//! file descriptor is readable or `next_timeout` passes, then calls `turn`, which reads every ready socket, runs
//! due timers and writes what the engine produced. Calls made between turns (sends, broadcasts) only fill
//! per-connection buffers and wake the poller once, so a burst of packets reaches each socket in one write.
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::engineio::{ConnId, Engine};

#[path = "virtual.rs"]
pub mod virtual_conn;
pub mod workers;
use workers::Peeked;

const WAKER: Token = Token(0);
const FIRST_LISTENER: usize = 1;
/// Tokens below this are listeners; connection ids start here.
const FIRST_CONN: u64 = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// How long a closed connection may keep sending before we stop reading it. Closing with unread input would
/// make the kernel send RST, which can destroy the response we just wrote before the peer reads it.
const LINGER: Duration = Duration::from_secs(2);

struct Connection {
    stream: TcpStream,
    /// Closed for writing; we read and discard until EOF or the deadline.
    lingering: Option<Instant>,
}

pub struct Driver {
    poll: Poll,
    events: Events,
    waker: Waker,
    wake_pending: bool,
    listeners: Vec<TcpListener>,
    conns: HashMap<ConnId, Connection>,
    next_conn: ConnId,
    read_buf: Vec<u8>,
    dirty: Vec<ConnId>,
    /// Lingering connections by deadline. LINGER is constant, so this is in deadline order: the next timeout
    /// and the expired ones are at the front, without scanning every connection each turn.
    linger_queue: VecDeque<(Instant, ConnId)>,
    /// This process's index among the workers sharing the port, when there are several.
    worker: Option<u32>,
    /// Connections to give to the worker owning their session: (descriptor, owner). The owner of the list
    /// (Python) sends and closes each descriptor.
    handoffs: Vec<(RawFd, u32)>,
    pub engine: Engine,
}

impl Driver {
    pub fn new(engine: Engine) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Driver {
            poll,
            events: Events::with_capacity(1024),
            waker,
            wake_pending: false,
            listeners: Vec::new(),
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            read_buf: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            linger_queue: VecDeque::new(),
            worker: None,
            handoffs: Vec::new(),
            engine,
        })
    }

    /// Listen on a socket that is already bound and listening. Python binds it: the owner chooses the backlog,
    /// and workers set SO_REUSEPORT.
    pub fn listen_fd(&mut self, fd: OwnedFd) -> io::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::from(fd);
        std_listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(std_listener);
        let token = Token(FIRST_LISTENER + self.listeners.len());
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        let local = listener.local_addr()?;
        self.listeners.push(listener);
        Ok(local)
    }

    /// Serve as worker `index`: sids carry the index, and requests for other workers' sessions are handed over.
    pub fn set_worker(&mut self, index: u32) {
        self.worker = Some(index);
        self.engine.config.sid_prefix = workers::sid_prefix(index);
    }

    /// Take over a client connection handed over by another worker; its request is still unread.
    pub fn adopt(&mut self, fd: OwnedFd) -> io::Result<()> {
        let std_stream = std::net::TcpStream::from(fd);
        std_stream.set_nonblocking(true)?;
        let _ = std_stream.set_nodelay(true);
        let remote = std_stream.peer_addr().ok();
        let mut stream = TcpStream::from_std(std_stream);
        let conn = self.next_conn;
        self.next_conn += 1;
        // epoll reports data already waiting at registration, so the pending request is read on the next turn.
        self.poll.registry().register(
            &mut stream,
            Token(conn as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.conns.insert(
            conn,
            Connection {
                stream,
                lingering: None,
            },
        );
        self.engine.on_connect_at(conn, remote, Instant::now());
        Ok(())
    }

    pub fn take_handoffs(&mut self) -> Vec<(RawFd, u32)> {
        std::mem::take(&mut self.handoffs)
    }

    /// Before a connection's next request is read: keep it, wait for its request line, or hand it over.
    fn route(&mut self, conn: ConnId, me: u32) -> Peeked {
        if !self.engine.is_idle_http(conn) {
            return Peeked::Local;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return Peeked::Local;
        };
        let mut head = [0u8; 2048];
        let n = match c.stream.peek(&mut head) {
            Ok(n) => n,
            Err(_) => return Peeked::Local,
        };
        if n == 0 {
            return Peeked::Local;
        }
        let peeked = workers::route(&head[..n], me, head.len());
        if let Peeked::Owner(owner) = peeked {
            if let Some(mut c) = self.conns.remove(&conn) {
                let _ = self.poll.registry().deregister(&mut c.stream);
                self.handoffs.push((c.stream.into_raw_fd(), owner));
            }
        }
        peeked
    }

    /// Readable when `turn` has work to do.
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Make the poller's descriptor readable so the owner calls `turn` and the buffered output gets written.
    /// Called after the application's sends; one wake per batch.
    pub fn request_flush(&mut self) {
        if !self.wake_pending {
            self.wake_pending = true;
            if let Err(e) = self.waker.wake() {
                log::warn!("waking the poller failed: {e}");
            }
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let linger = self.linger_queue.front().map(|(at, _)| *at);
        match (self.engine.next_timeout(), linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Read every ready socket, run due timers, write pending output. Never blocks.
    pub fn turn(&mut self, now: Instant) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(Duration::ZERO))?;
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                (e.token(), e.is_readable() || closed, closed)
            })
            .collect();
        for (token, readable, closed) in ready {
            if token == WAKER {
                self.wake_pending = false;
            } else if (token.0 as u64) < FIRST_CONN {
                self.accept(token.0 - FIRST_LISTENER, now);
            } else if readable {
                self.read(token.0 as ConnId, closed, now);
            }
            // Writable events need no handling of their own: the flush below retries every connection with
            // output left.
        }
        self.engine.handle_timeout(now);
        self.expire_lingering(now);
        self.flush(now);
        Ok(())
    }

    fn accept(&mut self, index: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, remote)) => {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    let _ = stream.set_nodelay(true);
                    let token = Token(conn as usize);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("registering a connection failed: {e}");
                        continue;
                    }
                    self.conns.insert(
                        conn,
                        Connection {
                            stream,
                            lingering: None,
                        },
                    );
                    self.engine.on_connect_at(conn, Some(remote), now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most often: existing connections go on; retry on the next event.
                    log::warn!("accept failed: {e}");
                    let _ = now;
                    return;
                }
            }
        }
    }

    /// `closed`: the event said the peer shut down its side, so the EOF must be read now (no later event will
    /// announce it).
    fn read(&mut self, conn: ConnId, closed: bool, now: Instant) {
        if let Some(me) = self.worker {
            match self.route(conn, me) {
                Peeked::Local => {}
                Peeked::Incomplete if !closed => return,
                Peeked::Incomplete => return self.drop_conn(conn, now),
                Peeked::Owner(_) => return self.engine.forget(conn, now),
            }
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    // A peer that half-closed after its request still gets the answer (Node's behaviour too).
                    let _ = self.write_out(conn);
                    return self.drop_conn(conn, now);
                }
                Ok(n) => {
                    if c.lingering.is_none() {
                        self.engine.on_bytes(conn, &self.read_buf[..n], now);
                    }
                    if n < self.read_buf.len() && !closed {
                        // Edge-triggered readiness is re-armed by the next arrival; a short read means the
                        // buffer is empty, and skipping the WouldBlock read saves a syscall per message.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.drop_conn(conn, now),
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId, now: Instant) {
        if let Some(mut c) = self.conns.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.engine.on_disconnect(conn, now);
    }

    fn expire_lingering(&mut self, now: Instant) {
        while let Some(&(at, conn)) = self.linger_queue.front() {
            if at > now {
                break;
            }
            self.linger_queue.pop_front();
            // Gone already when the peer closed first: dropping an unknown connection does nothing.
            self.drop_conn(conn, now);
        }
    }

    /// Write the output of every connection that has some; close those the engine is done with.
    pub fn flush(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.engine.take_dirty(now, &mut dirty);
        let mut retry = Vec::new();
        for conn in dirty.drain(..) {
            match self.write_out(conn) {
                Ok(true) => {
                    if self.engine.should_close(conn) {
                        self.start_linger(conn, now);
                    }
                }
                Ok(false) => retry.push(conn),
                Err(_) => self.drop_conn(conn, now),
            }
        }
        self.dirty = retry;
        // The engine may have produced more output while answering (for example a pipelined request).
        if self.engine.has_events() {
            // Nothing to do here: events are drained by the owner after the turn.
        }
    }

    /// Ok(true): all written. Ok(false): the socket is full; the rest stays for the next writable event.
    fn write_out(&mut self, conn: ConnId) -> io::Result<bool> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(true);
        };
        if c.lingering.is_some() {
            return Ok(true);
        }
        let Some(out) = self.engine.output(conn) else {
            return Ok(true);
        };
        let mut written = 0;
        let result = loop {
            if written == out.len() {
                break Ok(true);
            }
            match c.stream.write(&out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        out.drain(..written);
        result
    }

    fn start_linger(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.stream.shutdown(Shutdown::Write);
            c.lingering = Some(now + LINGER);
            self.linger_queue.push_back((now + LINGER, conn));
        }
        // The engine forgets the connection now; only the socket lingers.
        self.engine.forget(conn, now);
    }

    /// Close every listener and connection (after `engine.shutdown`, whose output is written first).
    pub fn close_all(&mut self, now: Instant) {
        self.engine.shutdown(now);
        self.flush(now);
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for (_, mut c) in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.linger_queue.clear();
    }
}
