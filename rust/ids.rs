//! The three kinds of key the layers hand each other. Each is its own type so that one cannot be passed where
//! another is meant (a session key where a connection id belongs); they become plain integers only where they
//! cross to Python (`rust/python/`).

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            /// The id after this one, for counters that hand out ids in order.
            pub fn next(self) -> Self {
                Self(self.0 + 1)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// One transport connection, as a driver names it: a TCP connection, or one the ASGI server handed over.
    ConnId
);
id!(
    /// One Engine.IO session (Socket.IO's "client"), whichever connections carry it.
    SessionKey
);
id!(
    /// One Socket.IO socket: a client's connection to one namespace.
    SocketKey
);

/// A map keyed by one of these ids. The ids are the process's own counters, never a peer's input, so a
/// multiplicative hash (rustc's FxHash) serves: SipHash's defence against chosen keys buys nothing here, and
/// the hot path looks a connection up several times per message.
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.add(u64::from(b)));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
