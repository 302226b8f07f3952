//! Room membership of one namespace, both ways: room to sockets (for broadcasts) and socket to rooms (for
//! `rooms`, `leave_all` and disconnects). As in Node, every socket is also in the room named by its own id.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use crate::ids::SocketKey;
pub type Room = Arc<str>;

#[derive(Debug, Default)]
pub struct Rooms {
    members: HashMap<Room, HashSet<SocketKey>>,
    joined: HashMap<SocketKey, Vec<Room>>,
}

impl Rooms {
    pub fn join(&mut self, socket: SocketKey, room: &str) {
        let rooms = self.joined.entry(socket).or_default();
        if rooms.iter().any(|r| &**r == room) {
            return;
        }
        let room = match self.members.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Room::from(room),
        };
        rooms.push(room.clone());
        self.members.entry(room).or_default().insert(socket);
    }

    pub fn leave(&mut self, socket: SocketKey, room: &str) {
        if let Some(rooms) = self.joined.get_mut(&socket) {
            rooms.retain(|r| &**r != room);
        }
        self.remove_member(room, socket);
    }

    pub fn leave_all(&mut self, socket: SocketKey) {
        for room in self.joined.remove(&socket).unwrap_or_default() {
            self.remove_member(&room, socket);
        }
    }

    fn remove_member(&mut self, room: &str, socket: SocketKey) {
        if let Some(set) = self.members.get_mut(room) {
            set.remove(&socket);
            // An empty room is deleted, as Node's adapter does ("delete-room").
            if set.is_empty() {
                self.members.remove(room);
            }
        }
    }

    pub fn rooms_of(&self, socket: SocketKey) -> &[Room] {
        self.joined.get(&socket).map_or(&[], Vec::as_slice)
    }

    pub fn room_names(&self) -> impl Iterator<Item = &Room> {
        self.members.keys()
    }

    pub fn members(&self, room: &str) -> Option<&HashSet<SocketKey>> {
        self.members.get(room)
    }

    /// The sockets a broadcast reaches: members of any of `rooms` (every socket of `all` when `rooms` is
    /// empty), minus the members of any of `except`. Each socket once, in no particular order.
    pub fn targets(
        &self,
        all: &HashSet<SocketKey>,
        rooms: &[String],
        except: &[String],
    ) -> Vec<SocketKey> {
        let excluded = |s: &SocketKey| {
            except
                .iter()
                .any(|r| self.members.get(r.as_str()).is_some_and(|m| m.contains(s)))
        };
        match rooms {
            [] => all.iter().copied().filter(|s| !excluded(s)).collect(),
            [room] => self
                .members
                .get(room.as_str())
                .map(|m| m.iter().copied().filter(|s| !excluded(s)).collect())
                .unwrap_or_default(),
            _ => {
                let mut seen = HashSet::new();
                rooms
                    .iter()
                    .filter_map(|r| self.members.get(r.as_str()))
                    .flatten()
                    .copied()
                    .filter(|s| !excluded(s) && seen.insert(*s))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(v: Vec<SocketKey>) -> Vec<u64> {
        let mut v: Vec<u64> = v.into_iter().map(|k| k.0).collect();
        v.sort_unstable();
        v
    }

    const S1: SocketKey = SocketKey(1);
    const S2: SocketKey = SocketKey(2);
    const S3: SocketKey = SocketKey(3);

    #[test]
    fn join_leave_and_targets() {
        let mut r = Rooms::default();
        let all: HashSet<SocketKey> = [S1, S2, S3].into();
        r.join(S1, "a");
        r.join(S2, "a");
        r.join(S2, "b");
        r.join(S2, "b");
        r.join(S3, "b");
        assert_eq!(r.rooms_of(S2).len(), 2);
        assert_eq!(sorted(r.targets(&all, &["a".into()], &[])), vec![1, 2]);
        assert_eq!(
            sorted(r.targets(&all, &["a".into(), "b".into()], &[])),
            vec![1, 2, 3]
        );
        assert_eq!(
            sorted(r.targets(&all, &["a".into(), "b".into()], &["a".into()])),
            vec![3]
        );
        assert_eq!(sorted(r.targets(&all, &[], &["b".into()])), vec![1]);
        r.leave(S2, "a");
        assert_eq!(sorted(r.targets(&all, &["a".into()], &[])), vec![1]);
        r.leave_all(S2);
        assert!(r.rooms_of(S2).is_empty());
        assert_eq!(sorted(r.targets(&all, &["b".into()], &[])), vec![3]);
        r.leave(S1, "a");
        assert!(r.members("a").is_none(), "empty rooms are deleted");
        assert!(r.targets(&all, &["nope".into()], &[]).is_empty());
    }

    proptest! {
        /// Both directions of the membership always agree, whatever the sequence of joins and leaves.
        #[test]
        fn both_maps_agree(ops in proptest::collection::vec((0u64..5, 0u8..4, 0u8..3), 0..60)) {
            let mut r = Rooms::default();
            for (socket, room, op) in ops {
                let socket = SocketKey(socket);
                let room = format!("r{room}");
                match op { 0 | 1 => r.join(socket, &room), 2 => r.leave(socket, &room), _ => unreachable!() }
            }
            for socket in (0..5).map(SocketKey) {
                for room in r.rooms_of(socket) {
                    prop_assert!(r.members(room).unwrap().contains(&socket));
                }
            }
            for room in r.room_names() {
                for s in r.members(room).unwrap() {
                    prop_assert!(r.rooms_of(*s).iter().any(|x| x == room));
                }
            }
        }
    }
}
