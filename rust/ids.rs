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
