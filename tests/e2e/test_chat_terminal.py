"""The chat demo from its terminals: the host (its UI and headless) and `join` participants in tmux panes.

The host and `join` (anysio.Client) run on the test's backend. Panes are typed into
with send-keys and read with capture-pane, polled until a deadline. Without tmux: the wire contract seen by
python-socketio clients, piped input, an unreachable server, a port already taken.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat" / "chat.py"
README = ROOT / "examples" / "chat" / "README.md"
DEADLINE = 15.0
URL = re.compile(r"chat server on (http://127\.0\.0\.1:\d+)/")
# What a participant received: chat lines and others' notices (not its own "* you ..." lines, nor its typing).
RECEIVED = re.compile(r"^(\[\S+\] \S+: .*|\* (?!you )\S+ (joined|left) \S+)$")


def chat_command(*args: str) -> str:
    """A pane's shell command: the chat, then its exit status. (tmux 3.3a sometimes marks a pane dead without its
    status.) The shell's trap keeps it alive through Ctrl-C, which the chat handles, and is not inherited."""
    return f'trap : INT; {shlex.join([sys.executable, str(CHAT), *args])}; echo "[exit $?]"'


class Tmux:
    """A private tmux server (its own -L socket), killed at the end; panes run the chat's commands."""

    def __init__(self, workdir: Path) -> None:
        self.socket = f"anysio-chat-{uuid.uuid4().hex[:12]}"
        self.config = workdir / "tmux.conf"
        # The same shell (for chat_command) wherever the tests run, whatever $SHELL says.
        self.config.write_text("set -g default-shell /bin/sh\nset -g remain-on-exit on\nset -g history-limit 10000\n")
        self.panes: list[str] = []

    async def tmux(self, *args: str) -> str:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": os.environ.get("TERM") or "xterm-256color"}
        result = await anyio.run_process(["tmux", "-L", self.socket, "-f", str(self.config), *args], env=env)
        return result.stdout.decode()

    async def start(self, command: str) -> str:
        """A new pane running ``command``; returns the pane's id."""
        if not self.panes:
            made = ["new-session", "-d", "-s", "chat", "-x", "240", "-y", "50", "-c", str(ROOT)]
        else:
            made = ["split-window", "-t", "chat", "-c", str(ROOT)]
        pane = (await self.tmux(*made, "-P", "-F", "#{pane_id}", command)).strip()
        self.panes.append(pane)
        await self.tmux("select-layout", "-t", "chat", "even-horizontal")
        return pane

    async def type(self, pane: str, text: str) -> None:
        # One tmux command for both, so that no output lands between the text and its Enter.
        await self.tmux("send-keys", "-t", pane, "-l", text, ";", "send-keys", "-t", pane, "Enter")

    async def keys(self, pane: str, *keys: str) -> None:
        await self.tmux("send-keys", "-t", pane, *keys)

    async def screen(self, pane: str) -> str:
        """Everything the pane showed, wrapped lines joined."""
        return await self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", pane)

    async def lines(self, pane: str) -> list[str]:
        return [line.rstrip() for line in (await self.screen(pane)).splitlines()]

    async def wait_for(self, pane: str, pattern: str, count: int = 1, timeout: float = DEADLINE) -> re.Match[str]:
        """Poll the pane until ``pattern`` (a regex) matches ``count`` times; returns the last match."""
        regex = re.compile(pattern, re.MULTILINE)
        text = ""
        with anyio.move_on_after(timeout):
            while True:
                text = await self.screen(pane)
                found = list(regex.finditer(text))
                if len(found) >= count:
                    return found[count - 1]
                await anyio.sleep(0.05)
        raise AssertionError(f"pane {pane} never showed {pattern!r} x{count}; it shows:\n{text}")

    async def exit_status(self, pane: str, timeout: float = DEADLINE) -> int:
        """The exit status of the pane's chat command, as the shell around it reports it."""
        return int((await self.wait_for(pane, r"^\[exit (\d+)\]$", timeout=timeout)).group(1))

    async def pid(self, pane: str) -> int:
        """The chat command's process (the child of the pane's shell)."""
        shell = int(await self.tmux("display", "-p", "-t", pane, "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert len(children) == 1, f"pane {pane}'s shell has children {children}"
        return int(children[0])

    async def kill(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.run_process(["tmux", "-L", self.socket, "kill-server"], check=False)
        # tmux leaves its socket file behind.
        (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / self.socket).unlink(missing_ok=True)


async def received(tmux: Tmux, pane: str) -> list[str]:
    return [line for line in await tmux.lines(pane) if RECEIVED.match(line)]


@pytest.fixture
async def tmux(tmp_path: Path) -> AsyncIterator[Tmux]:
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        await server.kill()


async def start_host(tmux: Tmux, backend: str, *args: str) -> tuple[str, str]:
    pane = await tmux.start(chat_command("host", "--port", "0", "--backend", backend, *args))
    return pane, (await tmux.wait_for(pane, URL.pattern)).group(1)


async def start_join(tmux: Tmux, backend: str, url: str, name: str, *args: str) -> str:
    pane = await tmux.start(chat_command("join", "--url", url, "--name", name, "--backend", backend, *args))
    await tmux.wait_for(pane, rf"^\* you are {name};")
    return pane


@pytest.mark.anyio
async def test_host_ui_and_two_terminals(tmux: Tmux, anyio_backend: str) -> None:
    host, url = await start_host(tmux, anyio_backend)
    alice = await start_join(tmux, anyio_backend, url, "alice")
    bob = await start_join(tmux, anyio_backend, url, "bob")

    await tmux.type(host, "/join lobby")
    await tmux.wait_for(host, r"^\* you joined lobby; members: host$")
    await tmux.type(alice, "/join lobby")
    await tmux.wait_for(alice, r"^\* you joined lobby; members: alice, host$")
    await tmux.wait_for(host, r"^\* alice joined lobby$")
    await tmux.type(bob, "/join lobby")
    await tmux.wait_for(bob, r"^\* you joined lobby; members: alice, bob, host$")
    for pane in (host, alice):
        await tmux.wait_for(pane, r"^\* bob joined lobby$")

    # Messages reach the room except their sender; the host's too.
    await tmux.type(alice, "hello from alice")
    for pane in (host, bob):
        await tmux.wait_for(pane, r"^\[lobby\] alice: hello from alice$")
    await tmux.type(host, "hello from the host")
    for pane in (alice, bob):
        await tmux.wait_for(pane, r"^\[lobby\] host: hello from the host$")
    await tmux.type(bob, "/who")
    await tmux.wait_for(bob, r"^\* members of lobby: alice, bob, host$")

    # Rooms scope everything: bob moves to games and talks there; lobby does not hear him.
    await tmux.type(bob, "/join games")
    await tmux.wait_for(bob, r"^\* you joined games; members: bob$")
    for pane in (host, alice):
        await tmux.wait_for(pane, r"^\* bob left lobby$")
    await tmux.type(bob, "secret in games")
    await tmux.type(bob, "/who")  # answered after the message was handled
    await tmux.wait_for(bob, r"^\* members of games: bob$", count=1)
    await tmux.type(alice, "still in the lobby")
    await tmux.wait_for(host, r"^\[lobby\] alice: still in the lobby$")
    await tmux.type(alice, "/join games")
    await tmux.wait_for(alice, r"^\* you joined games; members: alice, bob$")
    await tmux.wait_for(bob, r"^\* alice joined games$")
    await tmux.wait_for(host, r"^\* alice left lobby$")

    # /nick in a room: the others see the old name leave and the new one come.
    await tmux.type(bob, "/nick robert")
    await tmux.wait_for(bob, r"^\* you are now robert$")
    await tmux.wait_for(alice, r"^\* robert joined games$")
    await tmux.type(alice, "/who")
    await tmux.wait_for(alice, r"^\* members of games: alice, robert$")
    robert = bob
    await tmux.type(robert, "hi alice")
    await tmux.wait_for(alice, r"^\[games\] robert: hi alice$")

    # /leave, then a participant that just drops (SIGKILL: no goodbye) is announced as leaving too.
    await tmux.type(alice, "/leave")
    await tmux.wait_for(alice, r"^\* you left games$")
    await tmux.wait_for(robert, r"^\* alice left games$")
    await tmux.type(alice, "/join games")
    await tmux.wait_for(robert, r"^\* alice joined games$", count=2)
    os.kill(await tmux.pid(robert), signal.SIGKILL)
    await tmux.wait_for(alice, r"^\* robert left games$")

    assert await received(tmux, host) == [
        "* alice joined lobby",
        "* bob joined lobby",
        "[lobby] alice: hello from alice",
        "* bob left lobby",
        "[lobby] alice: still in the lobby",
        "* alice left lobby",
    ]
    assert await received(tmux, alice) == [
        "* bob joined lobby",
        "[lobby] host: hello from the host",
        "* bob left lobby",
        "* bob left games",
        "* robert joined games",
        "[games] robert: hi alice",
        "* robert left games",
    ]
    assert await received(tmux, robert) == [
        "[lobby] alice: hello from alice",
        "[lobby] host: hello from the host",
        "* alice joined games",
        "* alice left games",
        "* alice joined games",
    ]

    # Ctrl-C ends a participant cleanly; /quit ends the host.
    await tmux.keys(alice, "C-c")
    assert await tmux.exit_status(alice) == 0
    await tmux.wait_for(alice, r"^\* bye$")
    await tmux.type(host, "/quit")
    assert await tmux.exit_status(host) == 0
    await tmux.wait_for(host, r"^\* bye$")


@pytest.mark.anyio
async def test_server_restart_end_of_input_and_ctrl_c(tmux: Tmux, anyio_backend: str) -> None:
    """A participant says when it lost the server and joins its room again when it is back; the host ends at
    end of input; the headless host at Ctrl-C."""
    host, url = await start_host(tmux, anyio_backend, "--name", "hal", "--room", "ops")
    await tmux.wait_for(host, r"^\* you joined ops; members: hal$")
    carol = await start_join(tmux, anyio_backend, url, "carol", "--room", "ops")
    await tmux.wait_for(carol, r"^\* you joined ops; members: carol, hal$")

    await tmux.keys(host, "C-d")
    assert await tmux.exit_status(host) == 0
    await tmux.wait_for(carol, r"^! lost the connection to the server; reconnecting\.\.\.$")

    port = url.rsplit(":", 1)[1]
    headless = await tmux.start(chat_command("host", "--headless", "--port", port, "--backend", anyio_backend))
    await tmux.wait_for(carol, r"^\* reconnected$")
    await tmux.wait_for(carol, r"^\* you joined ops again$")
    await tmux.wait_for(headless, r"^\* carol joined ops$")
    await tmux.type(carol, "/who")
    await tmux.wait_for(carol, r"^\* members of ops: carol$")

    await tmux.keys(headless, "C-c")
    assert await tmux.exit_status(headless) == 0
    await tmux.wait_for(headless, r"^\* bye$")
    await tmux.wait_for(carol, r"^! lost the connection to the server; reconnecting\.\.\.$", count=2)
    await tmux.keys(carol, "C-c")  # also while it is reconnecting
    assert await tmux.exit_status(carol) == 0


# ---- without tmux: the wire contract, piped input, unreachable servers --------------------------------------------


class Host:
    """``chat.py host --headless`` as a subprocess; its stdout lines are kept."""

    def __init__(self, backend: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHAT), "host", "--headless", "--port", str(port), "--backend", backend],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        assert ready, f"the host said nothing in {DEADLINE} s"
        first = self.proc.stdout.readline()
        found = URL.search(first)
        assert found, f"the host said {first!r}"
        self.url = found.group(1)

    def stop(self) -> str:
        """SIGINT, as Ctrl-C; returns the rest of the output and checks the exit status."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=DEADLINE)
        assert self.proc.returncode == 0, out
        return out


@pytest.fixture(params=["asyncio", "trio"])
def headless(request: pytest.FixtureRequest) -> Iterator[Host]:
    host = Host(str(request.param))
    try:
        yield host
    finally:
        if host.proc.poll() is None:
            host.proc.kill()
            host.proc.wait()


def test_wire_contract(headless: Host) -> None:
    """What any Socket.IO client sees (python-socketio here): acks, events, their exact fields."""
    import socketio

    async def scenario() -> None:
        got: dict[str, list[tuple[str, Any]]] = {"a": [], "b": [], "c": []}
        clients = {}
        for who in got:
            client = socketio.AsyncClient(reconnection=False)
            for event in ("chat message", "joined", "left"):
                client.on(event, lambda payload, who=who, event=event: got[who].append((event, payload)))
            await client.connect(headless.url, wait_timeout=DEADLINE)
            clients[who] = client
        a, b, c = clients["a"], clients["b"], clients["c"]

        assert await a.call("join", {"room": "lobby", "name": "ann"}) == ["ann"]
        assert await b.call("join", {"room": "lobby", "name": "Bea"}) == ["ann", "Bea"]
        assert await c.call("join", {"room": "elsewhere", "name": "cy"}) == ["cy"]
        before = int(time.time() * 1000)
        ack = await a.call("chat message", {"text": "  hi  "})
        assert set(ack) == {"id", "ts"} and isinstance(ack["id"], str) and isinstance(ack["ts"], int)
        assert before - 1000 <= ack["ts"] <= int(time.time() * 1000) + 1000
        second = await b.call("chat message", {"text": "hey"})
        assert second["id"] != ack["id"]
        # Refusals are acked as {error}.
        assert "error" in await a.call("chat message", {"text": "   "})
        assert "error" in await a.call("join", {"room": "", "name": "ann"})
        assert "error" in await a.call("join", "lobby")
        assert "error" in await a.call("chat message", {"text": "x" * 2001})
        # A repeated join answers the members and tells nobody.
        assert await b.call("join", {"room": "lobby", "name": "Bea"}) == ["ann", "Bea"]
        assert await b.call("leave", {}) is None
        assert await b.call("leave") is None  # {} may be left out; leaving no room is no error
        assert "error" in await b.call("chat message", {"text": "nowhere"})
        await b.call("join", {"room": "lobby", "name": "Bea"})
        await b.eio.disconnect(abort=True)  # drops without a DISCONNECT packet
        with anyio.fail_after(DEADLINE):
            while ("left", {"room": "lobby", "name": "Bea"}) not in got["a"][-1:]:
                await anyio.sleep(0.02)

        message = {"room": "lobby", "name": "ann", "text": "hi", "id": ack["id"], "ts": ack["ts"]}
        assert got["a"] == [
            ("joined", {"room": "lobby", "name": "Bea"}),
            ("chat message", {"room": "lobby", "name": "Bea", "text": "hey", **second}),
            ("left", {"room": "lobby", "name": "Bea"}),
            ("joined", {"room": "lobby", "name": "Bea"}),
            ("left", {"room": "lobby", "name": "Bea"}),
        ]
        assert got["b"] == [("chat message", message)]
        assert got["c"] == []
        for client in (a, c):
            await client.disconnect()

    asyncio.run(scenario())
    out = headless.stop()
    assert "* bye" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_piped_participant(headless: Host, backend: str) -> None:
    """`join` reads a pipe as well as a terminal, and ends at its end (exit status 0), on either backend."""
    import socketio

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        watcher = socketio.AsyncClient(reconnection=False)
        watcher.on("chat message", seen.append)
        await watcher.connect(headless.url, wait_timeout=DEADLINE)
        await watcher.call("join", {"room": "pipes", "name": "watcher"})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHAT),
            "join",
            "--url",
            headless.url,
            "--name",
            "piper",
            "--backend",
            backend,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(b"/join pipes\n/who\nthrough a pipe\n"), DEADLINE)
        assert proc.returncode == 0, out
        text = out.decode()
        assert "* members of pipes: piper, watcher" in text and text.rstrip().endswith("* bye")
        await watcher.disconnect()
        return seen

    seen = asyncio.run(scenario())
    assert [(m["name"], m["text"]) for m in seen] == [("piper", "through a pipe")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_unreachable_server(backend: str) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, str(CHAT), "join", "--url", f"127.0.0.1:{port}", "--name", "x", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert f"! cannot reach the chat server at http://127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_port_in_use(backend: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(CHAT), "host", "--headless", "--port", str(port), "--backend", backend],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    assert done.returncode == 1
    # Exactly what examples/chat/README.md says, with this port.
    documented = re.search(r"a host whose port is taken says\s+`(! cannot listen on [^`]+)`", README.read_text())
    assert documented is not None
    assert done.stderr.splitlines() == [documented[1].replace("127.0.0.1:5000", f"127.0.0.1:{port}")]


@pytest.mark.parametrize(
    ("hidden", "args", "line"),
    [
        (
            "trio",
            ["host", "--headless", "--port", "0", "--backend", "trio"],
            "! the trio backend is not installed: scripts/chat.sh --backend trio installs it"
            " (or pip install -e '.[chat,trio]')",
        ),
        (
            "trio",
            ["join", "--name", "x", "--backend", "trio"],
            "! the trio backend is not installed: scripts/chat.sh join --backend trio installs it"
            " (or pip install -e '.[chat,trio]')",
        ),
    ],
)
def test_a_missing_package_is_one_line_naming_its_install(hidden: str, args: list[str], line: str) -> None:
    code = f"import runpy, sys; sys.modules[{hidden!r}] = None; sys.argv[0] = {str(CHAT)!r};"
    code += f" runpy.run_path({str(CHAT)!r}, run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [line]
