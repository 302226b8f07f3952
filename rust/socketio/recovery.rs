//! Connection state recovery (Node's `connectionStateRecovery`): a socket whose transport drops gets its id,
//! rooms and missed packets back when its client reconnects within `max_disconnection` with its `pid` and the
//! offset of the last packet it got.
//!
//! ```text
//! connected socket   Live { pid, last offset written to it }
//!        │ transport gone (a reason Node recovers from: transport close or error, ping timeout, ...)
//!        ▼
//! disconnected       Ghost { sid, rooms, last, missed packets }: every stamped packet that would have
//!                    reached it (its rooms, as Node's shouldIncludePacket) is kept for it
//!        │ CONNECT with its pid and `last` as offset, before the deadline ─► taken: a new socket gets it all
//!        │ the deadline passes ─► dropped (Event::Expired, so the application drops the socket's data)
//! ```
//! Unlike Node's in-memory adapter, which keeps every packet of the last `maxDisconnectionDuration` for everyone,
//! packets are kept only for sockets that are disconnected, and only until their deadline: a server with no
//! disconnected socket keeps none. The cost is that a client must come back with the offset of the last packet
//! written to it; one that lost packets in flight (written into a dead connection) gets a new connection, never a
//! gap.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::rooms::{Room, Rooms};
use crate::engineio::Data;
use crate::ids::{IdMap, SocketKey};

/// A packet kept for disconnected sockets: its offset and its Engine.IO messages (the text, then attachments),
/// shared by every socket that missed it.
#[derive(Debug)]
pub struct Kept {
    pub offset: u64,
    pub messages: Box<[Data]>,
}

/// A disconnected socket's state, as it is handed back to the socket that recovers it.
#[derive(Debug)]
pub struct Session {
    pub sid: Arc<str>,
    pub pid: Arc<str>,
    pub rooms: Vec<Room>,
    /// The offset of the last packet written to it before it went.
    pub last: u64,
    pub missed: Vec<Arc<Kept>>,
}

impl Session {
    /// The offset of the last packet the client will have once the missed ones are replayed.
    pub fn newest(&self) -> u64 {
        self.missed.last().map_or(self.last, |k| k.offset)
    }
}

#[derive(Debug)]
struct Live {
    pid: Arc<str>,
    last: u64,
}

#[derive(Debug)]
struct Ghost {
    nsp: Arc<str>,
    pid: Arc<str>,
    sid: Arc<str>,
    deadline: Instant,
    last: u64,
    missed: Vec<Arc<Kept>>,
}

/// The disconnected sockets of one namespace, with their rooms, so a broadcast finds those it would have reached.
#[derive(Debug, Default)]
struct Ghosts {
    all: HashSet<SocketKey>,
    /// Rooms other than each socket's own, which is found by its id instead: that room would cost a name, a member
    /// set and two table entries per socket, a third of what a disconnected socket holds.
    rooms: Rooms,
    by_sid: HashMap<Arc<str>, SocketKey>,
}

impl Ghosts {
    /// The disconnected sockets a broadcast to `rooms` (all when empty) except `except` would have reached.
    fn targets(&self, rooms: &[String], except: &[String]) -> Vec<SocketKey> {
        let mut targets = self.rooms.targets(&self.all, rooms, except);
        for key in rooms.iter().filter_map(|r| self.by_sid.get(r.as_str())) {
            if !targets.contains(key) {
                targets.push(*key);
            }
        }
        let excluded = |k: &SocketKey| {
            except
                .iter()
                .any(|e| self.by_sid.get(e.as_str()) == Some(k))
        };
        targets.retain(|k| !excluded(k));
        targets
    }
}

#[derive(Debug)]
pub struct Recovery {
    max_disconnection: Duration,
    next_offset: u64,
    live: IdMap<SocketKey, Live>,
    ghosts: IdMap<SocketKey, Ghost>,
    by_pid: HashMap<Arc<str>, SocketKey>,
    namespaces: HashMap<Arc<str>, Ghosts>,
    /// Deadlines in the order they fall: each is the disconnection time plus one constant.
    expiry: VecDeque<(Instant, SocketKey)>,
}

/// An offset as the client sees it: opaque text, as Node's (yeast) are.
pub fn offset_text(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(offset.to_be_bytes())
}

pub fn parse_offset(text: &str) -> Option<u64> {
    // Room for what the decoder estimates from the length; an offset decodes to exactly 8 bytes.
    let mut bytes = [0u8; 12];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
        Ok(8) => bytes[..8].try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

fn random_id() -> Arc<str> {
    let mut bytes = [0u8; 15];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes).into()
}

impl Recovery {
    pub fn new(max_disconnection: Duration) -> Self {
        // A random start: offsets from a restarted server, or from another worker, do not meet this one's.
        let mut start = [0u8; 8];
        getrandom::getrandom(&mut start).expect("the operating system's random source failed");
        Recovery {
            max_disconnection,
            next_offset: u64::from_be_bytes(start) >> 1,
            live: IdMap::default(),
            ghosts: IdMap::default(),
            by_pid: HashMap::new(),
            namespaces: HashMap::new(),
            expiry: VecDeque::new(),
        }
    }

    /// A new socket: its private session id (the `pid` of its CONNECT reply).
    pub fn open(&mut self, socket: SocketKey) {
        self.live.insert(
            socket,
            Live {
                pid: random_id(),
                last: 0,
            },
        );
    }

    pub fn pid_of(&self, socket: SocketKey) -> Option<&Arc<str>> {
        self.live.get(&socket).map(|l| &l.pid)
    }

    /// The socket is gone for good (refused, or left with a reason Node does not recover from).
    pub fn forget(&mut self, socket: SocketKey) {
        self.live.remove(&socket);
    }

    /// Append a fresh offset to an encoded event (its text ends with the arguments' `]`) as its last argument,
    /// as Node's session-aware adapter does; returns the offset.
    pub fn stamp(&mut self, text: &mut String) -> u64 {
        let offset = self.next_offset;
        self.next_offset = self.next_offset.wrapping_add(1);
        if text.ends_with(']') {
            text.pop();
            if !text.ends_with('[') {
                text.push(',');
            }
            text.push('"');
            text.push_str(&offset_text(offset));
            text.push_str("\"]");
        }
        offset
    }

    /// A stamped packet was written to a connected (or connecting) socket.
    pub fn written(&mut self, socket: SocketKey, offset: u64) {
        if let Some(l) = self.live.get_mut(&socket) {
            l.last = offset;
        }
    }

    /// The transport of a connected socket is gone: keep its state, and the packets it misses from now on,
    /// until `now + max_disconnection`.
    pub fn persist(
        &mut self,
        socket: SocketKey,
        nsp: &Arc<str>,
        sid: &Arc<str>,
        rooms: &[Room],
        now: Instant,
    ) {
        let Some(live) = self.live.remove(&socket) else {
            return;
        };
        let deadline = now + self.max_disconnection;
        let ns = self.namespaces.entry(nsp.clone()).or_default();
        ns.all.insert(socket);
        ns.by_sid.insert(sid.clone(), socket);
        for room in rooms.iter().filter(|r| *r != sid) {
            ns.rooms.join(socket, room);
        }
        self.by_pid.insert(live.pid.clone(), socket);
        self.expiry.push_back((deadline, socket));
        self.ghosts.insert(
            socket,
            Ghost {
                nsp: nsp.clone(),
                pid: live.pid,
                sid: sid.clone(),
                deadline,
                last: live.last,
                missed: Vec::new(),
            },
        );
    }

    /// A stamped broadcast: kept for every disconnected socket of `nsp` it would have reached.
    pub fn keep(
        &mut self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        messages: &[Data],
        offset: u64,
    ) {
        let Some(ns) = self.namespaces.get(nsp) else {
            return;
        };
        let targets = ns.targets(rooms, except);
        if targets.is_empty() {
            return;
        }
        let kept = Arc::new(Kept {
            offset,
            messages: messages.into(),
        });
        for key in targets {
            if let Some(g) = self.ghosts.get_mut(&key) {
                g.missed.push(kept.clone());
            }
        }
    }

    /// Hand over the state of the disconnected socket `pid` of `nsp`, when the client's `offset` is the last
    /// packet written to it and its deadline has not passed.
    pub fn take(&mut self, nsp: &str, pid: &str, offset: &str, now: Instant) -> Option<Session> {
        let key = *self.by_pid.get(pid)?;
        let g = self.ghosts.get(&key)?;
        if &*g.nsp != nsp || g.deadline <= now || parse_offset(offset) != Some(g.last) {
            return None;
        }
        let (g, rooms) = self.remove(key)?;
        Some(Session {
            sid: g.sid,
            pid: g.pid,
            rooms,
            last: g.last,
            missed: g.missed,
        })
    }

    /// A recovered socket is live again under its old pid.
    pub fn restored(&mut self, socket: SocketKey, session: &Session) {
        self.live.insert(
            socket,
            Live {
                pid: session.pid.clone(),
                last: session.newest(),
            },
        );
    }

    fn remove(&mut self, key: SocketKey) -> Option<(Ghost, Vec<Room>)> {
        let g = self.ghosts.remove(&key)?;
        self.by_pid.remove(&g.pid);
        let mut rooms = Vec::new();
        if let Some(ns) = self.namespaces.get_mut(&g.nsp) {
            ns.all.remove(&key);
            ns.by_sid.remove(&g.sid);
            rooms = ns.rooms.rooms_of(key).to_vec();
            rooms.push(g.sid.clone());
            ns.rooms.leave_all(key);
            if ns.all.is_empty() {
                self.namespaces.remove(&g.nsp);
            }
        }
        Some((g, rooms))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry.front().map(|(at, _)| *at)
    }

    /// Drop the disconnected sockets whose deadline has passed; returns their pids.
    pub fn expire(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        while let Some(&(at, key)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            // A key taken (recovered) before its deadline left its entry here; it no longer names a ghost.
            if self.ghosts.get(&key).is_some_and(|g| g.deadline <= now) {
                if let Some((g, _)) = self.remove(key) {
                    gone.push(g.pid);
                }
            }
        }
        gone
    }

    /// Disconnected sockets kept now.
    pub fn disconnected(&self) -> usize {
        self.ghosts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Arc<str> {
        "/".into()
    }

    #[test]
    fn offsets_are_appended_as_the_last_argument_and_read_back() {
        let mut r = Recovery::new(Duration::from_secs(1));
        let mut text = r#"42["a",1]"#.to_owned();
        let off = r.stamp(&mut text);
        assert_eq!(text, format!(r#"42["a",1,"{}"]"#, offset_text(off)));
        assert_eq!(parse_offset(&offset_text(off)), Some(off));
        assert_eq!(parse_offset("nope"), None);
        let mut empty = "42[]".to_owned();
        let off = r.stamp(&mut empty);
        assert_eq!(empty, format!(r#"42["{}"]"#, offset_text(off)));
    }

    #[test]
    fn a_disconnected_socket_keeps_what_its_rooms_get_until_its_deadline() {
        let now = Instant::now();
        let mut r = Recovery::new(Duration::from_secs(10));
        let (a, b) = (SocketKey(1), SocketKey(2));
        r.open(a);
        r.open(b);
        let pid = r.pid_of(a).unwrap().clone();
        r.written(a, 7);
        let rooms: Vec<Room> = vec!["sa".into(), "room".into()];
        r.persist(a, &ns(), &"sa".into(), &rooms, now);
        r.persist(b, &ns(), &"sb".into(), &["sb".into()], now);
        let msg = [Data::Text("x".into())];
        r.keep("/", &["room".into()], &[], &msg, 8);
        r.keep("/", &[], &["room".into()], &msg, 9);
        r.keep("/", &["sa".into()], &[], &msg, 10);
        assert!(
            r.take("/", &pid, &offset_text(6), now).is_none(),
            "an older offset"
        );
        assert!(r.take("/other", &pid, &offset_text(7), now).is_none());
        let s = r.take("/", &pid, &offset_text(7), now).unwrap();
        assert_eq!(&*s.sid, "sa");
        let offsets: Vec<u64> = s.missed.iter().map(|k| k.offset).collect();
        assert_eq!(offsets, vec![8, 10]);
        assert_eq!(s.newest(), 10);
        assert!(
            r.take("/", &pid, &offset_text(7), now).is_none(),
            "taken once"
        );
        assert_eq!(r.disconnected(), 1);
        let later = now + Duration::from_secs(10);
        assert_eq!(r.next_deadline(), Some(later));
        assert_eq!(r.expire(later).len(), 1);
        assert_eq!(r.disconnected(), 0);
        assert!(r.namespaces.is_empty() && r.by_pid.is_empty() && r.expiry.is_empty());
    }
}
