"""Every shell command of README.md, examples/*/README.md and the documentation site's pages (docs/*.md), run
exactly as written, from the repository's root, without an activated virtual environment (as on a fresh clone,
after the quick start made `.venv`).

The commands are read out of the pages' fenced ``sh`` blocks, so the two cannot drift apart: a command with no
entry in ``COMMANDS`` fails ``test_every_readme_command_is_checked``, and so does an entry whose command left the
pages. Servers are started, probed with a real client, stopped with SIGINT (Ctrl-C), and must end with status 0
and no traceback; the others must end with status 0. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("examples/*/README.md")), *sorted(ROOT.glob("docs/*.md"))]
DEADLINE = 60.0  # per wait; generous: chat.sh may (re)install the chat and backend extras first


def readme_commands() -> list[str]:
    """The commands of the READMEs' fenced sh blocks, in order, without their comments."""
    found: list[str] = []
    for readme in READMES:
        for block in re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", readme.read_text(), re.M | re.S):
            for line in block.splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command and command not in found:
                    found.append(command)
    return found


def plain_environment() -> dict[str, str]:
    """The caller's environment without an activated virtual environment: no .venv on PATH, no VIRTUAL_ENV, no
    PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p, "activate").exists()]
    env["PATH"] = os.pathsep.join(path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Running:
    """A command in its own process: its output (stdout and stderr) line by line, waited for with a deadline."""

    def __init__(self, command: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            shlex.split(command),
            cwd=ROOT,
            env=env or plain_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.proc.stdin is not None
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._queue.put(raw.decode(errors="replace").rstrip("\n"))
        self._queue.put(None)

    def until(self, pattern: str) -> re.Match[str]:
        """The first line (from now on) matching ``pattern``."""
        while True:
            try:
                line = self._queue.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"{self.command}: no line matching {pattern!r} in time:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"{self.command}: ended without a line matching {pattern!r}:\n{self.output}")
            self.lines.append(line)
            if found := re.search(pattern, line):
                return found

    def finish(self) -> int:
        """Wait for the end (all output read); the exit status."""
        while (line := self._queue.get(timeout=DEADLINE)) is not None:
            self.lines.append(line)
        return self.proc.wait(timeout=DEADLINE)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def server(command: str, listening: str, port: int) -> Iterator[Running]:
    """Run a server command until its ``listening`` line; on exit Ctrl-C it: status 0, no traceback."""
    assert port_free(port), f"port {port} is in use on this machine: the README's commands need it free"
    run = Running(command)
    try:
        run.until(listening)
        yield run
        status = run.interrupt()
    finally:
        run.kill()
    assert status == 0, run.output
    assert "Traceback" not in run.output, run.output


# ---- probes: real clients ------------------------------------------------------------------------------------------


def chat_probe(url: str) -> None:
    """The chat's wire contract, briefly, with python-socketio; and the page with its icon."""
    import socketio

    async def scenario() -> None:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, wait_timeout=DEADLINE)
        assert await client.call("join", {"room": "readme", "name": "probe"}, timeout=DEADLINE) == ["probe"]
        ack = await client.call("chat message", {"text": "hello"}, timeout=DEADLINE)
        assert set(ack) == {"id", "ts"}
        await client.disconnect()

    asyncio.run(scenario())
    for path, kind in (("/", "text/html"), ("/favicon.ico", "image/vnd.microsoft.icon")):
        with urllib.request.urlopen(url + path, timeout=DEADLINE) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith(kind)


def echo_probe(url: str) -> None:
    """examples/echo.py's handlers, with python-socketio: an ack, a refusal, a payload that does not fit."""
    import socketio

    async def scenario() -> None:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, wait_timeout=DEADLINE)
        assert await client.call("echo", "hi", timeout=DEADLINE) == "hi"
        assert await client.call("chat", {"room": "r", "text": "t"}, timeout=DEADLINE) == "delivered"
        error = await client.call("chat", {"room": 5}, timeout=DEADLINE)
        assert [e["loc"] for e in error["errors"]] == [["msg", "room"], ["msg", "text"]]
        await client.disconnect()
        refused = socketio.AsyncClient(reconnection=False)
        why: list[object] = []
        refused.on("connect_error", why.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(url, auth={"token": "wrong"}, wait_timeout=DEADLINE)
        assert why == [{"message": "login first", "data": {"hint": "send a token"}}]

    asyncio.run(scenario())


def asgi_probe(url: str) -> None:
    """examples/asgi_app.py under an ASGI server: Socket.IO (python-socketio's client) and Starlette's route."""
    import socketio

    async def scenario() -> None:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, wait_timeout=DEADLINE)
        assert await client.call("echo", "hi", timeout=DEADLINE) == "hi"
        with urllib.request.urlopen(url + "/hello", timeout=DEADLINE) as answer:
            assert json.load(answer) == {"hello": "world", "sessions": 1}
        await client.disconnect()

    asyncio.run(scenario())


# ---- what each command must do -------------------------------------------------------------------------------------

CHAT_HOST = r"\* chat server on (http://127\.0\.0\.1:\d+)/ \((\w+)\)"


def chat_host(backend: str, port: int = 5000) -> Callable[[str], None]:
    def check(command: str) -> None:
        with server(command, CHAT_HOST, port) as run:
            url, running_on = re.search(CHAT_HOST, run.output).groups()  # type: ignore[union-attr]
            assert (url, running_on) == (f"http://127.0.0.1:{port}", backend)
            # The join command the host prints runs as it is, without activation.
            hint = run.until(r"^\*\s+(\S*chat\S* join --url \S+ --name NAME)$")[1]
            assert shlex.split(hint)[0] == "scripts/chat.sh"
            chat_probe(url)

    return check


def chat_join(command: str) -> None:
    """A terminal participant, against the host (started as the README says), fed from a pipe."""
    with server("scripts/chat.sh", CHAT_HOST, 5000):
        joined = Running(command, stdin=b"/join lobby\n/who\nhello\n")
        try:
            joined.until(r"^\* connected to http://127\.0\.0\.1:5000$")
            joined.until(r"^\* members of lobby: ")
            assert joined.finish() == 0, joined.output
        finally:
            joined.kill()


def echo_server(listening: str) -> Callable[[str], None]:
    def check(command: str) -> None:
        with server(command, listening, 5000) as run:
            assert run.lines[-1].endswith("http://127.0.0.1:5000")
            echo_probe("http://127.0.0.1:5000")

    return check


def finishes(*expected: str, absent: tuple[str, ...] = ()) -> Callable[[str], None]:
    def check(command: str) -> None:
        run = Running(command)
        try:
            status = run.finish()
        finally:
            run.kill()
        assert status == 0, run.output
        for text in expected:
            assert text in run.output, run.output
        for text in absent:
            assert text not in run.output, run.output

    return check


def screenshot(command: str) -> None:
    """Runs exactly, but writes the picture to a temporary file rather than over docs/chat.png."""
    target = ROOT / ".pytest_cache" / "readme-chat.png"
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    env = {**plain_environment(), "ANYSIO_CHAT_SCREENSHOT": str(target)}
    run = Running(command.split(" ", 1)[1], env=env)
    try:
        assert run.finish() == 0, run.output
    finally:
        run.kill()
    assert target.stat().st_size > 10_000


def asgi_server(command: str) -> None:
    with server(command, r"Uvicorn running on http://127\.0\.0\.1:8000", 8000):
        asgi_probe("http://127.0.0.1:8000")


REDIS = "redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no"
MACHINE = "env REDIS_URL=redis://127.0.0.1:6379 .venv/bin/anysio run app:sio --app-dir examples/cluster --workers 2"
MACHINE_A, MACHINE_B = f"{MACHINE} --port 5001", f"{MACHINE} --port 5002"


def two_machines(command: str) -> None:
    """The worked two-machine example, its three commands together: Redis, then machine A and machine B (2
    workers each); a client of each in room "lobby" hears what the other says, and the cluster has 2 servers."""
    import socketio

    async def scenario() -> None:
        heard: dict[str, asyncio.Queue[str]] = {}
        clients: dict[str, socketio.AsyncClient] = {}
        for name, port in (("a", 5001), ("b", 5002)):
            client = clients[name] = socketio.AsyncClient(reconnection=False)
            queue_ = heard[name] = asyncio.Queue()
            client.on("said", queue_.put)
            await client.connect(f"http://127.0.0.1:{port}", auth={"room": "lobby"}, wait_timeout=DEADLINE)
        for speaker, text in (("a", "hello from A"), ("b", "hello from B")):
            assert await clients[speaker].call("say", ("lobby", text), timeout=DEADLINE) == 2
            for name in ("a", "b"):
                assert await asyncio.wait_for(heard[name].get(), DEADLINE) == text
        for client in clients.values():
            await client.disconnect()

    assert command in (REDIS, MACHINE_A, MACHINE_B)
    with (
        server(REDIS, r"Ready to accept connections", 6379),
        server(MACHINE_A, r"^anysio: 2 workers listening on http://", 5001),
        server(MACHINE_B, r"^anysio: 2 workers listening on http://", 5002),
    ):
        asyncio.run(scenario())


@dataclass(frozen=True)
class Check:
    run: Callable[[str], None] | None
    why: str = ""  # why a command is not run here


COMMANDS: dict[str, Check] = {
    "scripts/chat.sh": Check(chat_host("asyncio")),
    # The whole suite, this test included: what .ci/run runs; running it from here would recurse.
    "scripts/test.sh": Check(None, "it is .ci/run itself"),
    "scripts/test.sh --quick tests/unit": Check(
        finishes(
            "==> pytest",
            " passed",
            absent=("==> Rust", "==> Python: ruff", "==> documentation", "==> benchmark", "maturin builds"),
        )
    ),
    ".venv/bin/mkdocs build --strict": Check(finishes("Documentation built")),
    "scripts/build-wheel.sh": Check(None, "tests/e2e/test_wheel.py runs it and installs what it builds"),
    "scripts/chat.sh join --name NAME": Check(chat_join),
    "scripts/chat.sh --backend trio": Check(chat_host("trio")),
    ".venv/bin/python examples/echo.py": Check(echo_server(r"^anysio: listening on http://")),
    ".venv/bin/anysio run echo:sio --app-dir examples --workers 2": Check(
        echo_server(r"^anysio: 2 workers listening on http://")
    ),
    ".venv/bin/anysio run --help": Check(finishes("--app-dir", "(default: 5000)", "--factory", "--log-level")),
    REDIS: Check(two_machines),
    MACHINE_A: Check(None, "run with machine B by the redis-server command's check (two_machines)"),
    MACHINE_B: Check(None, "run with machine A by the redis-server command's check (two_machines)"),
    "scripts/chat.sh --port 8000 --backend trio": Check(chat_host("trio", 8000)),
    "scripts/chat.sh join --url http://127.0.0.1:5000 --name alice": Check(chat_join),
    "ANYSIO_CHAT_SCREENSHOT=docs/chat.png .venv/bin/python -m pytest tests/e2e/test_chat_browser.py -k asyncio": Check(
        screenshot
    ),
    ".venv/bin/uvicorn asgi_app:app --app-dir examples --port 8000": Check(asgi_server),
    # docs/fuzzing.md: one script, run for 15 s per target by scripts/test.sh; the others differ only in how long.
    "scripts/fuzz.sh": Check(None, "scripts/fuzz.sh 15 with 60 s per target: scripts/test.sh runs the 15 s run"),
    "scripts/fuzz.sh 15": Check(None, "scripts/test.sh runs it (the short run of .ci/run)"),
    "scripts/fuzz.sh 600 http_request": Check(None, "the long run of one target; scripts/test.sh runs the short one"),
    "FUZZ_RUNS=10000000 scripts/fuzz.sh": Check(None, "the long run (hours); scripts/test.sh runs the short one"),
    "pip install dist/anysio-*.whl": Check(
        None, "tests/e2e/test_wheel.py does it, in a fresh virtual environment with no Rust on PATH"
    ),
}


def test_every_readme_command_is_checked() -> None:
    assert readme_commands() == list(COMMANDS)


@pytest.mark.parametrize("command", [c for c, check in COMMANDS.items() if check.run is not None])
def test_readme_command(command: str) -> None:
    check = COMMANDS[command].run
    assert check is not None
    check(command)


def test_readme_shows_echo_py_whole() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{(ROOT / 'examples' / 'echo.py').read_text()}```" in readme
