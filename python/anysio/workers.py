"""N worker processes on one port, behaving as one server.

The master reserves the port, starts the workers and restarts any that dies. Every worker listens on the port
with SO_REUSEPORT, so the kernel spreads new connections over them. A session belongs to the worker that created
it (its sid starts with the worker's index): a request that reaches another worker has its connection handed to
the owner before any byte of it is read (``ipc.Bus.hand_off``), so long-polling works without a sticky load
balancer. Broadcasts, room changes and socket queries travel over the bus (``adapters.bus.BusAdapter``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

import anyio
import anyio.abc

from .adapters.base import ClusterLink, cluster_link
from .adapters.bus import HOLDER, BusAdapter, HolderLink, attach
from .engineio.runtime import BACKENDS, check_backend, run_backend, url
from .exceptions import BackendUnavailable, checked_options
from .ipc import Bus, Message
from .server.metrics import Metrics, Snapshot
from .server.namespace import Namespace
from .server.server import Server

logger = logging.getLogger("anysio")
#: A worker that dies is restarted after RESTART_DELAY, doubled for each further death in a row, up to
#: RESTART_DELAY_MAX; a worker that has served for STABLE_AFTER seconds starts the series again.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 10.0
STABLE_AFTER = 30.0
#: The master pings each worker every PING_INTERVAL seconds; one that does not answer for PING_TIMEOUT (stopped, or
#: hung in a handler) is killed and restarted.
PING_INTERVAL = 1.0
PING_TIMEOUT = 10.0


class TargetError(Exception):
    """``module:attr`` does not name a server (no such module, no such attribute, not a Server). One line."""


def load(target: str, *, factory: bool = False, app_dir: str | None = None) -> Server:
    """``module:attr`` names a Server, or a function that returns one (called when ``factory``, or when it is
    not a Server itself). ``app_dir`` goes first on the import path (as uvicorn's ``--app-dir``).

    Raises TargetError with a one-line message when the target is not found; an exception raised by the module
    itself (a bug in the application) propagates as it is."""
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise  # the application's own import failed: its traceback says why
        where = f" in {os.path.abspath(app_dir)}" if app_dir is not None else ""
        raise TargetError(f"cannot import module {module_name!r}{where} (--app-dir says where to look)") from None
    attr = attr or "sio"
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        if not callable(obj):
            raise TargetError(f"{module_name}:{attr} is not callable (--factory)")
        obj = obj()
    elif callable(obj) and not isinstance(obj, Server):
        obj = obj()
    if not isinstance(obj, Server):
        raise TargetError(f"{module_name}:{attr} is {type(obj).__name__}, not an anysio.Server")
    return obj


def ping_error(interval: float, timeout: float) -> str | None:
    """What is wrong with the master's heartbeat settings, or None."""
    if 0 < interval < timeout:
        return None
    return f"the worker ping interval ({interval:g} s) must be positive and shorter than the timeout ({timeout:g} s)"


def restart_delay(deaths: int) -> float:
    """How long the master waits before restarting a worker that died ``deaths`` times in a row (1, 2, ...)."""
    return float(min(RESTART_DELAY * 2 ** (deaths - 1), RESTART_DELAY_MAX))


def listening_socket(host: str, port: int, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        error = OSError(f"cannot listen on {host}:{port}: {os.strerror(e.errno) if e.errno else e}")
        error.errno = e.errno
        raise error from None
    if listen:
        sock.listen(1024)
    return sock


def share_metrics(metrics: Metrics, bus: Bus) -> None:
    """A scrape on any worker shows the whole machine: it asks every other worker for its snapshot over the bus
    and sums them; a worker that does not answer within a second is left out (``anysio_processes`` says so)."""

    async def answer(msg: Message) -> None:
        await bus.reply(msg, {"snapshot": metrics.snapshot()})

    async def gather() -> list[Snapshot]:
        return [r["snapshot"] for r in await bus.request({"t": "metrics"}, 1.0) if isinstance(r.get("snapshot"), dict)]

    bus.on("metrics", answer)
    metrics.gather = gather


async def _worker(
    server: Server, index: int, workers: int, bus_dir: str, host: str, port: int, ready: Callable[[], None]
) -> None:
    bus = Bus(bus_dir, index, workers)
    # A server linked to other machines (Redis): worker HOLDER holds the link for the whole machine, and the
    # others reach it over the bus, so each message crosses Redis once per machine.
    link = cluster_link(server.adapter_factory)
    holds = link if link is not None and index == HOLDER else None

    def adapter(nsp: Namespace) -> BusAdapter:
        if link is None:
            return BusAdapter(nsp, bus)
        if holds is None:
            return BusAdapter(nsp, bus, HolderLink(bus, nsp.name, rooms_wanted=link.rooms_wanted))
        machine = BusAdapter(nsp, bus)
        machine.uplink = holds.uplink(nsp, machine)
        return machine

    server.become_worker(index, adapter, bus.hand_off)
    attach(server, bus)
    if server.metrics is not None:
        share_metrics(server.metrics, bus)
    bus.on("heartbeat", partial(_answer_heartbeat, bus_dir, index))
    sock = listening_socket(host, port, listen=True)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        # Connected and subscribed before this worker serves; closed (inside the task group) when it stops.
        async with holds if holds is not None else contextlib.nullcontext():
            tg.start_soon(bus.receive_handoffs, server.runtime.core.adopt)
            await tg.start(partial(server.serve, sock=sock))
            ready()
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return


async def serve_alone(
    server: Server,
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """``server.serve`` in one process, inside its link to other machines (``RedisCluster``) if it has one."""
    link: ClusterLink | None = cluster_link(server.adapter_factory)
    async with link if link is not None else contextlib.nullcontext():
        await server.serve(host, port, task_status=task_status)


def _tell_master(bus_dir: str, message: str, flags: int = 0) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode()[:4000], flags, str(Path(bus_dir) / "master.sock"))


def _answer_heartbeat(bus_dir: str, index: int, msg: Message) -> None:
    """The master's ping, read on the bus: this worker's event loop runs. Never waits on the master: an answer
    its full queue does not take is dropped (the next ping gets one)."""
    with contextlib.suppress(OSError):
        _tell_master(bus_dir, f"pong {index}", socket.MSG_DONTWAIT)


def worker_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="anysio.workers")
    p.add_argument("target")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--bus", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend", choices=BACKENDS, default="asyncio")
    p.add_argument("--app-dir")
    p.add_argument("--factory", action="store_true")
    p.add_argument("--log-level", default="info")
    p.add_argument("--allow-eio3", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(
        level=a.log_level.upper(), format=f"%(asctime)s worker {a.index} %(levelname)s %(name)s %(message)s"
    )
    ready = False

    def say_ready() -> None:
        nonlocal ready
        ready = True
        _tell_master(a.bus, f"ready {a.index}")

    async def main() -> None:
        server = load(a.target, factory=a.factory, app_dir=a.app_dir)
        server.allow_eio3 = server.allow_eio3 or a.allow_eio3
        await _worker(server, a.index, a.workers, a.bus, a.host, a.port, say_ready)

    try:
        run_backend(main, a.backend)
    except KeyboardInterrupt:
        return
    except BaseException as e:
        if ready:
            raise  # a crash: the master restarts this worker
        # Before it was ready: the master stops with this error, in one line.
        first: BaseException = e
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]  # the task group's: the error itself
        if not isinstance(first, TargetError | BackendUnavailable | OSError):
            logger.exception("worker %d failed", a.index)
        _tell_master(a.bus, f"failed {a.index} {one_line(first)}")
        raise SystemExit(1) from None


def one_line(e: BaseException) -> str:
    """An error as one line: its message, prefixed by its type unless it is one of anysio's one-line errors."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, TargetError | BackendUnavailable | OSError) else f"{type(e).__name__}: {text}"


@checked_options()
def run(
    target: str,
    *,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 5000,
    backend: str = "asyncio",
    app_dir: str | None = None,
    factory: bool = False,
    log_level: str = "info",
    worker_ping_interval: float = PING_INTERVAL,
    worker_ping_timeout: float = PING_TIMEOUT,
    allow_eio3: bool = False,
) -> int:
    """The master: start ``workers`` processes serving ``target`` on one port; stop all on SIGTERM or SIGINT
    (status 0). Prints ``anysio: N workers listening on http://host:port`` once every worker listens.

    A worker that fails before every worker was ready stops them all: its error is printed on one line and the
    status is 1 (the same error would only recur). A worker that dies later is restarted, after a delay that
    doubles with each death in a row (``restart_delay``). The master pings each worker over its bus every
    ``worker_ping_interval`` seconds; one that does not answer for half ``worker_ping_timeout`` is reported, and
    one that does not answer for ``worker_ping_timeout`` (stopped, or hung in a handler) is killed (SIGKILL) and
    restarted. ``allow_eio3`` turns Engine.IO v3 clients on in every worker's server. Raises TargetError,
    BackendUnavailable or OSError (cannot listen) before starting any worker, and ValueError for a ping interval
    that is not positive and shorter than the timeout."""
    wrong = ping_error(worker_ping_interval, worker_ping_timeout)
    if wrong is not None:
        raise ValueError(wrong)
    check_backend(backend)
    load(target, factory=factory, app_dir=app_dir)  # fail here, not in N workers, when the target is wrong
    bus_dir = tempfile.mkdtemp(prefix="anysio-")
    try:
        reserve = listening_socket(host, port, listen=False)
    except OSError:
        shutil.rmtree(bus_dir, ignore_errors=True)
        raise
    args = [target, f"--workers={workers}", f"--bus={bus_dir}", f"--host={host}"]
    args += [f"--port={reserve.getsockname()[1]}", f"--backend={backend}", f"--log-level={log_level}"]
    args += ["--factory"] if factory else []
    args += ["--allow-eio3"] if allow_eio3 else []
    args += [f"--app-dir={os.path.abspath(app_dir)}"] if app_dir is not None else []
    try:
        master = _Master(workers, bus_dir, args, url((host, reserve.getsockname()[1])))
        master.ping_every(worker_ping_interval, worker_ping_timeout)
        try:
            failure = master.run()
        finally:
            master.close()
    finally:
        reserve.close()
        shutil.rmtree(bus_dir, ignore_errors=True)
    if failure is not None:
        print(f"anysio: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


class _Master:
    """The master's state: the worker processes, their deaths in a row and restarts, and their heartbeats.
    Workers speak to it in datagrams on ``master.sock`` (``ready i``, ``failed i why``, ``pong i``); it pings
    each ready worker over the worker's own bus socket, so an answer shows that the worker's event loop runs."""

    def __init__(self, workers: int, bus_dir: str, args: list[str], address: str) -> None:
        self.workers = workers
        self.bus_dir = Path(bus_dir)
        self.args = args
        self.address = address
        self.ping_interval = PING_INTERVAL
        self.ping_timeout = PING_TIMEOUT
        self.inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.inbox.bind(str(self.bus_dir / "master.sock"))
        self.inbox.settimeout(0.05)
        self.stopping = False
        self.procs: dict[int, subprocess.Popen[bytes] | None] = {}
        self.waiting = set(range(workers))  # not ready yet, the first time
        self.announced = False
        self.deaths = dict.fromkeys(range(workers), 0)  # deaths in a row, per worker
        self.since: dict[int, float] = {}  # when each worker last said it was ready
        self.restart_at: dict[int, float] = {}
        self.answered: dict[int, float] = {}  # when each ready worker last answered a ping
        self.late: set[int] = set()  # reported as not answering
        self.pingers: dict[int, socket.socket] = {}
        self.next_ping = 0.0

    def ping_every(self, interval: float, timeout: float) -> None:
        self.ping_interval, self.ping_timeout = interval, timeout

    def spawn(self, i: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "anysio.workers", f"--index={i}", *self.args])
        logger.debug("worker %d started (pid %d)", i, proc.pid)
        return proc

    def run(self) -> str | None:
        """Until SIGTERM or SIGINT; the failure that stops the master before every worker was ready, or None."""

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.procs = {i: self.spawn(i) for i in range(self.workers)}
        while not self.stopping:
            failure = self.receive()
            now = time.monotonic()
            failure = failure or self.reap(now)
            if failure is not None:
                return failure
            if now >= self.next_ping:
                self.next_ping = now + self.ping_interval
                self.heartbeat(now)
        return None

    def receive(self) -> str | None:
        try:
            kind, index_text, *rest = self.inbox.recv(4096).decode().split(" ", 2)
        except TimeoutError:
            return None
        index = int(index_text)
        if kind == "pong":
            self.answered[index] = time.monotonic()
            if index in self.late:
                self.late.discard(index)
                print(f"anysio: worker {index} answers again", flush=True)
        elif kind == "failed":
            if not self.announced:
                return f"worker {index} failed before it was ready: {rest[0] if rest else '?'}"
            print(f"anysio: worker {index} failed to start again: {rest[0] if rest else '?'}", flush=True)
        else:
            self.waiting.discard(index)
            self.since[index] = self.answered[index] = time.monotonic()
            self.late.discard(index)
            old = self.pingers.pop(index, None)  # a stream to the worker this one replaces
            if old is not None:
                old.close()
            if self.announced:
                print(f"anysio: worker {index} listening again", flush=True)
            elif not self.waiting:
                print(f"anysio: {self.workers} workers listening on {self.address}", flush=True)
                self.announced = True
        return None

    def reap(self, now: float) -> str | None:
        """Restart the workers that died, after their delay; the failure when one died before all were ready."""
        for i, proc in list(self.procs.items()):
            if proc is None:
                if now >= self.restart_at[i]:
                    del self.restart_at[i]
                    self.procs[i] = self.spawn(i)
                continue
            if proc.poll() is None or self.stopping:
                continue
            if not self.announced:
                return f"worker {i} exited with status {proc.returncode} before it was ready"
            if now - self.since.get(i, now) >= STABLE_AFTER:
                self.deaths[i] = 0
            self.deaths[i] += 1
            delay = restart_delay(self.deaths[i])
            logger.warning("worker %d exited with %s; restarting it in %.1f s", i, proc.returncode, delay)
            print(f"anysio: worker {i} exited ({proc.returncode}); restarting in {delay:g} s", flush=True)
            self.procs[i] = None
            self.since.pop(i, None)
            self.answered.pop(i, None)
            self.restart_at[i] = now + delay
        return None

    def heartbeat(self, now: float) -> None:
        """Ping every ready worker; report one that has not answered for half the timeout, kill one that has not
        answered for the whole timeout (the restart follows in ``reap``)."""
        for i, answered in list(self.answered.items()):
            proc = self.procs.get(i)
            if proc is None or proc.poll() is not None:
                continue
            silent = now - answered
            if silent >= self.ping_timeout:
                print(f"anysio: worker {i} did not answer for {silent:.1f} s: killed", flush=True)
                proc.kill()
                del self.answered[i]
                self.late.discard(i)
                continue
            if silent >= self.ping_timeout / 2 and i not in self.late:
                self.late.add(i)
                print(f"anysio: worker {i} has not answered for {silent:.1f} s", flush=True)
            self.ping(i)

    def ping(self, i: int) -> None:
        """A heartbeat message on worker ``i``'s bus socket, never waiting: a worker that reads nothing has its
        socket fill up, and the ping is simply not sent."""
        body = json.dumps({"t": "heartbeat"}).encode()
        frame = struct.pack(">I", len(body)) + body
        sock = self.pingers.pop(i, None)
        try:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect(str(self.bus_dir / f"b{i}.sock"))
            if sock.send(frame, socket.MSG_NOSIGNAL) == len(frame):
                self.pingers[i] = sock
                return
        except OSError:  # a full socket or backlog, or a worker that died: a new stream next time
            pass
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 10 s), and close the master's sockets."""
        live = [proc for proc in self.procs.values() if proc is not None]
        for proc in live:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a stopped worker would not act on SIGTERM
        deadline = time.monotonic() + 10
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self.pingers.values():
            sock.close()
        self.inbox.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    worker_main()
