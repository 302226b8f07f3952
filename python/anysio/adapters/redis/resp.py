"""Redis's protocol (RESP) on one connection: commands packed and replies read by hiredis, whose reader is
sans-IO, over an anyio byte stream, so the same code runs on asyncio and trio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

from ...exceptions import ClusterError

try:
    import hiredis
except ImportError as e:  # pragma: no cover - the "redis" extra
    raise ImportError("the Redis adapter needs hiredis: pip install 'anysio[redis]'") from e

#: What a lost or refused connection raises (and a command that took longer than its bound).
CONNECTION_ERRORS = (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError)

Command = tuple[str | bytes, ...]


@dataclass(frozen=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    username: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """``redis://[[user]:password@]host[:port][/db]``."""
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"unsupported Redis URL {url!r} (redis://host:port expected)")
        db = parts.path.strip("/")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            db=int(db) if db else 0,
        )

    def unreachable(self, error: BaseException) -> ClusterError:
        return ClusterError(f"Redis at {self.host}:{self.port} is unreachable: {str(error) or type(error).__name__}")


class RedisReplyError(ClusterError):
    """Redis answered a command with an error."""


class RespConnection:
    """One connection to Redis: commands packed by hiredis, replies (and pushes) read by hiredis's Reader."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._reader = hiredis.Reader()

    @classmethod
    async def open(cls, address: RedisAddress, timeout: float) -> RespConnection:
        with anyio.fail_after(timeout):
            conn = cls(await anyio.connect_tcp(address.host, address.port))
            try:
                if address.password is not None:
                    auth = [address.username, address.password] if address.username else [address.password]
                    await conn.command("AUTH", *auth)
                if address.db:
                    await conn.command("SELECT", str(address.db))
            except BaseException:
                await close_quietly(conn)
                raise
        return conn

    async def send(self, *args: str | bytes) -> None:
        await self.send_many([args])

    async def send_many(self, commands: list[Command]) -> None:
        """Send commands in one write, without reading their replies."""
        packed: list[Any] = list(commands)  # hiredis's stub types a command as one element
        await self._stream.send(b"".join(hiredis.pack_command(c) for c in packed))

    async def read(self) -> Any:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            self._reader.feed(await self._stream.receive())

    async def pipeline(self, commands: list[Command]) -> None:
        """Send commands in one write, then read (and drop) their replies."""
        await self.send_many(commands)
        for _ in commands:
            await self.read()

    async def command(self, *args: str | bytes) -> Any:
        await self.send(*args)
        reply = await self.read()
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(f"Redis: {reply}")
        return reply

    async def aclose(self) -> None:
        await self._stream.aclose()


async def close_quietly(conn: RespConnection | None) -> None:
    """Close a connection, even from a cancelled task (its peer may be gone already)."""
    if conn is not None:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
