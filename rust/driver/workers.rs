//! Session ownership between worker processes sharing one port.
//!
//! Each worker prefixes the sids it creates with its index (`<index>-`), so any worker can tell a session's owner
//! from a request's `sid` query parameter. A connection whose next request belongs to another worker is handed
//! over whole (its file descriptor, before any of its bytes are read): the owner then reads the request itself, as
//! if the client had connected to it. One mechanism serves long-polling requests and WebSocket upgrades alike,
//! with no proxy hop and no copy of the request.

use crate::http;

/// The prefix a worker gives its sids.
pub fn sid_prefix(index: u32) -> String {
    format!("{index}-")
}

/// The worker that owns `sid`, when the sid carries a worker prefix.
pub fn owner_of_sid(sid: &str) -> Option<u32> {
    let (index, _) = sid.split_once('-')?;
    if index.is_empty() || index.len() > 4 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index.parse().ok()
}

pub enum Peeked {
    /// The request line is not complete yet: wait for more bytes.
    Incomplete,
    /// Serve it here (no sid, our own sid, or not a request line we understand: the parser will answer).
    Local,
    /// Hand the connection to this worker.
    Owner(u32),
}

/// Look at the start of the next request (bytes peeked, not consumed) and say who should serve it.
pub fn route(peeked: &[u8], me: u32, limit: usize) -> Peeked {
    let Some(end) = peeked.iter().position(|b| *b == b'\n') else {
        return if peeked.len() >= limit {
            Peeked::Local
        } else {
            Peeked::Incomplete
        };
    };
    let line = &peeked[..end];
    let Some(target) = line.split(|b| *b == b' ').nth(1) else {
        return Peeked::Local;
    };
    let Some(q) = target.iter().position(|b| *b == b'?') else {
        return Peeked::Local;
    };
    // Read as the engine reads it (percent-decoded, the first one), so that both name the same session.
    let owner = std::str::from_utf8(&target[q + 1..])
        .ok()
        .and_then(|query| http::query_param(query, "sid"))
        .and_then(|sid| owner_of_sid(&sid));
    match owner {
        Some(o) if o != me => Peeked::Owner(o),
        _ => Peeked::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(p: Peeked) -> Option<u32> {
        match p {
            Peeked::Owner(o) => Some(o),
            _ => None,
        }
    }

    #[test]
    fn sids_name_their_owner() {
        assert_eq!(owner_of_sid(&format!("{}abc-def", sid_prefix(3))), Some(3));
        assert_eq!(owner_of_sid("12-x"), Some(12));
        assert_eq!(owner_of_sid("abc"), None);
        assert_eq!(owner_of_sid("-abc"), None);
        assert_eq!(owner_of_sid("a1-abc"), None);
        assert_eq!(owner_of_sid("123456-abc"), None);
    }

    #[test]
    fn requests_route_by_sid() {
        let get = b"GET /socket.io/?EIO=4&transport=polling&sid=2-AbC HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(owner(route(get, 0, 4096)), Some(2));
        assert!(matches!(route(get, 2, 4096), Peeked::Local));
        let handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n";
        assert!(matches!(route(handshake, 0, 4096), Peeked::Local));
        assert!(matches!(
            route(b"GET /socket.io/?EIO=4&sid=1-", 0, 4096),
            Peeked::Incomplete
        ));
        assert!(matches!(route(&[b'x'; 10], 0, 10), Peeked::Local));
        assert!(matches!(route(b"garbage\n", 0, 4096), Peeked::Local));
        let ws = b"GET /socket.io/?EIO=4&transport=websocket&sid=1-Zz HTTP/1.1\r\n";
        assert_eq!(owner(route(ws, 0, 4096)), Some(1));
    }

    /// The engine percent-decodes the query and takes the first `sid`: the router reads the same one.
    #[test]
    fn the_router_reads_the_sid_the_engine_reads() {
        for (target, expected) in [
            ("/socket.io/?EIO=4&%73id=2-x", Some(2)),
            ("/socket.io/?EIO=4&sid=%33-x", Some(3)),
            ("/socket.io/?sid=2-x&sid=3-y", Some(2)),
            ("/socket.io/?%73id=0-x&sid=3-y", None),
        ] {
            let line = format!("GET {target} HTTP/1.1\r\n");
            assert_eq!(owner(route(line.as_bytes(), 0, 4096)), expected, "{target}");
        }
    }
}
