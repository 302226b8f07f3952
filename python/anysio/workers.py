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
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import FrameType

import anyio

from .adapters.bus import BusAdapter, attach
from .exceptions import checked_options
from .ipc import Bus
from .server.server import Namespace, Server

logger = logging.getLogger("anysio")
BACKENDS = ("asyncio", "uvloop", "trio")


def load(target: str) -> Server:
    """``module:attr`` names a Server, or a function that returns one."""
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr or "sio")
    server = obj() if callable(obj) and not isinstance(obj, Server) else obj
    if not isinstance(server, Server):
        raise TypeError(f"{target} is not an anysio.Server")
    return server


def listening_socket(host: str, port: int, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(1024)
    return sock


def run_backend(main: Callable[[], Awaitable[None]], backend: str) -> None:
    name, options = ("asyncio", {"use_uvloop": True}) if backend == "uvloop" else (backend, {})
    anyio.run(main, backend=name, backend_options=options)


async def _worker(server: Server, index: int, workers: int, bus_dir: str, host: str, port: int) -> None:
    bus = Bus(bus_dir, index, workers)

    def adapter(nsp: Namespace) -> BusAdapter:
        return BusAdapter(nsp, bus)

    server.become_worker(index, adapter, bus.hand_off)
    attach(server, bus)
    sock = listening_socket(host, port, listen=True)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        tg.start_soon(bus.receive_handoffs, server.runtime.core.adopt)
        await tg.start(partial(server.serve, sock=sock))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ready:
            ready.sendto(f"ready {index}".encode(), str(Path(bus_dir) / "master.sock"))
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                return


def worker_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="anysio.workers")
    p.add_argument("target")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--bus", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend", choices=BACKENDS, default="asyncio")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {a.index} %(name)s %(message)s")
    server = load(a.target)
    run_backend(partial(_worker, server, a.index, a.workers, a.bus, a.host, a.port), a.backend)


@checked_options()
def run(target: str, *, workers: int = 2, host: str = "127.0.0.1", port: int = 5000, backend: str = "asyncio") -> int:
    """The master: start ``workers`` processes serving ``target`` on one port; restart any that dies; stop all
    on SIGTERM or SIGINT. Prints ``listening on http://host:port`` once every worker listens."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    load(target)  # fail here, not in N workers, when the target is wrong
    bus_dir = tempfile.mkdtemp(prefix="anysio-")
    reserve = listening_socket(host, port, listen=False)
    port = reserve.getsockname()[1]
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready.bind(str(Path(bus_dir) / "master.sock"))
    ready.settimeout(0.2)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(i: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "anysio.workers", target, f"--index={i}", f"--workers={workers}"]
        args += [f"--bus={bus_dir}", f"--host={host}", f"--port={port}", f"--backend={backend}"]
        return subprocess.Popen(args)

    procs = {i: spawn(i) for i in range(workers)}
    waiting = set(procs)
    announced = False
    try:
        while not stopping:
            with contextlib.suppress(TimeoutError):
                index = int(ready.recv(64).decode().split()[1])
                waiting.discard(index)
                if announced:
                    print(f"anysio: worker {index} listening again", flush=True)
                elif not waiting:
                    print(f"anysio: {workers} workers listening on http://{host}:{port}", flush=True)
                    announced = True
            for i, proc in list(procs.items()):
                if proc.poll() is not None and not stopping:
                    logger.warning("worker %d exited with %s; restarting it", i, proc.returncode)
                    print(f"anysio: worker {i} exited ({proc.returncode}); restarting", flush=True)
                    procs[i] = spawn(i)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        ready.close()
        reserve.close()
        shutil.rmtree(bus_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    worker_main()
