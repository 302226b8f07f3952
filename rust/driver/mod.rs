//! The socket driver: a mio poller that owns the listening and client sockets and feeds a sans-IO `Core`.
//!
//! Nothing here blocks and no thread is started. The owner (Python, through `rust/python/`) waits until the
//! poller's file descriptor is readable or `next_timeout` passes, then calls `turn`, which reads every ready
//! socket (its bytes go through the connection layer, `wire`), runs due timers and writes what the engine
//! produced. Calls made between turns (sends, broadcasts) only fill per-connection buffers and wake the poller
//! once, so a burst of packets reaches each socket in one write.
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::core::{Core, Layer};
use crate::deadline::earliest;
use crate::engineio::{ConnId, Engine};
use crate::ids::IdMap;

#[path = "virtual.rs"]
pub mod virtual_conn;
pub mod wire;
pub mod workers;
use wire::Wire;
use workers::Peeked;

const WAKER: Token = Token(0);
const FIRST_LISTENER: usize = 1;
/// Tokens below this are listeners; connection ids start here.
const FIRST_CONN: ConnId = ConnId(1 << 20);
const READ_CHUNK: usize = 64 * 1024;
/// How long a closed connection may keep sending before we stop reading it. Closing with unread input would
/// make the kernel send RST, which can destroy the response we just wrote before the peer reads it.
const LINGER: Duration = Duration::from_secs(2);

struct Connection {
    stream: TcpStream,
    /// Closed for writing; we read and discard until EOF or the deadline.
    lingering: Option<Instant>,
}

/// Own a descriptor whose owner (Python) gives it up, once it is known to be an open socket. `OwnedFd` closes
/// what it holds and the driver registers it with the poller: owning a number that is not open (or becomes
/// someone else's descriptor later), or a file or pipe, would close or misuse what belongs to another part of
/// the process. On refusal the caller still owns `fd`.
pub fn take_socket(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat accepts any integer (one that names no open descriptor fails with EBADF) and writes at
    // most one `stat` through the pointer, which points at space for one.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `stat` in.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a socket"),
        ));
    }
    // SAFETY: `fd` is open (fstat just saw it) and its owner gave it up, so this is its only owner now.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub struct Driver {
    poll: Poll,
    events: Events,
    waker: Waker,
    wake_pending: bool,
    listeners: Vec<TcpListener>,
    conns: IdMap<ConnId, Connection>,
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
    /// The connections' bytes, read as requests and WebSocket messages for the engine.
    wire: Wire,
}

impl Driver {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Driver {
            poll,
            events: Events::with_capacity(1024),
            waker,
            wake_pending: false,
            listeners: Vec::new(),
            conns: IdMap::default(),
            next_conn: FIRST_CONN,
            read_buf: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            linger_queue: VecDeque::new(),
            worker: None,
            handoffs: Vec::new(),
            wire: Wire::new(),
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
    pub fn set_worker(&mut self, engine: &mut Engine, index: u32) {
        self.worker = Some(index);
        engine.config.sid_prefix = workers::sid_prefix(index);
    }

    /// Take over a client connection handed over by another worker; its request is still unread.
    pub fn adopt(&mut self, engine: &mut Engine, fd: OwnedFd) -> io::Result<()> {
        let std_stream = std::net::TcpStream::from(fd);
        std_stream.set_nonblocking(true)?;
        let _ = std_stream.set_nodelay(true);
        let remote = std_stream.peer_addr().ok();
        let mut stream = TcpStream::from_std(std_stream);
        let conn = self.next_conn;
        self.next_conn = conn.next();
        // epoll reports data already waiting at registration, so the pending request is read on the next turn.
        self.poll.registry().register(
            &mut stream,
            Token(conn.0 as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.conns.insert(
            conn,
            Connection {
                stream,
                lingering: None,
            },
        );
        self.wire
            .connect(engine, conn, remote, Some(Instant::now()));
        Ok(())
    }

    pub fn take_handoffs(&mut self) -> Vec<(RawFd, u32)> {
        std::mem::take(&mut self.handoffs)
    }

    /// Before a connection's next request is read: keep it, wait for its request line, or hand it over.
    fn route(&mut self, engine: &Engine, conn: ConnId, me: u32) -> Peeked {
        if !self.wire.is_idle(engine, conn) {
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

    /// When `turn` next has a timer to run: the core's, or a lingering socket's.
    pub fn next_deadline(&self, core_deadline: Option<Instant>) -> Option<Instant> {
        let linger = self.linger_queue.front().map(|(at, _)| *at);
        earliest(earliest(core_deadline, linger), self.wire.next_deadline())
    }

    /// Consume the wake-up the application's calls armed (`request_flush`), with nothing else to do: for a
    /// driver without sockets (ASGI), whose core is settled by its caller.
    pub fn rearm(&mut self) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(Duration::ZERO))?;
        self.wake_pending = false;
        Ok(())
    }

    /// Read every ready socket, settle the core (its timers due at `now`, its events through every layer) and
    /// write pending output. Never blocks.
    pub fn turn<L: Layer>(&mut self, core: &mut Core<L>, now: Instant) -> io::Result<()> {
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
            } else if (token.0 as u64) < FIRST_CONN.0 {
                self.accept(&mut core.engine, token.0 - FIRST_LISTENER, now);
            } else if readable {
                self.read(&mut core.engine, ConnId(token.0 as u64), closed, now);
            }
            // Writable events need no handling of their own: the flush below retries every connection with
            // output left.
        }
        self.expire_lingering(&mut core.engine, now);
        self.wire.handle_timeout(&mut core.engine, now);
        loop {
            core.settle(now);
            // Answers the layers wrote (CONNECT_ERROR, closes) go out in this turn.
            self.flush(&mut core.engine, now);
            // A write that failed drops its connection, which may close a session: an event to settle now,
            // as no wake-up will come for it.
            if !core.engine.has_events() {
                return Ok(());
            }
        }
    }

    fn accept(&mut self, engine: &mut Engine, index: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, remote)) => {
                    let conn = self.next_conn;
                    self.next_conn = conn.next();
                    let _ = stream.set_nodelay(true);
                    let token = Token(conn.0 as usize);
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
                    self.wire.connect(engine, conn, Some(remote), Some(now));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most often: existing connections go on; retry on the next event.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// `closed`: the event said the peer shut down its side, so the EOF must be read now (no later event will
    /// announce it).
    fn read(&mut self, engine: &mut Engine, conn: ConnId, closed: bool, now: Instant) {
        if let Some(me) = self.worker {
            match self.route(engine, conn, me) {
                Peeked::Local => {}
                Peeked::Incomplete if !closed => return,
                Peeked::Incomplete => return self.drop_conn(engine, conn, now),
                Peeked::Owner(_) => return self.wire.disconnect(engine, conn, now),
            }
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    // A peer that half-closed after its request still gets the answer (Node's behaviour too).
                    let _ = self.write_out(engine, conn);
                    return self.drop_conn(engine, conn, now);
                }
                Ok(n) => {
                    if c.lingering.is_none() {
                        self.wire.input(engine, conn, &self.read_buf[..n], now);
                    }
                    if n < self.read_buf.len() && !closed {
                        // Edge-triggered readiness is re-armed by the next arrival; a short read means the
                        // buffer is empty, and skipping the WouldBlock read saves a syscall per message.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.drop_conn(engine, conn, now),
            }
        }
    }

    fn drop_conn(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        if let Some(mut c) = self.conns.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.wire.disconnect(engine, conn, now);
    }

    fn expire_lingering(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(&(at, conn)) = self.linger_queue.front() {
            if at > now {
                break;
            }
            self.linger_queue.pop_front();
            // Gone already when the peer closed first: dropping an unknown connection does nothing.
            self.drop_conn(engine, conn, now);
        }
    }

    /// Write the output of every connection that has some; close those the engine is done with.
    fn flush(&mut self, engine: &mut Engine, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.wire.take_dirty(engine, now, &mut dirty);
        let mut retry = Vec::new();
        for conn in dirty.drain(..) {
            match self.write_out(engine, conn) {
                Ok(true) => {
                    if engine.should_close(conn) {
                        self.start_linger(engine, conn, now);
                    }
                }
                Ok(false) => retry.push(conn),
                Err(_) => self.drop_conn(engine, conn, now),
            }
        }
        self.dirty = retry;
    }

    /// Ok(true): all written. Ok(false): the socket is full; the rest stays for the next writable event.
    fn write_out(&mut self, engine: &mut Engine, conn: ConnId) -> io::Result<bool> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(true);
        };
        if c.lingering.is_some() {
            return Ok(true);
        }
        let Some(out) = self.wire.output(engine, conn) else {
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
        self.wire.written(engine, conn, written);
        result
    }

    fn start_linger(&mut self, engine: &mut Engine, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.stream.shutdown(Shutdown::Write);
            c.lingering = Some(now + LINGER);
            self.linger_queue.push_back((now + LINGER, conn));
        }
        // The engine forgets the connection now; only the socket lingers.
        self.wire.disconnect(engine, conn, now);
    }

    /// Close every session ("server shutting down") and write the goodbyes, then close every listener and
    /// connection.
    pub fn close_all<L: Layer>(&mut self, core: &mut Core<L>, now: Instant) {
        core.engine.shutdown(now);
        core.settle(now);
        self.flush(&mut core.engine, now);
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for (_, mut c) in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.linger_queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD takes no pointer; a number that names no descriptor fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    }

    #[test]
    fn take_socket_owns_only_open_sockets() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let file_fd = file.as_raw_fd();
        let err = take_socket(file_fd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(is_open(file_fd), "a refused descriptor stays its owner's");

        let closed = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        // SAFETY: `closed` was just opened and is owned by nothing else.
        drop(unsafe { OwnedFd::from_raw_fd(closed) });
        let err = take_socket(closed).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert_eq!(
            take_socket(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let owned = take_socket(listener.into_raw_fd()).unwrap();
        let mut driver = Driver::new().unwrap();
        assert_eq!(driver.listen_fd(owned).unwrap(), addr);
    }
}
