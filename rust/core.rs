//! The engine and the layer above it, wired once for every driver (the mio poller, the socket-less ASGI driver,
//! the PyO3 classes and the tests). A driver feeds `core.engine` typed input (`Engine::on_request`,
//! `on_message`, `on_disconnect`: the socket driver through its connection layer, `driver::wire`), then calls
//! `settle(now)`, takes the application's events (`poll_event`) and waits until `next_deadline()`.
//!
//! ```text
//! driver ──input──► Engine ──engine events──► Layer ──the application's events──► poll_event
//!                     ▲                          │
//!                     └── closes, answers ◄──────┘   settle(now) runs this until it is quiet
//! ```
//! The layer is a type parameter: `Core<EngineOnly>` hands the engine's own events to the application (the plain
//! Engine.IO server), `Core<SocketIo>` puts the Socket.IO layer on top. What needs Socket.IO takes a
//! `Core<SocketIo>`, so the mode is known where it matters instead of checked at each call.
use std::collections::VecDeque;
use std::time::Instant;

use crate::deadline::earliest;
use crate::engineio::{self, Engine};
use crate::socketio::{self, SocketIo};

/// What sits on the engine's events.
pub trait Layer {
    /// What the application hears.
    type Event;

    /// Take every event the engine has produced.
    fn pump(&mut self, engine: &mut Engine, now: Instant);
    /// Run this layer's timers due at `now`.
    fn handle_timeout(&mut self, engine: &mut Engine, now: Instant);
    /// When this layer next needs `handle_timeout`.
    fn next_deadline(&self) -> Option<Instant>;
    fn poll_event(&mut self) -> Option<Self::Event>;
}

/// No layer: the application hears the engine's events as they are.
#[derive(Debug, Default)]
pub struct EngineOnly {
    events: VecDeque<engineio::Event>,
}

impl Layer for EngineOnly {
    type Event = engineio::Event;

    fn pump(&mut self, engine: &mut Engine, _now: Instant) {
        self.events
            .extend(std::iter::from_fn(|| engine.poll_event()));
    }

    fn handle_timeout(&mut self, _engine: &mut Engine, _now: Instant) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn poll_event(&mut self) -> Option<engineio::Event> {
        self.events.pop_front()
    }
}

impl Layer for SocketIo {
    type Event = socketio::Event;

    fn pump(&mut self, engine: &mut Engine, now: Instant) {
        SocketIo::pump(self, engine, now);
    }

    fn handle_timeout(&mut self, engine: &mut Engine, now: Instant) {
        SocketIo::handle_timeout(self, engine, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.next_timeout()
    }

    fn poll_event(&mut self) -> Option<socketio::Event> {
        SocketIo::poll_event(self)
    }
}

pub struct Core<L> {
    pub engine: Engine,
    pub layer: L,
}

impl<L: Layer> Core<L> {
    pub fn new(engine: Engine, layer: L) -> Self {
        Core { engine, layer }
    }

    // ---- running the layers ---------------------------------------------------------------------------------

    /// Run the timers due at `now` and pass the engine's events through the layer until neither has anything
    /// left to do; what the application hears waits in `poll_event`, what peers get in the engine's buffers.
    pub fn settle(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.layer.pump(&mut self.engine, now);
        self.layer.handle_timeout(&mut self.engine, now);
        // The layer's answers (a session closed on a timer or for bad input) are engine events of their own.
        while self.engine.has_events() {
            self.layer.pump(&mut self.engine, now);
        }
    }

    /// When `settle` next has a timer to run.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(self.engine.next_timeout(), self.layer.next_deadline())
    }

    pub fn poll_event(&mut self) -> Option<L::Event> {
        self.layer.poll_event()
    }
}

/// A core whose layer is chosen at run time (by Python's `socketio=` argument).
pub enum AnyCore {
    EngineIo(Core<EngineOnly>),
    SocketIo(Core<SocketIo>),
}

impl AnyCore {
    pub fn engine(&self) -> &Engine {
        match self {
            Self::EngineIo(c) => &c.engine,
            Self::SocketIo(c) => &c.engine,
        }
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        match self {
            Self::EngineIo(c) => &mut c.engine,
            Self::SocketIo(c) => &mut c.engine,
        }
    }

    pub fn socketio(&mut self) -> Option<&mut Core<SocketIo>> {
        match self {
            Self::EngineIo(_) => None,
            Self::SocketIo(c) => Some(c),
        }
    }

    pub fn socketio_ref(&self) -> Option<&Core<SocketIo>> {
        match self {
            Self::EngineIo(_) => None,
            Self::SocketIo(c) => Some(c),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            Self::EngineIo(c) => c.next_deadline(),
            Self::SocketIo(c) => c.next_deadline(),
        }
    }
}
