"""``anysio run`` and ``Server.run`` as a user meets them, in real processes probed by the official client: the
current folder on the import path (``--app-dir`` to change it), ``--factory``, ``python -m anysio``, defaults in
``--help``; the errors a user can fix as one line and status 1 (with and without workers); a worker that cannot
start stops the master; a worker that crashes later comes back after a delay that doubles."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from anysio.workers import RESTART_DELAY, RESTART_DELAY_MAX, restart_delay
from anysio.workers import run as run_workers

from .sio_helpers import node_sio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PY = sys.executable
ANYSIO = Path(sys.executable).parent / "anysio"  # the console script pip installed beside the interpreter
DEADLINE = 30
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
pytestmark = pytest.mark.anyio


class Output:
    """A child's stdout, line by line, on demand."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        assert proc.stdout is not None
        self.stream = proc.stdout
        self.buf = b""
        self.lines: list[str] = []

    async def line(self) -> str:
        while b"\n" not in self.buf:
            self.buf += await self.stream.receive()
        line, _, self.buf = self.buf.partition(b"\n")
        self.lines.append(line.decode())
        return self.lines[-1]

    async def until(self, text: str) -> str:
        with anyio.fail_after(DEADLINE):
            while text not in (line := await self.line()):
                pass
        return line


@asynccontextmanager
async def serving(
    cmd: list[str], cwd: Path = ROOT, env: dict[str, str] = ENV
) -> AsyncIterator[tuple[tuple[str, int], Output]]:
    """Start a server command; yield its address (from ``... listening on http://host:port``) once it listens.
    On exit: SIGINT (Ctrl-C), then it must end with status 0 and no traceback."""
    async with await anyio.open_process(cmd, cwd=cwd, env=env) as proc:
        out = Output(proc)
        try:
            url = (await out.until("listening on http://")).rsplit(" ", 1)[1]
            host, _, port = url.removeprefix("http://").rpartition(":")
            yield (host, int(port)), out
        finally:
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(DEADLINE):
                await proc.wait()
        stderr = await read_all(proc.stderr)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


async def read_all(stream: anyio.abc.ByteReceiveStream | None) -> str:
    assert stream is not None
    data = b""
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                data += await stream.receive()
        except anyio.EndOfStream:
            return data.decode()


async def probe(address: tuple[str, int]) -> None:
    async with node_sio(address) as client:
        assert await client.call("echo", "hi") == ["hi"]


def fails(args: list[str], cwd: Path = ROOT, pre: str = "pass") -> str:
    """Run ``anysio`` expecting status 1 and exactly one line on stderr: that line."""
    code = f"import sys; {pre}; from anysio.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([PY, "-c", code, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# ---- serving -----------------------------------------------------------------------------------------------------


async def test_server_run_prints_where_it_listens_and_ends_on_ctrl_c(anyio_backend: str) -> None:
    cmd = [PY, str(ROOT / "tests/e2e/apps/cli_apps.py"), anyio_backend]
    async with serving(cmd) as (address, _):
        await probe(address)


async def test_the_current_folder_is_on_the_import_path(anyio_backend: str) -> None:
    # The console script, which (unlike python -m) does not put the current folder on the path by itself.
    cmd = [str(ANYSIO), "run", "echo:sio", "--port=0", f"--backend={anyio_backend}"]
    async with serving(cmd, EXAMPLES) as (address, _):
        await probe(address)
    async with serving([*cmd, "--workers=2"], EXAMPLES) as (address, _):
        await probe(address)


async def test_app_dir_and_workers(anyio_backend: str) -> None:
    cmd = [PY, "-m", "anysio", "run", "echo:sio", "--app-dir=examples", "--workers=2", "--port=0"]
    async with serving([*cmd, f"--backend={anyio_backend}"]) as (address, out):
        assert out.lines[-1].startswith("anysio: 2 workers listening on http://")
        await probe(address)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_allow_eio3_lets_socket_io_client_2_in(anyio_backend: str, workers: str) -> None:
    cmd = [PY, "-m", "anysio", "run", "echo:sio", "--app-dir=examples", "--port=0", f"--workers={workers}"]
    async with serving([*cmd, f"--backend={anyio_backend}", "--allow-eio3"]) as (address, _):
        async with node_sio(address, v2=True) as client:
            assert await client.call("echo", "hi", b"\x01") == ["hi", b"\x01"]
        await probe(address)
    # Without the flag, refused as Node refuses it.
    async with (
        serving([*cmd, f"--backend={anyio_backend}"]) as (address, _),
        node_sio(address, v2=True, reconnection=False, connected=False) as client,
    ):
        await client.expect("connect_error")


async def test_factory(anyio_backend: str) -> None:
    cmd = [PY, "-m", "anysio", "run", "tests.e2e.apps.cli_apps:create", "--factory", "--port=0"]
    async with serving([*cmd, f"--backend={anyio_backend}", "--log-level=warning"]) as (address, _):
        await probe(address)


def test_help_shows_the_defaults() -> None:
    done = subprocess.run([PY, "-m", "anysio", "run", "--help"], env=ENV, capture_output=True, text=True, check=True)
    text = " ".join(done.stdout.split())  # as argparse wraps it or not
    for default in ("127.0.0.1", "5000", "asyncio", "info", "1.0", "10.0"):
        assert f"(default: {default})" in text
    assert "--app-dir" in done.stdout and "--factory" in done.stdout
    assert "--worker-ping-interval" in done.stdout and "--worker-ping-timeout" in done.stdout
    assert "--allow-eio3" in done.stdout


# ---- errors a user can fix: one line, status 1 -------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_errors_are_one_line(workers: str) -> None:
    run = ["run", f"--workers={workers}", "--port=0"]
    assert fails([*run, "nowhere:sio"]) == (
        "anysio: cannot import module 'nowhere' in " + str(ROOT) + " (--app-dir says where to look)"
    )
    assert fails([*run, "echo:sio"], cwd=ROOT / "tests") == (
        f"anysio: cannot import module 'echo' in {ROOT / 'tests'} (--app-dir says where to look)"
    )
    assert fails([*run, "echo:nope", "--app-dir=examples"]) == "anysio: module 'echo' has no attribute 'nope'"
    assert fails([*run, "tests.e2e.apps.cli_apps:not_a_server"]) == (
        "anysio: tests.e2e.apps.cli_apps:not_a_server is int, not an anysio.Server"
    )
    assert fails([*run, "tests.e2e.apps.cli_apps:not_a_server", "--factory"]) == (
        "anysio: tests.e2e.apps.cli_apps:not_a_server is not callable (--factory)"
    )
    for backend, requirement in (("trio", "trio>=0.25"), ("uvloop", "uvloop>=0.19")):
        hidden = f"sys.modules[{backend!r}] = None"  # as if it were not installed
        assert fails([*run, "echo:sio", "--app-dir=examples", f"--backend={backend}"], pre=hidden) == (
            f"anysio: the {backend} backend needs {backend}, which is not installed: pip install '{requirement}'"
            f" (the extra anysio[{backend}])"
        )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line(workers: str) -> None:
    with socket_in_use() as port:
        assert fails(["run", "echo:sio", "--app-dir=examples", f"--port={port}", f"--workers={workers}"]) == (
            f"anysio: cannot listen on 127.0.0.1:{port}: Address already in use"
        )


@pytest.mark.parametrize(("interval", "timeout"), [("5", "2"), ("0", "10"), ("1", "1")])
def test_a_heartbeat_that_cannot_work_is_one_line(interval: str, timeout: str) -> None:
    heartbeat = [f"--worker-ping-interval={interval}", f"--worker-ping-timeout={timeout}"]
    assert fails(["run", "echo:sio", "--app-dir=examples", "--workers=2", "--port=0", *heartbeat]) == (
        f"anysio: the worker ping interval ({float(interval):g} s) must be positive and shorter than the timeout "
        f"({float(timeout):g} s)"
    )


def test_workers_run_refuses_a_heartbeat_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="must be positive and shorter than the timeout"):
        run_workers("echo:sio", app_dir="examples", worker_ping_interval=5.0, worker_ping_timeout=1.0)


@contextmanager
def socket_in_use() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ---- workers -------------------------------------------------------------------------------------------------------


def test_a_worker_that_cannot_start_stops_the_master() -> None:
    cmd = [PY, "-m", "anysio", "run", "tests.e2e.apps.cli_apps:fails_in_workers", "--workers=2", "--port=0"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 1
    assert "restarting" not in done.stdout
    last = done.stderr.splitlines()[-1]
    assert last.startswith("anysio: worker ") and last.endswith(
        " failed before it was ready: RuntimeError: no database in this worker"
    ), done.stderr


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def test_a_worker_that_crashes_comes_back_after_a_growing_delay(anyio_backend: str) -> None:
    cmd = [PY, "-m", "anysio", "run", "echo:sio", "--app-dir=examples", "--workers=2", "--port=0"]
    async with await anyio.open_process([*cmd, f"--backend={anyio_backend}"], env=ENV, stderr=None) as proc:
        out = Output(proc)
        try:
            url = (await out.until("workers listening on")).rsplit(" ", 1)[1]
            victim = children(proc.pid)[0]
            for delay in (RESTART_DELAY, 2 * RESTART_DELAY):  # the same worker twice: deaths in a row
                before = set(children(proc.pid))
                os.kill(victim, signal.SIGKILL)
                line = await out.until("exited")
                assert line.endswith(f"exited (-9); restarting in {delay:g} s"), line
                index = line.split()[2]
                await out.until(f"worker {index} listening again")
                (victim,) = set(children(proc.pid)) - before
            host, _, port = url.removeprefix("http://").rpartition(":")
            await probe((host, int(port)))
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(DEADLINE):
                await proc.wait()
    assert proc.returncode == 0


def test_restart_delays_double_up_to_a_limit() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [RESTART_DELAY * f for f in (1, 2, 4, 8)]
    assert restart_delay(100) == RESTART_DELAY_MAX
