"""The Socket.IO client (``anysio.Client``), on anyio: the protocol is Rust's (``_native.ClientCore``, sans-IO);
this package owns the sockets, the HTTP around long-polling (h11), the timers and the handlers.

``http`` (HTTP/1.1 and the WebSocket's opening) -> ``engine`` (one Engine.IO session: polling, the upgrade,
the heartbeat) -> ``manager`` (the connection, its namespaces, reconnection) -> ``socket`` (``Client``: one
namespace's handlers, emits and acks)."""
