#!/usr/bin/env python3
"""anysio's chat demo: a chat server with a terminal UI, terminal participants, and a browser page.

  chat.py host [--bind 127.0.0.1] [--port 5000] [--backend asyncio|uvloop|trio] [--name host] [--room R] [--headless]
  chat.py join --url http://127.0.0.1:5000 --name NAME [--room R] [--backend asyncio|uvloop|trio]

scripts/chat.sh runs it with no activated virtual environment (`scripts/chat.sh join --name NAME`).

``host`` embeds the Socket.IO server and serves the browser page at ``/``; its terminal user is a participant
in the same process (no socket client). ``--headless`` runs the same server without a UI. ``join`` is a
terminal participant on anysio.Client (asyncio, uvloop or trio). Commands: /join ROOM, /leave,
/nick NAME, /who, /quit; any other line is a message to your room. The wire contract is in README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import shlex
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.lowlevel

import anysio

STATIC = Path(__file__).resolve().parent / "static"
# Rooms live under a prefix so that a chat room can never be a socket's own room (named by its id).
PREFIX = "room:"
LIMITS = {"name": 32, "room": 64, "text": 2000}
ACK_TIMEOUT = 5.0
COMMANDS = "/join ROOM, /leave, /nick NAME, /who, /quit"


# ---- the wire contract: what clients send ------------------------------------------------------------------


@dataclass
class Join:
    room: str
    name: str


@dataclass
class ChatMessage:
    text: str


@dataclass
class Leave:
    pass


class ChatError(Exception):
    """A request the server (or the client side) refused; str(e) is shown to the user."""


def printable(value: object) -> str:
    """``value`` as text without control characters: peers' strings must not drive the terminal."""
    return "".join(c for c in str(value) if c.isprintable())


def clean(value: str, field: str) -> str:
    """A name, room or text as the server keeps it; raises ChatError when it is empty or too long."""
    text = printable(value).strip()
    if not text:
        raise ChatError(f"{field} is empty")
    if len(text) > LIMITS[field]:
        raise ChatError(f"{field} is longer than {LIMITS[field]} characters")
    return text


def format_event(event: str, payload: Mapping[str, Any]) -> str:
    """One output line for a server-to-client event."""
    room, name = printable(payload.get("room", "?")), printable(payload.get("name", "?"))
    if event == "chat message":
        return f"[{room}] {name}: {printable(payload.get('text', ''))}"
    return f"* {name} {event} {room}"


def members_line(room: str, names: list[str]) -> str:
    return f"* members of {printable(room)}: {', '.join(printable(n) for n in names)}"


# ---- the server ------------------------------------------------------------------------------------------------


@dataclass
class Local:
    """The host's own participant: in at most one room, like every client."""

    name: str
    show: Callable[[str], None]
    room: str | None = None


class ChatServer:
    """The chat on an anysio server: rooms, names, notices; and the host's in-process participant."""

    def __init__(self, sio: anysio.Server, log: Callable[[str], None] | None = None) -> None:
        self.sio = sio
        self.local: Local | None = None
        self.log = log
        self._ids = itertools.count(1)
        sio.on("join", self.on_join)
        sio.on("chat message", self.on_message)
        sio.on("leave", self.on_leave)
        sio.on("disconnect", self.on_disconnect)

    # -- what clients send --

    async def on_join(self, socket: anysio.Socket, request: Join) -> list[str] | dict[str, str]:
        """Enter ``room`` as ``name`` (leaving the current room); a repeated join changes nothing."""
        try:
            room, name = clean(request.room, "room"), clean(request.name, "name")
        except ChatError as e:
            return {"error": str(e)}
        if (socket.data.get("room"), socket.data.get("name")) != (room, name):
            await self._leave(socket)
            socket.data.update(room=room, name=name)
            socket.join(PREFIX + room)
            await self._notify(socket, "joined", room, name)
        return await self.members(room)

    async def on_message(self, socket: anysio.Socket, message: ChatMessage) -> dict[str, Any]:
        room, name = socket.data.get("room"), socket.data.get("name")
        if room is None or name is None:
            return {"error": "join a room first"}
        try:
            text = clean(message.text, "text")
        except ChatError as e:
            return {"error": str(e)}
        out = self.stamp(room, name, text)
        await socket.to(PREFIX + room).emit("chat message", out)
        self._tell_local(room, "chat message", out)
        return {"id": out["id"], "ts": out["ts"]}

    async def on_leave(self, socket: anysio.Socket, request: Leave | None = None) -> None:
        del request
        await self._leave(socket)

    async def on_disconnect(self, socket: anysio.Socket, reason: str) -> None:
        del reason
        await self._leave(socket)

    async def _leave(self, socket: anysio.Socket) -> None:
        room, name = socket.data.pop("room", None), socket.data.get("name")
        if room is None or name is None:
            return
        if socket.connected:
            socket.leave(PREFIX + room)
        await self._notify(socket, "left", room, name)

    async def _notify(self, socket: anysio.Socket, event: str, room: str, name: str) -> None:
        payload = {"room": room, "name": name}
        await socket.to(PREFIX + room).emit(event, payload)
        self._tell_local(room, event, payload)
        if self.log is not None:
            self.log(format_event(event, payload))

    # -- shared --

    async def members(self, room: str) -> list[str]:
        names = [str(s.data.get("name")) for s in await self.sio.in_(PREFIX + room).fetch_sockets()]
        if self.local is not None and self.local.room == room:
            names.append(self.local.name)
        return sorted(names, key=str.casefold)

    def stamp(self, room: str, name: str, text: str) -> dict[str, Any]:
        return {"room": room, "name": name, "text": text, "id": str(next(self._ids)), "ts": int(time.time() * 1000)}

    def _tell_local(self, room: str, event: str, payload: Mapping[str, Any]) -> None:
        if self.local is not None and self.local.room == room:
            self.local.show(format_event(event, payload))


class HostParticipant:
    """The host's terminal user, talking to its ChatServer directly."""

    def __init__(self, chat: ChatServer, name: str, show: Callable[[str], None]) -> None:
        self.chat = chat
        self.me = chat.local = Local(clean(name, "name"), show)

    @property
    def room(self) -> str | None:
        return self.me.room

    @property
    def name(self) -> str:
        return self.me.name

    async def join(self, room: str) -> list[str]:
        room = clean(room, "room")
        if self.me.room != room:
            await self.leave()
            await self._announce("joined", room)
            self.me.room = room
        return await self.chat.members(room)

    async def leave(self) -> None:
        room, self.me.room = self.me.room, None
        if room is not None:
            await self._announce("left", room)

    async def rename(self, name: str) -> None:
        name, room = clean(name, "name"), self.me.room
        if name == self.me.name:
            return
        await self.leave()
        self.me.name = name
        if room is not None:
            await self.join(room)

    async def who(self) -> list[str]:
        if self.me.room is None:
            raise ChatError("join a room first: /join ROOM")
        return await self.chat.members(self.me.room)

    async def say(self, text: str) -> None:
        if self.me.room is None:
            raise ChatError("join a room first: /join ROOM")
        out = self.chat.stamp(self.me.room, self.me.name, clean(text, "text"))
        await self.chat.sio.to(PREFIX + self.me.room).emit("chat message", out)

    async def _announce(self, event: str, room: str) -> None:
        payload = {"room": room, "name": self.me.name}
        await self.chat.sio.to(PREFIX + room).emit(event, payload)
        if self.chat.log is not None:
            self.chat.log(format_event(event, payload))


# ---- the terminal participant on anysio.Client -----------------------------------------------------------------


class RemoteParticipant:
    """A participant over Socket.IO, keeping its room and name so that it can join again after a reconnection."""

    def __init__(self, client: anysio.Client, name: str) -> None:
        self.client = client
        self.name = clean(name, "name")
        self.room: str | None = None

    async def _call(self, event: str, data: Any) -> Any:
        if not self.client.connected:
            raise ChatError("not connected to the server")
        try:
            reply = await self.client.emit_with_ack(event, data, timeout=ACK_TIMEOUT)
        except anysio.AckTimeout:
            raise ChatError(f"the server did not answer {event!r} in {ACK_TIMEOUT:g} s") from None
        except anysio.Disconnected:
            raise ChatError("not connected to the server") from None
        if isinstance(reply, dict) and "error" in reply:
            raise ChatError(printable(reply["error"]))
        return reply

    async def join(self, room: str) -> list[str]:
        reply = await self._call("join", {"room": room, "name": self.name})
        self.room = clean(room, "room")
        return [str(n) for n in reply] if isinstance(reply, list) else []

    async def leave(self) -> None:
        if self.room is not None:
            await self._call("leave", {})
            self.room = None

    async def rename(self, name: str) -> None:
        name = clean(name, "name")
        if self.room is not None:
            await self._call("join", {"room": self.room, "name": name})
        self.name = name

    async def who(self) -> list[str]:
        if self.room is None:
            raise ChatError("join a room first: /join ROOM")
        return await self.join(self.room)  # a repeated join answers the members and changes nothing

    async def say(self, text: str) -> None:
        if self.room is None:
            raise ChatError("join a room first: /join ROOM")
        await self._call("chat message", {"text": text})


# ---- the terminal UI (host and join) ----------------------------------------------------------------------------


class Participant(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def room(self) -> str | None: ...
    async def join(self, room: str) -> list[str]: ...
    async def leave(self) -> None: ...
    async def rename(self, name: str) -> None: ...
    async def who(self) -> list[str]: ...
    async def say(self, text: str) -> None: ...


def show(line: str) -> None:
    print(line, flush=True)


def complain(line: str) -> None:
    print(f"! {line}", file=sys.stderr, flush=True)


async def input_lines(fd: int = 0) -> AsyncIterator[str]:
    """Lines of standard input, read without a thread on either backend; ends at end of input."""
    mode = os.fstat(fd).st_mode
    # epoll refuses regular files and /dev/null; reading those never blocks anyway.
    pollable = not (stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(fd)))
    pending = b""
    while True:
        if pollable:
            await anyio.wait_readable(fd)
        else:
            await anyio.lowlevel.checkpoint()
        chunk = os.read(fd, 65536)
        if not chunk:
            if pending:
                yield pending.decode("utf-8", "replace")
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")


async def command(me: Participant, line: str) -> bool:
    """Carry out one input line; False for /quit."""
    if not line.startswith("/"):
        if line.strip():
            await me.say(line)
        return True
    verb, _, arg = line.partition(" ")
    arg = arg.strip()
    if verb == "/quit":
        return False
    if verb == "/join" and arg:
        members = await me.join(arg)
        show(f"* you joined {me.room}; members: {', '.join(printable(n) for n in members)}")
    elif verb == "/leave":
        room = me.room
        await me.leave()
        show(f"* you left {room}" if room else "* you are in no room")
    elif verb == "/nick" and arg:
        await me.rename(arg)
        show(f"* you are now {me.name}")
    elif verb == "/who":
        show(members_line(me.room or "", await me.who()))
    else:
        show(f"! commands: {COMMANDS}; any other line is a message to your room")
    return True


async def terminal(me: Participant, room: str | None) -> None:
    """Read commands until /quit or end of input; one at a time, so the server sees them in order."""
    show(f"* you are {me.name}; commands: {COMMANDS}")
    lines = input_lines()
    if room:
        lines = _prepend(f"/join {room}", lines)
    async for line in lines:
        try:
            if not await command(me, line):
                break
        except ChatError as e:
            show(f"! {e}")


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for line in rest:
        yield line


async def cancel_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if sys.stdout.isatty():
                print(flush=True)  # past the "^C" the terminal echoed
            scope.cancel()
            return


# ---- commands ----------------------------------------------------------------------------------------------------


async def host(args: argparse.Namespace) -> int:
    sio = anysio.Server(static_files={"/": STATIC})
    chat = ChatServer(sio, log=show if args.headless else None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_signals, tg.cancel_scope)
        try:
            bound_host, port = await tg.start(sio.serve, args.bind, args.port)
        except OSError as e:
            complain(str(e))
            tg.cancel_scope.cancel()
            return 1
        url = f"http://{bound_host}:{port}"
        show(f"* chat server on {url}/ ({args.backend}): open it in a browser, or join from a terminal with")
        show(f"*   {join_command(url)}")
        if args.headless:
            await anyio.sleep_forever()
        await terminal(HostParticipant(chat, args.name, show), args.room)
        tg.cancel_scope.cancel()
    show("* bye")
    return 0


def join_command(url: str) -> str:
    """The command that joins this host from another terminal, runnable as it is: scripts/chat.sh (which needs no
    activated virtual environment) when it is there, else this interpreter and this file."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "chat.sh"
    if script.is_file():
        relative = os.path.relpath(script)
        start = [relative if "/" in relative else f"./{relative}"]
    else:
        start = [sys.executable, str(Path(__file__).resolve())]
    return shlex.join([*start, "join", "--url", url]) + " --name NAME"


async def join(args: argparse.Namespace) -> int:
    url = args.url if "://" in args.url else f"http://{args.url}"
    client = anysio.Client(url, reconnection_delay=0.5, reconnection_delay_max=3, timeout=ACK_TIMEOUT)
    me = RemoteParticipant(client, args.name)
    connected_once = False
    kicked = anyio.Event()

    @client.on("connect")
    async def on_connect() -> None:
        if not connected_once:
            return
        show("* reconnected")
        if me.room is not None:
            with contextlib.suppress(ChatError):
                await me.join(me.room)
                show(f"* you joined {me.room} again")

    @client.on("disconnect")
    def on_disconnect(reason: str) -> None:
        if reason == "io client disconnect":
            return
        if reason == "io server disconnect":
            show("! the server closed the connection")
            kicked.set()
        else:
            show("! lost the connection to the server; reconnecting...")

    def on_event(event: str) -> Callable[[dict[str, Any]], None]:
        return lambda payload: show(format_event(event, payload if isinstance(payload, dict) else {}))

    for event in ("chat message", "joined", "left"):
        client.on(event)(on_event(event))
    try:
        await client.connect(retry=False)
    except anysio.ConnectionError as e:
        complain(f"cannot reach the chat server at {url}: {e}")
        return 1
    connected_once = True
    show(f"* connected to {url}")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_on_signals, tg.cancel_scope)

            async def end_when_kicked() -> None:
                await kicked.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(end_when_kicked)
            await terminal(me, args.room)
            tg.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(ACK_TIMEOUT, shield=True):
            await client.disconnect()  # also stops reconnecting
    show("* bye")
    return 1 if kicked.is_set() else 0


def run(fn: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """``fn(args)`` on the backend asked for, once it is known to be installed."""
    if args.backend != "asyncio" and importlib.util.find_spec(args.backend) is None:
        join = " join" if args.command == "join" else ""
        complain(
            f"the {args.backend} backend is not installed: scripts/chat.sh{join} --backend {args.backend}"
            f" installs it (or pip install -e '.[chat,{args.backend}]')"
        )
        return 1
    if args.backend == "uvloop":
        return int(anyio.run(fn, args, backend="asyncio", backend_options={"use_uvloop": True}))
    return int(anyio.run(fn, args, backend=args.backend))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("host", help="run the chat server, with a terminal UI unless --headless")
    h.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    h.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    h.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio", help="event loop")
    h.add_argument("--name", default="host", help="your name in the chat (default host)")
    h.add_argument("--room", help="room to join at start")
    h.add_argument("--headless", action="store_true", help="serve only: no terminal UI")
    j = sub.add_parser("join", help="join a chat server from this terminal")
    j.add_argument("--url", default="http://127.0.0.1:5000", help="the server (default http://127.0.0.1:5000)")
    j.add_argument("--name", required=True, help="your name in the chat")
    j.add_argument("--room", help="room to join at start")
    j.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio", help="event loop")
    args = parser.parse_args(argv)
    try:
        clean(args.name, "name")
    except ChatError as e:
        parser.error(str(e))
    try:
        return run(host if args.command == "host" else join, args)
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 130


if __name__ == "__main__":
    sys.exit(main())
