//! Channel names: the classic adapter's (and the emitter's), and the sharded adapter's.
use super::broadcast::BroadcastOpts;
use super::sharded::{ClusterBody, ClusterMessage};

// ---- classic adapter: channels ----------------------------------------------------------------------------------

/// The classic adapter's channels for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    broadcast: String,
    request: String,
    response: String,
    own_response: String,
}

/// What an incoming channel is, for one namespace's [`Channels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'c> {
    /// A broadcast; `room` when it came on a room's channel (Node drops those for rooms it does not have,
    /// before decoding).
    Broadcast {
        room: Option<&'c str>,
    },
    Request,
    Response,
}

impl Channels {
    /// `key` is the `key` option (`socket.io` by default), `uid` this server's uid for the namespace.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let response = format!("{key}-response#{nsp}#");
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            own_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// `<key>#<nsp>#`: broadcasts to the whole namespace or to several rooms.
    pub fn broadcast(&self) -> &str {
        &self.broadcast
    }

    /// The pattern subscribed with PSUBSCRIBE: `<key>#<nsp>#*`.
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// `<key>#<nsp>#<room>#`.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.broadcast)
    }

    /// Where Node publishes a broadcast: the room's channel when it targets exactly one room.
    pub fn for_broadcast(&self, opts: &BroadcastOpts) -> String {
        match opts.rooms.as_slice() {
            [room] => self.room(room),
            _ => self.broadcast.clone(),
        }
    }

    pub fn request(&self) -> &str {
        &self.request
    }

    /// The shared response channel (Node's default, `publishOnSpecificResponseChannel: false`).
    pub fn response(&self) -> &str {
        &self.response
    }

    /// `<key>-response#<nsp>#<uid>#`: this server's own response channel.
    pub fn own_response(&self) -> &str {
        &self.own_response
    }

    /// Another server's own response channel.
    pub fn response_for(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// The three channels subscribed with SUBSCRIBE, in Node's order.
    pub fn subscriptions(&self) -> [&str; 3] {
        [&self.request, &self.response, &self.own_response]
    }

    pub fn classify<'c>(&self, channel: &'c [u8]) -> Option<Incoming<'c>> {
        if channel == self.request.as_bytes() {
            return Some(Incoming::Request);
        }
        if channel.starts_with(self.response.as_bytes()) {
            return Some(Incoming::Response);
        }
        let rest = channel.strip_prefix(self.broadcast.as_bytes())?;
        // Node: `channel.slice(prefix.length, -1)`.
        let room = std::str::from_utf8(&rest[..rest.len().saturating_sub(1)]).ok()?;
        Some(Incoming::Broadcast {
            room: (!room.is_empty()).then_some(room),
        })
    }
}

/// The sharded adapter's `subscriptionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace.
    Static,
    /// Plus one per public room (not a socket id): the default.
    #[default]
    Dynamic,
    /// Plus one per room, socket ids included.
    DynamicPrivate,
}

/// Node's `looksLikeASocketId`: a string of 20 (UTF-16) characters.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// The sharded adapter's channels for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedChannels {
    main: String,
    own_response: String,
    pub mode: SubscriptionMode,
}

impl ShardedChannels {
    pub fn new(prefix: &str, nsp: &str, uid: &str, mode: SubscriptionMode) -> Self {
        let main = format!("{prefix}#{nsp}#");
        ShardedChannels {
            own_response: format!("{main}{uid}#"),
            main,
            mode,
        }
    }

    /// `<prefix>#<nsp>#`, SSUBSCRIBEd by every server; its SHARDNUMSUB is the server count.
    pub fn main(&self) -> &str {
        &self.main
    }

    /// `<prefix>#<nsp>#<uid>#`: responses to this server.
    pub fn own_response(&self) -> &str {
        &self.own_response
    }

    /// Where responses to server `uid` go.
    pub fn response_to(&self, uid: &str) -> String {
        format!("{}{uid}#", self.main)
    }

    /// A room's dynamic channel.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// Whether a server subscribes to `room`'s own channel when the room appears (`is_socket_id`: the room is
    /// one of this server's socket ids).
    pub fn subscribes_room(&self, is_socket_id: bool) -> bool {
        match self.mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !is_socket_id,
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// Node's `computeChannel`: a broadcast without ack to exactly one room goes to that room's channel (in
    /// `dynamic` mode only when the room does not look like a socket id); everything else to the main channel.
    /// Responses go to [`Self::response_to`] the requester instead.
    pub fn for_message(&self, msg: &ClusterMessage) -> String {
        if let ClusterBody::Broadcast {
            request_id: None,
            opts,
            ..
        } = &msg.body
        {
            if let [room] = opts.rooms.as_slice() {
                let dynamic = match self.mode {
                    SubscriptionMode::Static => false,
                    SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
                    SubscriptionMode::DynamicPrivate => true,
                };
                if dynamic {
                    return self.room(room);
                }
            }
        }
        self.main.clone()
    }
}
