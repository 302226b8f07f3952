//! Non-blocking TCP to loopback only, from a chosen 127.0.0.x source address when ports run short.
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::os::fd::{AsRawFd, OwnedFd};

/// Refuse anything but the loopback range: this tool only ever loads servers on this machine.
pub fn loopback(host: &str, port: u16) -> io::Result<SocketAddr> {
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "host must be an IPv4 address"))?;
    if !ip.is_loopback() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "only 127.0.0.0/8 may be loaded",
        ));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

/// The source address of client `i` when `sources` addresses are used from 127.0.0.(1 + offset) on; with one
/// address and no offset the kernel picks 127.0.0.1 itself.
pub fn source_for(i: usize, sources: usize, offset: usize) -> Option<Ipv4Addr> {
    if sources <= 1 && offset == 0 {
        return None;
    }
    let host = 1 + (offset + i % sources.max(1)) % 254;
    Some(Ipv4Addr::new(127, 0, 0, host as u8))
}

/// A non-blocking IPv4 TCP socket for `addr`.
fn ipv4_socket(addr: SocketAddr) -> io::Result<(SocketAddrV4, OwnedFd)> {
    let SocketAddr::V4(addr) = addr else {
        return Err(io::Error::new(ErrorKind::InvalidInput, "IPv4 only"));
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok((addr, fd))
}

/// Start a connect; the stream becomes writable once it is established (or has failed).
pub fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let (addr, fd) = ipv4_socket(addr)?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    if let Some(ip) = source {
        // The port is picked at connect time, from the ports free for this 4-tuple: bind(port 0) alone would
        // search for a port free for every destination, which gets slow and runs out with thousands of sockets.
        socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(ip, 0)))?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// A non-blocking listener with the kernel's largest backlog (`net.core.somaxconn`) rather than std's and mio's
/// 128, so that a burst of connects is not dropped (and retried a second later) before it is accepted.
pub fn listen(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let (addr, fd) = ipv4_socket(addr)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    socket::listen(&fd, socket::Backlog::MAXALLOWABLE)?;
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(fd),
    ))
}

/// After the first writable event: Ok when the connect succeeded.
pub fn connected(stream: &TcpStream) -> io::Result<()> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.peer_addr().map(|_| ())
}

/// Write `out[*pos..]` until done or the socket is full. Returns true when everything was written.
pub fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, pos: &mut usize) -> io::Result<bool> {
    while *pos < out.len() {
        match stream.write(out.get(*pos..).unwrap_or_default()) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.clear();
    *pos = 0;
    Ok(true)
}

/// Read until the socket is drained (edge-triggered readiness), handing each chunk to `sink`. Returns false
/// when the peer closed. A short read means the queue was empty at that moment and any later data brings a new
/// edge, so the read that would only say WouldBlock is skipped unless `closing` (the peer's FIN may be queued
/// behind the data, and no further edge would announce it).
pub fn drain(
    stream: &mut TcpStream,
    buf: &mut [u8],
    closing: bool,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<bool> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                sink(buf.get(..n).unwrap_or_default());
                if n < buf.len() && !closing {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The end of an HTTP head (`\r\n\r\n`), as the index just past it.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Status code of an HTTP/1.1 response head.
pub fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A header's value (names compared without case), trimmed.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    // The first line is the status line.
    let mut lines = text.split("\r\n");
    lines.next();
    lines.find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_allowed() {
        assert!(loopback("127.0.0.1", 80).is_ok());
        assert!(loopback("127.0.0.9", 80).is_ok());
        assert!(loopback("10.0.0.1", 80).is_err());
        assert!(loopback("localhost", 80).is_err());
    }

    #[test]
    fn sources_rotate_over_loopback() {
        assert_eq!(source_for(5, 1, 0), None);
        assert_eq!(source_for(0, 4, 0), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(5, 4, 0), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(5, 2, 2), Some(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(source_for(5, 1, 300), Some(Ipv4Addr::new(127, 0, 0, 47)));
    }

    #[test]
    fn parses_response_heads() {
        let head =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\ncontent-length: 7\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(status(head), Some(101));
        assert_eq!(header(head, "Content-Length"), Some("7"));
        assert_eq!(header(head, "missing"), None);
        assert_eq!(status(b"garbage"), None);
    }
}
