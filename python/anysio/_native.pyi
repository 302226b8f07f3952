"""The Rust core (rust/python/). Events are tuples, see EngineCore.turn."""

from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal, TypeAlias, final

__all__ = [
    "ClientCore",
    "EngineCore",
    "HandlerTimes",
    "VirtualCore",
    "__version__",
    "encode_args",
    "redis_broadcast",
    "redis_cluster_broadcast",
    "redis_decode",
    "redis_encode",
    "redis_encode_broadcast",
]

__version__: Final[str]

Remote: TypeAlias = tuple[str, int] | None
# (method, path, query, headers, remote)
RequestTuple: TypeAlias = tuple[str, str, str, list[tuple[str, str]], Remote]
# Every event a core gives: a connection handed to the worker that owns its session (workers only; Python sends
# the descriptor on and closes it), then the engine's events.
HandoffTuple: TypeAlias = tuple[Literal["handoff"], int, int]  # fd, owner worker
# A request refused with one of Node's errors: code, the refusal's own message (Forbidden), the request.
ConnectionErrorTuple: TypeAlias = tuple[Literal["connection_error"], int, str | None, RequestTuple]
EventTuple: TypeAlias = (
    tuple[Literal["open"], int, str, str, RequestTuple]
    | tuple[Literal["message"], int, str | bytes]
    | tuple[Literal["upgrade"], int]
    | tuple[Literal["close"], int, str]
    | tuple[Literal["handshake"], int, RequestTuple]
    | tuple[Literal["request"], int, RequestTuple, bytes]  # only with serve_other_paths=True
    | ConnectionErrorTuple
    | tuple[Literal["error"], str, Remote]
    | HandoffTuple
)
# With socketio=True, "message" and "upgrade" are replaced by:
SioEventTuple: TypeAlias = (
    tuple[Literal["open"], int, str, str, RequestTuple]
    | tuple[Literal["connect"], int, int, str, str, str | None]  # socket, client, nsp, sid, auth JSON
    # socket, name (None when numeric: the args then start with it), args JSON array, their count, ack id, attachments
    | tuple[Literal["event"], int, str | None, str, int, int | None, list[bytes] | None]
    | tuple[Literal["ack"], int, str, int, list[bytes] | None]
    | tuple[Literal["disconnect"], int, str]
    | tuple[Literal["close"], int, str]
    | tuple[Literal["handshake"], int, RequestTuple]
    | tuple[Literal["request"], int, RequestTuple, bytes]  # only with serve_other_paths=True
    | ConnectionErrorTuple
    | tuple[Literal["error"], str, Remote]
    | tuple[Literal["expired"], str]  # with recovery: a disconnected socket's state is gone (its pid)
    | tuple[Literal["drained"], int]  # a socket watched with watch_drain is under its mark (or gone)
    | HandoffTuple
)
# A disconnected socket's state between workers: sid, pid, rooms, last offset, [(offset, [text, attachments...])]
SessionTuple: TypeAlias = tuple[str, str, list[str], str, list[tuple[str, list[str | bytes]]]]
# What turn() returns: EventTuple, or SioEventTuple with socketio=True.
CoreEvent: TypeAlias = EventTuple | SioEventTuple

@final
class EngineCore:
    def __new__(
        cls,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        upgrade_timeout: float = 10.0,
        max_payload: int = 1_000_000,
        transports: list[str] = ...,
        allow_upgrades: bool = True,
        path: str = "/engine.io",
        cors_origins: list[str] | None = None,
        cors_credentials: bool = False,
        cookie_name: str | None = None,
        cookie_path: str = "/",
        cookie_http_only: bool = True,
        cookie_same_site: str | None = ...,  # "Lax"
        max_connections: int | None = None,
        defer_handshakes: bool = False,
        sid_prefix: str = "",
        max_buffered: int = ...,
        socketio: bool = False,
        connect_timeout: float = 45.0,
        serve_other_paths: bool = False,
        request_timeout: float = 60.0,
        keep_alive_timeout: float = 5.0,
        recovery: float | None = None,
        connection_rate: tuple[float, float] | None = None,
        parser: Literal["default", "msgpack"] = "default",
        per_message_deflate: tuple[int, bool | None, bool, int | None, int | None, int] | None = None,
        http_compression: int | None = ...,  # 1024
        allow_eio3: bool = False,
    ) -> EngineCore: ...
    def listen_fd(self, fd: int) -> tuple[str, int]: ...
    @property
    def allow_eio3(self) -> bool: ...
    @allow_eio3.setter
    def allow_eio3(self, allow: bool) -> None: ...
    def set_worker(self, index: int) -> None: ...
    def adopt(self, fd: int) -> None: ...
    def fileno(self) -> int: ...
    def next_timeout(self) -> float | None: ...
    def turn(self) -> list[CoreEvent]: ...
    def send(self, key: int, data: str | bytes | bytearray) -> bool: ...
    def broadcast(self, keys: list[int], data: str | bytes | bytearray) -> None: ...
    def close(self, key: int) -> None: ...
    def accept_handshake(self, conn: int, sid: str | None = None) -> None: ...
    def refuse_handshake(self, conn: int, code: int, message: str | None = None) -> None: ...
    def respond(self, conn: int, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...
    # hook(initial, request, headers) -> the headers to send, for every response that carries a session.
    def set_headers_hook(
        self, hook: Callable[[bool, RequestTuple, list[tuple[str, str]]], list[tuple[str, str]]] | None
    ) -> None: ...
    def sid_of(self, key: int) -> str | None: ...
    def transport_of(self, key: int) -> str | None: ...
    @property
    def session_count(self) -> int: ...
    @property
    def connection_count(self) -> int: ...
    def shutdown(self) -> None: ...
    def metrics(self) -> dict[str, Any]: ...
    def buffered_amount(self, socket: int) -> int | None: ...
    def watch_drain(self, socket: int, mark: int) -> None: ...
    # The Socket.IO layer (socketio=True); sockets are named by the keys of the "connect" event.
    def add_namespace(self, nsp: str) -> None: ...
    def remove_namespace(self, nsp: str) -> bool: ...
    def set_dynamic_namespaces(self, on: bool) -> None: ...
    def set_serve_other_paths(self, on: bool) -> None: ...
    def accept(self, socket: int) -> bool: ...
    def refuse(self, socket: int, data_json: str) -> None: ...
    def disconnect(self, socket: int, close: bool = False) -> None: ...
    def emit_to(
        self,
        socket: int,
        data_json: str | bytes,
        attachments: list[bytes] | None = None,
        id: int | None = None,
        ack_reply: bool = False,
        compress: bool = True,
    ) -> bool: ...
    def broadcast_event(
        self,
        nsp: str,
        data_json: str | bytes,
        rooms: list[str] = ...,
        except_rooms: list[str] = ...,
        attachments: list[bytes] | None = None,
        id: int | None = None,
        volatile: bool = False,
        compress: bool = True,
    ) -> list[int]: ...
    def targets(self, nsp: str, rooms: list[str] = ..., except_rooms: list[str] = ...) -> list[int]: ...
    def join(self, socket: int, rooms: list[str]) -> None: ...
    def leave(self, socket: int, room: str) -> None: ...
    def rooms_of(self, socket: int) -> list[str]: ...
    def socket_count(self, nsp: str) -> int: ...
    # Connection state recovery (recovery=seconds).
    def pid_of(self, socket: int) -> str | None: ...
    def restore(self, socket: int, pid: str, offset: str) -> str | None: ...
    def take_session(self, nsp: str, pid: str, offset: str) -> SessionTuple | None: ...
    def adopt_session(self, socket: int, session: SessionTuple) -> str | None: ...
    @property
    def disconnected_count(self) -> int: ...

# The socket-less mode (ASGI): what a virtual connection gives back, oldest first.
VirtualOutput: TypeAlias = (
    tuple[Literal["response"], int, list[tuple[str, str]], bytes]  # status, headers, body
    | tuple[Literal["accept"], list[tuple[str, str]]]  # WebSocket accepted; headers to add to the 101
    # A WebSocket message as the ASGI event that sends it: {"type": "websocket.send", "text" | "bytes": data}
    | dict[str, str | bytes]
    | tuple[Literal["close"], int | None]  # WebSocket close code; None: closed without one (or an answer)
)
# The application's events (as from EngineCore.turn) and the virtual connections with outputs waiting.
Settled: TypeAlias = tuple[list[CoreEvent], list[int]]

@final
class VirtualCore:
    """Drives an EngineCore with connections an ASGI server hands over instead of sockets."""

    def __new__(cls, core: EngineCore) -> VirtualCore: ...
    @property
    def path(self) -> str: ...
    @property
    def max_payload(self) -> int: ...
    @property
    def connection_count(self) -> int: ...
    def fileno(self) -> int: ...
    def wake(self) -> None: ...
    def next_timeout(self) -> float | None: ...
    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        remote: tuple[str, int] | None = None,
    ) -> tuple[int, list[CoreEvent], list[int]]: ...
    def websocket(
        self, target: str, headers: list[tuple[bytes, bytes]], remote: tuple[str, int] | None = None
    ) -> tuple[int, list[CoreEvent], list[int]]: ...
    def message(self, conn: int, data: str | bytes | bytearray) -> None: ...
    def disconnect(self, conn: int) -> Settled: ...
    def take(self, conn: int) -> list[VirtualOutput]: ...
    def turn(self) -> Settled: ...
    def shutdown(self) -> Settled: ...

# What a ClientCore reads from the server (rust/python/client_core.rs).
ClientEvent: TypeAlias = (
    tuple[Literal["open"], str, list[str], int, int, int]  # sid, upgrades, ping interval and timeout (ms), maxPayload
    | tuple[Literal["close"]]
    | tuple[Literal["ping"]]
    | tuple[Literal["probed"]]
    | tuple[Literal["connect"], str, str | None]  # nsp, data JSON
    | tuple[Literal["connect_error"], str, str | None]
    | tuple[Literal["disconnect"], str]
    | tuple[Literal["event"], str, str, str, int, int | None, list[bytes] | None]  # nsp, name, args, argc, id, att.
    | tuple[Literal["ack"], str, int, str, list[bytes] | None]  # nsp, id, args JSON, attachments
)

@final
class ClientCore:
    """One Engine.IO session of a client, with the Socket.IO packets above it (sans-IO). ValueError: the server
    broke the protocol."""

    def __new__(
        cls, transport: Literal["polling", "websocket"], parser: Literal["default", "msgpack"] = "default"
    ) -> ClientCore: ...
    @property
    def transport(self) -> Literal["polling", "websocket"]: ...
    def feed_polling(self, body: bytes) -> list[ClientEvent]: ...
    def feed_websocket(self, data: bytes) -> list[ClientEvent]: ...
    def probe_frame(self) -> bytes: ...
    def feed_probe(self, data: bytes) -> list[ClientEvent]: ...
    def upgrade(self) -> None: ...
    def take_payload(self) -> bytes | None: ...
    def take_frames(self) -> bytes: ...
    def close(self) -> None: ...
    def connect(self, nsp: str, auth_json: str | None = None) -> None: ...
    def disconnect(self, nsp: str) -> None: ...
    def event(self, nsp: str, data_json: str, id: int | None, attachments: list[bytes] | None) -> None: ...
    def ack(self, nsp: str, id: int, data_json: str, attachments: list[bytes] | None) -> None: ...

@final
class HandlerTimes:
    """The event handlers' time for /metrics: buckets of powers of two nanoseconds, on a monotonic clock of its
    own."""

    LOW: ClassVar[int]
    BUCKETS: ClassVar[int]
    def __new__(cls) -> HandlerTimes: ...
    def now(self) -> int: ...
    def lap(self, started: int) -> int: ...
    def observe(self, ns: int) -> None: ...
    @property
    def buckets(self) -> list[int]: ...
    def snapshot(self) -> dict[str, Any]: ...

def encode_args(args: list[Any] | tuple[Any, ...], fallback: Callable[[Any], Any]) -> tuple[str, list[bytes]]: ...

# The Redis adapter's codec (rust/adapter/python_redis.rs). Kinds: "broadcast", "request", "response", "cluster".
# (uid, nsp, rooms, except, volatile, compress, data_json, attachments)
def redis_broadcast(data: bytes) -> tuple[str, str, list[str], list[str], bool, bool, str, list[bytes]]: ...
def redis_cluster_broadcast(
    data: bytes,
) -> tuple[str, str, list[str], list[str], bool, bool, str, list[bytes]] | None: ...
def redis_decode(kind: str, data: bytes) -> tuple[str, list[bytes]]: ...
def redis_encode(kind: str, json: str, attachments: list[bytes]) -> bytes: ...
def redis_encode_broadcast(
    uid: str,
    nsp: str,
    data_json: str,
    attachments: list[bytes],
    rooms: list[str],
    except_rooms: list[str],
    volatile: bool,
    sharded: bool = False,
    compress: bool = True,
) -> bytes: ...
