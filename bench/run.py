"""anysio's benchmarks: start each server, drive it with the native load generator, compare in one table.

    .venv/bin/python bench/run.py            # the full run (about 20 minutes on 2 cores)
    .venv/bin/python bench/run.py --smoke    # a quick check that the harness and every server work (< 2 min)

Each server implements one contract (bench/servers/): PORT from the environment; "echo" is acknowledged with its
argument, an object {"id", "text", "ts"} of about 100 bytes; every socket joins room "bench" on connect; "bcast"
is broadcast to the room, sender included. anysio answers with the handlers users write: a typed `async def`
taking and returning a dataclass (the default rows), a pydantic model, or the untyped `def` fast path. The
server runs pinned to one core (taskset), the load generator (bench/loadgen, Rust, one thread) to the other.
Repetitions interleave the servers; the tables show medians, and each server's ratio to each peer measured in the
same run. Raw results go to bench/results/<time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
RESULTS = BENCH / "results"
PY = sys.executable
NOT_AVAILABLE = 3  # exit status of a server that cannot run in this build (bench/servers/anysio_asgi_server.py)
SERVER_CPU, LOADGEN_CPU = "0", "1"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: list[str]  # "{loadgen}" stands for the load generator's path
    cwd: Path = ROOT
    anysio: bool = False
    #: The reflector calibrates the load generator; it is no peer and appears in no comparison.
    calibration: bool = False
    only: frozenset[str] | None = None  # the scenarios it can serve, when not all


#: The scenarios whose figures depend on the event handlers (the others only connect).
EVENTS = frozenset({"echo", "bcast", "poll"})


def _anysio(name: str, backend: str, handler: str, only: frozenset[str] | None = None) -> ServerSpec:
    argv = [PY, str(SERVERS_DIR / "anysio_server.py"), "--backend", backend, "--handler", handler]
    return ServerSpec(name, argv, anysio=True, only=only)


# In table order: anysio with the typed handler users write first, then its other handler forms, then the peers.
SERVERS = [
    _anysio("anysio-asyncio", "asyncio", "typed"),
    _anysio("anysio-uvloop", "uvloop", "typed"),
    _anysio("anysio-trio", "trio", "typed"),
    ServerSpec("anysio-asgi", [PY, str(SERVERS_DIR / "anysio_asgi_server.py"), "--handler", "typed"], anysio=True),
    _anysio("anysio-asyncio-model", "asyncio", "model", only=EVENTS),
    _anysio("anysio-asyncio-untyped", "asyncio", "untyped", only=EVENTS),
    ServerSpec("node", ["node", str(SERVERS_DIR / "node_server.mjs")], cwd=BENCH),
    ServerSpec("python-socketio", [PY, str(SERVERS_DIR / "python_socketio_server.py")]),
    # What uvicorn itself carries (no Socket.IO): the limit of anysio-asgi's path, echo only.
    ServerSpec("uvicorn-bare", [PY, str(SERVERS_DIR / "uvicorn_bare_server.py")], only=frozenset({"echo"})),
    ServerSpec(
        "reflector",
        ["{loadgen}", "reflect", "--timeout", "3600"],
        calibration=True,
        only=frozenset({"connect_10k", "echo", "bcast"}),
    ),
]
PEERS = ["node", "python-socketio"]
PRIMARY = "anysio-asyncio"  # the typed async handler (a dataclass) on asyncio: what the targets judge first
MODEL, UNTYPED, TRIO, ASGI, BARE = (
    "anysio-asyncio-model",
    "anysio-asyncio-untyped",
    "anysio-trio",
    "anysio-asgi",
    "uvicorn-bare",
)


@dataclass(frozen=True)
class Metric:
    key: str  # name in the summary
    label: str
    path: tuple[str, ...]  # where it is in the load generator's JSON
    higher_is_better: bool = True
    fmt: str = "{:,.0f}"
    compared: bool = True  # shown as a ratio to each peer
    short: str = ""  # its name in the ratio columns' headers (default: the label)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    argv: list[str]
    metrics: list[Metric]
    rate: tuple[str, ...] | None = None  # the throughput that the load generator's capacity is judged by
    #: (target, checkpoint): held by two load generator processes, since one may not hold more sockets than the
    #: server it measures (raising its own fd limit needs CAP_SYS_RESOURCE, which this sandbox lacks).
    split: tuple[int, int] | None = None


def scenarios(smoke: bool, fd_limit: int, hold: float) -> list[Scenario]:
    timing = ["--duration", "0.5", "--warmup", "0.2"] if smoke else ["--duration", "5", "--warmup", "1"]
    per_conn = Metric("kib_per_conn", "KiB / connection (RSS)", ("kib_per_conn",), False, "{:,.1f}", short="KiB/conn")
    idle_target = 300 if smoke else fd_limit
    idle_checkpoint = 100 if smoke else 10_000
    return [
        Scenario(
            "connect_1k",
            "connect 1k",
            ["connect", "--clients", "50" if smoke else "1000", "--settle", "0.2" if smoke else "1"],
            [Metric("connects_per_s", "connections / s", ("connects_per_s",), short="conn/s"), per_conn],
            rate=("connects_per_s",),
        ),
        Scenario(
            "connect_10k",
            "connect 10k",
            [
                "connect",
                "--clients",
                "100" if smoke else "10000",
                "--sources",
                "2",
                "--settle",
                "0.2" if smoke else "1",
            ],
            [Metric("connects_per_s", "connections / s", ("connects_per_s",), short="conn/s"), per_conn],
            rate=("connects_per_s",),
        ),
        Scenario(
            "echo",
            "echo + ack (100 clients x 8)",
            ["echo", "--clients", "10" if smoke else "100", "--depth", "2" if smoke else "8", *timing],
            [
                Metric("echo_per_s", "acks / s", ("echo_per_s",), short="acks/s"),
                Metric("p50_ms", "p50 ms", ("latency", "p50_ms"), False, "{:,.2f}", short="p50"),
                Metric("p99_ms", "p99 ms", ("latency", "p99_ms"), False, "{:,.2f}", short="p99"),
            ],
            rate=("echo_per_s",),
        ),
        Scenario(
            "bcast",
            "broadcast to 1000",
            ["bcast", "--clients", "20" if smoke else "1000", "--window", "16", *timing],
            [
                Metric("deliveries_per_s", "deliveries / s", ("deliveries_per_s",), short="deliv/s"),
                Metric("fanout_p99_ms", "p99 ms to all", ("fanout_latency", "p99_ms"), False, "{:,.2f}", short="p99"),
                Metric("lost", "lost/reordered/dup", ("lost",), False, compared=False),
            ],
            rate=("deliveries_per_s",),
        ),
        Scenario(
            "poll",
            "polling echo (50 clients)",
            ["poll", "--clients", "4" if smoke else "50", *timing],
            [
                Metric("requests_per_s", "HTTP requests / s", ("requests_per_s",), short="req/s"),
                Metric("echo_per_s", "acks / s", ("echo_per_s",), short="acks/s"),
            ],
            rate=("requests_per_s",),
        ),
        Scenario(
            "idle",
            f"idle up to the fd limit ({fd_limit})",
            [
                "--settle",
                "0.3" if smoke else "1",
                "--handshake-timeout",
                "5",
                "--max-failures",
                "200",
                "--hold",
                str(hold),
            ],
            [
                Metric("held", "held", ("held",), compared=False),
                Metric("held_share", "held / possible", ("held_share",), True, "{:.1%}", short="held"),
                Metric(
                    "kib_at_10k",
                    f"KiB / conn at {idle_checkpoint:,}",
                    ("kib_at_checkpoint",),
                    False,
                    "{:,.1f}",
                    short=f"KiB@{idle_checkpoint // 1000 or idle_checkpoint}{'k' if idle_checkpoint >= 1000 else ''}",
                ),
                Metric("kib_at_max", "KiB / conn at max", ("kib_per_conn",), False, "{:,.1f}", short="KiB@max"),
            ],
            split=(idle_target, idle_checkpoint),
        ),
    ]


# ---- small helpers ------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dig(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def load_average() -> float:
    return os.getloadavg()[0]


def run_quiet(argv: list[str], cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def version_of(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = run_quiet(argv, timeout=30)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


# ---- setup --------------------------------------------------------------------------------------------------


def setup(profile: str) -> Path:
    """Install what the peers need and build the load generator; returns its path."""
    lock, marker = BENCH / "package-lock.json", BENCH / "node_modules" / ".package-lock.json"
    if not marker.exists() or lock.stat().st_mtime > marker.stat().st_mtime:
        log("==> npm ci (bench/)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)
    modules = ("socketio", "uvicorn", "uvloop", "trio", "websockets", "httptools", "pydantic")
    missing = [m for m in modules if not _importable(m)]
    if missing:
        log(f"==> pip install -r bench/requirements.txt (missing: {', '.join(missing)})")
        subprocess.run([PY, "-m", "pip", "install", "-q", "-r", str(BENCH / "requirements.txt")], check=True)
    if not _importable("anysio"):
        sys.exit("anysio is not importable: build it first (`maturin develop --release` in the .venv)")
    log(f"==> cargo build --profile {profile} -p anysio-loadgen")
    subprocess.run(["cargo", "build", "--quiet", "--profile", profile, "-p", "anysio-loadgen"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / ("debug" if profile == "dev" else profile) / "loadgen"


def _importable(module: str) -> bool:
    return run_quiet([PY, "-c", f"import {module}"], timeout=60).returncode == 0


def anysio_has_asgi() -> bool:
    return run_quiet([PY, "-c", "import anysio; anysio.ASGIApp"], timeout=60).returncode == 0


# ---- servers ------------------------------------------------------------------------------------------------


class ServerProcess:
    def __init__(
        self, spec: ServerSpec, pin: bool, log_path: Path, loadgen: Path, env: dict[str, str] | None = None
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_path
        prefix = ["taskset", "-c", SERVER_CPU] if pin else []
        env = {**os.environ, **(env or {}), "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.log_file = log_path.open("ab")
        self.proc = subprocess.Popen(
            prefix + [str(loadgen) if a == "{loadgen}" else a for a in spec.argv],
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_soft_limit_to_hard,
        )
        self.pid = self.proc.pid  # taskset execs the server: same process
        self.base_fds = 0

    def wait_ready(self, timeout: float = 30.0) -> str | None:
        """None when the server accepts connections; otherwise why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return "not available" if code == NOT_AVAILABLE else f"exited with status {code}"
            if port_open(self.port):
                time.sleep(0.2)  # let the accepted probe connection be cleaned up
                with contextlib.suppress(OSError):
                    self.base_fds = len(os.listdir(f"/proc/{self.pid}/fd"))
                return None
            time.sleep(0.05)
        return f"did not listen within {timeout:.0f} s"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_file.close()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _soft_limit_to_hard() -> None:
    """Every server gets the per-process fd limit (`ulimit -Hn`) as its working limit, as Node sets for itself."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- one measurement ----------------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    scenario: str
    rep: int
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    argv: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_before: float = 0.0
    #: "harness" when nothing could be measured (a server did not start or died, the load generator failed);
    #: "check" when the figures came but a correctness check failed (loss, reordering, bad acks, refusals).
    failure: str | None = None


def drive(loadgen: Path, sc: Scenario, server: ServerProcess, pin: bool, rep: int, timeout: float) -> Run:
    argv = [str(loadgen), *sc.argv, "--port", str(server.port), "--server-pid", str(server.pid)]
    prefix = ["taskset", "-c", LOADGEN_CPU] if pin else []
    run = Run(server.spec.name, sc.name, rep, False, argv=argv, load_before=load_average())
    t = time.monotonic()
    if sc.split is not None:
        _drive_split(run, sc, server, [*prefix, str(loadgen)], timeout)
        run.seconds = time.monotonic() - t
        return _judge(run, sc, server)
    try:
        out = subprocess.run(
            prefix + argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        run.error = f"load generator did not finish in {timeout:.0f} s"
        run.failure = "harness"
        return run
    run.seconds = time.monotonic() - t
    lines = out.stdout.strip().splitlines()
    try:
        run.result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        run.result = {}
    if not run.result:
        run.error = f"load generator printed no result (status {out.returncode}): {out.stderr.strip()[-500:]}"
        run.failure = "harness"
        return run
    return _judge(run, sc, server)


def _judge(run: Run, sc: Scenario, server: ServerProcess) -> Run:
    if run.failure is not None:
        return run
    run.ok = bool(run.result.get("ok")) and server.alive()
    measured = dig(run.result, sc.rate) if sc.rate else run.result.get("held")
    if not server.alive():
        run.error = "the server died: " + server.log_tail(5)
        run.failure = "harness"
    elif not run.ok:
        run.error = run.result.get("error") or _check_failures(run.result)
        run.failure = "check" if isinstance(measured, (int, float)) and measured > 0 else "harness"
    return run


def _drive_split(run: Run, sc: Scenario, server: ServerProcess, cmd: list[str], timeout: float) -> None:
    """The idle scenario: process A connects the checkpoint's count and holds them (RSS per connection there);
    process B connects the rest up to the fd limit from other source addresses, holds everything `--hold`
    seconds, and samples RSS at the maximum; then A reports what it still holds."""
    assert sc.split is not None
    target, checkpoint = sc.split
    tail = [*sc.argv, "--port", str(server.port), "--server-pid", str(server.pid)]
    hold = tail.index("--hold")
    # A holds until told (within twice the bound of B's run), not for --hold.
    a_tail = [*tail[:hold], *tail[hold + 2 :], "--timeout", str(2 * timeout)]
    tail.extend(["--timeout", str(timeout)])
    a_argv = [*cmd, "connect", "--clients", str(checkpoint), "--sources", "2", "--wait-stdin", *a_tail]
    b_argv = [*cmd, "connect", "--clients", str(target - checkpoint), "--sources", "2", "--source-offset", "2", *tail]
    run.argv = [*a_argv, "&&", *b_argv]
    lines: queue.Queue[str] = queue.Queue()
    first = subprocess.Popen(
        a_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert first.stdout is not None and first.stdin is not None
    out_a = first.stdout

    def read_a() -> None:
        for ln in out_a:
            lines.put(ln)

    reader = threading.Thread(target=read_a, daemon=True)
    reader.start()
    try:
        a1 = json.loads(lines.get(timeout=timeout))
        second = subprocess.run(b_argv, capture_output=True, text=True, timeout=timeout, check=False)
        out = second.stdout.strip().splitlines()
        b = json.loads(out[-1]) if out else {}
        first.stdin.write("done\n")
        first.stdin.close()
        first.wait(timeout=60)
        reader.join(timeout=5)
        a2 = json.loads(lines.get(timeout=5))
    except (queue.Empty, subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as e:
        first.kill()
        run.error = f"the idle run's load generators failed: {type(e).__name__} {e}"
        run.failure = "harness"
        return
    finally:
        if first.poll() is None:
            first.kill()
    if not b:
        run.error = f"load generator B printed no result: {second.stderr.strip()[-500:]}"
        run.failure = "harness"
        return
    possible = min(_fd_limit() - server.base_fds, target)
    held = int(a2.get("held", 0)) + int(b.get("held", 0))
    base_rss, max_rss = a1.get("rss_base_kib"), b.get("rss_kib")
    at_max = int(a2.get("held", 0)) + int(b.get("connected", 0))
    failures: dict[str, int] = {}
    for part in (a2, b):
        for why, n in (part.get("failures") or {}).items():
            failures[why] = failures.get(why, 0) + n
    run.result = {
        "ok": bool(a2.get("ok")) and bool(b.get("ok")),
        "attempted": int(a1.get("attempted", 0)) + int(b.get("attempted", 0)),
        "connected": int(a1.get("connected", 0)) + int(b.get("connected", 0)),
        "held": held,
        "possible": possible,
        "server_base_fds": server.base_fds,
        "held_share": held / possible if possible > 0 else None,
        "lost_while_holding": int(a1.get("held", 0)) - int(a2.get("held", 0)) + int(b.get("lost_while_holding", 0)),
        "rss_base_kib": base_rss,
        "rss_kib_at_checkpoint": a1.get("rss_kib"),
        "kib_at_checkpoint": a1.get("kib_per_conn"),
        "rss_kib": max_rss,
        "kib_per_conn": (max_rss - base_rss) / at_max if base_rss and max_rss and at_max else None,
        "loadgen_cpu": b.get("loadgen_cpu"),
        "server_cpu": b.get("server_cpu"),
        "failures": failures,
        "parts": {"a_connected": a1, "a_final": a2, "b": b},
    }


def _check_failures(result: dict[str, Any]) -> str:
    keys = ("lost", "out_of_order", "duplicates", "unexpected", "unanswered", "bad_acks", "lost_while_holding")
    found = [f"{k} {result[k]}" for k in keys if result.get(k)]
    if result.get("failures"):
        found.append(f"client failures {result['failures']}")
    return "checks failed: " + (", ".join(found) or "see the result")


def _fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ---- the run ------------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, loadgen: Path, out_dir: Path) -> dict[str, Any]:
    fd_limit = _fd_limit()
    scs = [s for s in scenarios(args.smoke, fd_limit, args.hold) if s.name in args.scenarios]
    specs = [s for s in SERVERS if s.name in args.servers]
    unavailable: dict[str, str] = {}
    if "anysio-asgi" in args.servers and not anysio_has_asgi():
        unavailable["anysio-asgi"] = "not available (this anysio has no ASGIApp)"
    specs = [s for s in specs if s.name not in unavailable]
    runs: list[Run] = []
    pin = args.pin
    for rep in range(args.reps):
        order = specs[rep % len(specs) :] + specs[: rep % len(specs)] if specs else []
        for sc in scs:
            if sc.name == "idle" and rep >= args.idle_reps:
                continue
            for spec in order:
                if spec.name in unavailable or (spec.only is not None and sc.name not in spec.only):
                    continue
                runs.append(_one(args, loadgen, sc, spec, rep, pin, out_dir, unavailable))
    return {"runs": runs, "unavailable": unavailable, "scenarios": scs, "servers": [s.name for s in specs]}


def _one(
    args: argparse.Namespace,
    loadgen: Path,
    sc: Scenario,
    spec: ServerSpec,
    rep: int,
    pin: bool,
    out_dir: Path,
    unavailable: dict[str, str],
) -> Run:
    server = ServerProcess(spec, pin, out_dir / f"{spec.name}.log", loadgen)
    try:
        why = server.wait_ready()
        if why is not None:
            if why == "not available":
                unavailable[spec.name] = "not available"
            log(f"  {spec.name:16} {sc.name:12} rep {rep + 1}: server {why}")
            failure = None if why == "not available" else "harness"
            return Run(spec.name, sc.name, rep, failure is None, error=f"server {why}", failure=failure)
        run = drive(loadgen, sc, server, pin, rep, args.timeout)
    finally:
        server.stop()
    headline = [f"{m.label} {_fmt(m, dig(run.result, m.path))}" for m in sc.metrics[:2]]
    cpu = run.result.get("loadgen_cpu"), run.result.get("server_cpu")
    status = "ok" if run.ok else f"FAILED: {run.error}"
    log(
        f"  {spec.name:16} {sc.name:12} rep {rep + 1}: {', '.join(headline)}; "
        f"cpu loadgen {_pct(cpu[0])} server {_pct(cpu[1])}; {status}"
    )
    return run


def _pct(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, (int, float)) else "-"


def _fmt(m: Metric, v: Any) -> str:
    if v is None:
        return "-"
    with contextlib.suppress(ValueError, TypeError):
        return m.fmt.format(v)
    return str(v)


# ---- summary ------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    runs: list[Run] = measured["runs"]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for sc in measured["scenarios"]:
        per_server: dict[str, dict[str, Any]] = {}
        for name in measured["servers"]:
            mine = [r for r in runs if r.scenario == sc.name and r.server == name and r.result]
            if not mine:
                continue
            row: dict[str, Any] = {m.key: median([dig(r.result, m.path) for r in mine]) for m in sc.metrics}
            if sc.name == "bcast":
                bad = ("lost", "out_of_order", "duplicates", "unexpected")
                row["lost"] = max((sum(int(r.result.get(k, 0)) for k in bad) for r in mine), default=None)
            row["loadgen_cpu"] = median([float(r.result.get("loadgen_cpu") or 0) for r in mine])
            row["server_cpu"] = median([float(r.result.get("server_cpu") or 0) for r in mine])
            row["runs_ok"] = sum(r.ok for r in mine)
            row["runs"] = len(mine)
            per_server[name] = row
        summary[sc.name] = per_server
    return summary


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


def targets(summary: dict[str, Any], fd_limit: int) -> list[dict[str, Any]]:
    """The targets, each judged on this run's medians. A target whose servers failed a correctness check in this
    scenario (lost or reordered deliveries, wrong acks) does not pass: a rate reached that way does not count."""

    def get(sc: str, server: str, key: str) -> Any:
        return summary.get(sc, {}).get(server, {}).get(key)

    def wrong(sc: str, servers: tuple[str, ...]) -> int:
        return sum(int(get(sc, s, "runs") or 0) - int(get(sc, s, "runs_ok") or 0) for s in servers)

    out: list[dict[str, Any]] = []

    def check(
        name: str, sc: str, servers: tuple[str, ...], value: float | None, passed: bool | None, shown: str
    ) -> None:
        bad = wrong(sc, servers) if sc in EVENTS else 0
        if bad and passed is not None:
            passed = False
            shown += f", but {bad} of the runs failed their checks (see above)"
        out.append({"target": name, "value": value, "passed": passed, "shown": shown})

    def compare(
        name: str, sc: str, key: str, server: str, other: str, test: Callable[[float], bool], unit: str
    ) -> None:
        r = ratio(get(sc, server, key), get(sc, other, key))
        check(
            name, sc, (server, other), r, None if r is None else bool(test(r)), "-" if r is None else f"{r:.2f}x{unit}"
        )

    # Issue 9: the handlers users write (typed async echo and broadcast), its other forms, trio; issue 10: ASGI.
    compare(
        "typed async echo (dataclass) acks/s >= 2x Node",
        "echo",
        "echo_per_s",
        PRIMARY,
        "node",
        lambda r: r >= 2.0,
        " Node",
    )
    compare("typed async echo p99 no worse than Node", "echo", "p99_ms", PRIMARY, "node", lambda r: r <= 1.0, " Node's")
    compare(
        "pydantic model echo within 10% of the dataclass",
        "echo",
        "echo_per_s",
        MODEL,
        PRIMARY,
        lambda r: r >= 0.9,
        " the dataclass",
    )
    compare("untyped def echo acks/s >= 3x Node", "echo", "echo_per_s", UNTYPED, "node", lambda r: r >= 3.0, " Node")
    compare(
        "trio within 15% of asyncio (typed echo)",
        "echo",
        "echo_per_s",
        TRIO,
        PRIMARY,
        lambda r: r >= 0.85,  # trio faster than asyncio is no miss
        " asyncio",
    )
    compare(
        "broadcast from the typed async handler, deliveries/s >= 3x Node",
        "bcast",
        "deliveries_per_s",
        PRIMARY,
        "node",
        lambda r: r >= 3.0,
        " Node",
    )
    compare(
        "anysio-asgi echo >= 0.8x uvicorn-bare (same uvicorn)",
        "echo",
        "echo_per_s",
        ASGI,
        BARE,
        lambda r: r >= 0.8,
        " uvicorn-bare",
    )
    # Standing targets (connections and memory; the handlers play no part in them).
    compare(
        "trio within 15% of asyncio (typed broadcast)",
        "bcast",
        "deliveries_per_s",
        TRIO,
        PRIMARY,
        lambda r: r >= 0.85,  # trio faster than asyncio is no miss
        " asyncio",
    )
    for sc in ("connect_1k", "connect_10k"):
        compare(
            f"connect rate >= 1.5x Node ({sc.removeprefix('connect_')})",
            sc,
            "connects_per_s",
            PRIMARY,
            "node",
            lambda r: r >= 1.5,
            " Node",
        )
    for key, label in (("kib_at_10k", "at 10k"), ("kib_at_max", "at max")):
        compare(
            f"memory per idle connection <= half of Node's ({label})",
            "idle",
            key,
            PRIMARY,
            "node",
            lambda r: r <= 0.5,
            " Node's",
        )
    share = get("idle", PRIMARY, "held_share")
    held = get("idle", PRIMARY, "held")
    check(
        f"connections held up to the fd limit ({fd_limit})",
        "idle",
        (PRIMARY,),
        share,
        None if share is None else share >= 0.995,
        "-" if share is None else f"{held:,.0f} held = {share:.1%} of possible",
    )
    return out


def loadgen_headroom(measured: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """What one core of the load generator drives. Against the reflector (a minimal native server, faster than
    any peer) the rate it reaches is what it can do; elsewhere the estimate is throughput / its CPU share in the
    busiest run (its cost per operation only falls as batches grow, so this underestimates it)."""
    out = []
    for sc in measured["scenarios"]:
        if sc.rate is None:
            continue
        node_rate = summary.get(sc.name, {}).get("node", {}).get(sc.rate[-1])
        mine = [r for r in measured["runs"] if r.scenario == sc.name and r.ok]
        calibrated = [r for r in mine if r.server == "reflector"]
        busiest = max(calibrated or mine, key=lambda r: dig(r.result, sc.rate) or 0.0, default=None)
        if busiest is None:
            continue
        cpu = busiest.result.get("loadgen_cpu") or 0.0
        rate = dig(busiest.result, sc.rate)
        capacity = rate / cpu if cpu > 0 and isinstance(rate, (int, float)) else None
        out.append(
            {
                "scenario": sc.name,
                "server": busiest.server,
                "loadgen_cpu": cpu,
                "server_cpu": busiest.result.get("server_cpu"),
                "rate": rate,
                "rate_x_node": ratio(rate, node_rate),
                "capacity_per_core": capacity,
                "capacity_x_node": ratio(capacity, node_rate),
            }
        )
    return out


# ---- printing -----------------------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


SHORT = {"python-socketio": "pysio"}


def report(doc: dict[str, Any], scs: list[Scenario]) -> str:
    """One table per scenario: a row per server (anysio's typed rows first), its figures, then its ratio to each
    peer measured in the same run."""
    summary, servers, unavailable = doc["summary"], doc["servers"], doc["unavailable"]
    specs = [s for s in SERVERS if (s.name in servers or s.name in unavailable) and not s.calibration]
    peers = [p for p in PEERS if p in servers]

    def value(sc: Scenario, server: str, m: Metric) -> Any:
        return summary.get(sc.name, {}).get(server, {}).get(m.key)

    reps = doc["meta"]["reps"]
    parts = [
        f"Figures: median of {reps} run{'s' if reps > 1 else ''} per server (idle: {doc['meta']['idle_reps']}); "
        "'vs' columns: the row's figure / the peer's, same run",
        "(above 1x is better for rates, below 1x for latency and memory)",
    ]
    for sc in scs:
        rows_of = [s.name for s in specs if s.only is None or sc.name in s.only]
        compared = [m for m in sc.metrics if m.compared]
        lower = [m.label for m in sc.metrics if not m.higher_is_better and m.compared]
        header = ["server", *(m.label for m in sc.metrics)]
        header += [f"{m.short or m.label} vs {SHORT.get(p, p)}" for m in compared for p in peers]
        rows = []
        for name in rows_of:
            if name in unavailable:
                rows.append([name, *(["n/a"] * (len(header) - 1))])
                continue
            row = [name, *(_fmt(m, value(sc, name, m)) for m in sc.metrics)]
            for m in compared:
                for p in peers:
                    r = ratio(value(sc, name, m), value(sc, p, m))
                    row.append("" if p == name else "-" if r is None else f"{r:.2f}x")
            rows.append(row)
        parts += ["", f"== {sc.title}" + (f"  (lower is better: {', '.join(lower)})" if lower else "")]
        parts.append(table(rows, header))
        if sc.name == "echo" and ASGI in rows_of and BARE in rows_of:
            cells = []
            for m in compared:
                r = ratio(value(sc, ASGI, m), value(sc, BARE, m))
                cells.append(f"{m.short or m.label} {'-' if r is None else f'{r:.2f}x'}")
            parts.append(f"{ASGI} / {BARE} (the same uvicorn; {BARE} is its limit): {', '.join(cells)}")
    for name, why in unavailable.items():
        parts.append(f"{name}: {why}")
    parts.append("")
    if doc["meta"]["smoke"]:
        parts.append("Targets: not judged on a smoke run (its loads are too small to say anything of them).")
    else:
        parts.append("Targets (this run):")
        for t in doc["targets"]:
            mark = {True: "PASS", False: "MISS", None: "n/a "}[t["passed"]]
            parts.append(f"  [{mark}] {t['target']}: {t['shown']}")
    parts.append("")
    parts.append("Load generator, one core (its best run; against the reflector where it ran):")
    if doc["meta"]["smoke"]:
        parts.append("  (smoke: tiny loads and a debug build of the load generator; these say nothing of its capacity)")
    for h in doc["loadgen"]:
        rate, cap = h["rate"] or 0, h["capacity_per_core"] or 0
        x_rate = f" ({h['rate_x_node']:.1f}x Node's)" if h["rate_x_node"] else ""
        x_cap = f" ({h['capacity_x_node']:.1f}x Node's)" if h["capacity_x_node"] else ""
        parts.append(
            f"  {h['scenario']:12} drove {h['server']:22} at {rate:>11,.0f}/s{x_rate}, using {_pct(h['loadgen_cpu'])} "
            f"of its core (server {_pct(h['server_cpu'])}): {cap:,.0f}/s per core{x_cap}"
        )
    return "\n".join(parts)


def _jsonable(o: Any) -> Any:
    if isinstance(o, Run):
        return o.__dict__
    if isinstance(o, Scenario | Metric):
        return o.__dict__
    return str(o)


def meta(args: argparse.Namespace, loadgen: Path) -> dict[str, Any]:
    so = next((ROOT / "python" / "anysio").glob("_native*.so"), None)
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "smoke": args.smoke,
        "reps": args.reps,
        "idle_reps": min(args.idle_reps, args.reps),
        "pinned": args.pin,
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in ln
            ),
            None,
        ),
        "kernel": platform.release(),
        "fd_limit": _fd_limit(),
        "load_before": load_average(),
        "git": version_of(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(version_of(["git", "-C", str(ROOT), "status", "--porcelain"])),
        "python": platform.python_version(),
        "node": version_of(["node", "--version"]),
        "packages": json.loads(
            version_of(
                [
                    PY,
                    "-c",
                    "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
                    "['anysio', 'python-socketio', 'python-engineio', 'uvicorn', 'uvloop', 'trio', 'anyio', "
                    "'pydantic', 'websockets', 'httptools']}))",
                ]
            )
            or "{}"
        ),
        "socket.io": json.loads((BENCH / "node_modules" / "socket.io" / "package.json").read_text()).get("version"),
        "anysio_native": {"path": str(so), "mtime": so.stat().st_mtime} if so else None,
        "loadgen": str(loadgen),
    }


def reprint(path: Path) -> int:
    """The tables of an earlier run, with its targets and load generator figures judged again."""
    doc = json.loads(path.read_text())
    m = doc["meta"]
    hold = next((r["argv"][r["argv"].index("--hold") + 1] for r in doc["runs"] if "--hold" in r["argv"]), "30")
    scs = [s for s in scenarios(m["smoke"], m["fd_limit"], float(hold)) if s.name in doc["summary"]]
    runs = [Run(**r) for r in doc["runs"]]
    doc["targets"] = [] if m["smoke"] else targets(doc["summary"], m["fd_limit"])
    doc["loadgen"] = loadgen_headroom({"scenarios": scs, "runs": runs}, doc["summary"])
    doc["meta"].setdefault("idle_reps", 1)
    print(report(doc, scs))
    return 0


# ---- cluster_bcast: a room spread over two servers on one Redis ------------------------------------------------

#: The pairs compared: two anysio servers (asyncio, the typed handlers) on anysio.RedisCluster, and two Node
#: servers on @socket.io/redis-adapter, each pair on its own fresh redis-server.
CLUSTER_PAIRS = [
    ServerSpec("anysio-asyncio", _anysio("anysio-asyncio", "asyncio", "typed").argv, anysio=True),
    ServerSpec("node", ["node", str(SERVERS_DIR / "node_server.mjs")], cwd=BENCH),
]


@contextlib.contextmanager
def redis_server(log_path: Path) -> Iterator[str]:
    """A private redis-server (Debian's) on a free port, no persistence; yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="anysio-bench-redis-") as tmp, log_path.open("ab") as log_file:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*argv, "--dir", tmp], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while not port_open(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {log_path})")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def cluster_bcast(args: argparse.Namespace, loadgen: Path, logs: Path) -> dict[str, Any]:
    """The load generator's bcast with its clients alternating between two servers of one cluster: the sender's
    broadcasts reach its own server's half of the room directly and the other half through Redis. Servers pinned
    to one core, the load generator to the other (redis-server unpinned), pairs interleaved per repetition."""
    clients = "20" if args.smoke else "1000"
    timing = ["--duration", "0.5", "--warmup", "0.2"] if args.smoke else ["--duration", "5", "--warmup", "1"]
    runs: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in CLUSTER_PAIRS}
    for rep in range(args.reps):
        for spec in CLUSTER_PAIRS:
            with redis_server(logs / f"cluster_bcast-redis-{spec.name}-{rep + 1}.log") as url:
                env = {"REDIS_URL": url}
                pair = [
                    ServerProcess(spec, args.pin, logs / f"cluster_bcast-{spec.name}-{i}.log", loadgen, env)
                    for i in (1, 2)
                ]
                try:
                    why = next((w for w in (s.wait_ready() for s in pair) if w is not None), None)
                    if why is not None:
                        runs[spec.name].append({"ok": False, "error": why})
                        continue
                    cmd = [str(loadgen), "bcast", "--port", str(pair[0].port), "--port2", str(pair[1].port)]
                    cmd += ["--clients", clients, "--window", "16", *timing, "--timeout", str(args.timeout)]
                    prefix = ["taskset", "-c", LOADGEN_CPU] if args.pin else []
                    done = run_quiet(prefix + cmd, timeout=args.timeout + 30)
                    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                    result = json.loads(lines[-1]) if lines else {"ok": False, "error": done.stderr[-500:]}
                    if not all(s.alive() for s in pair):
                        result = {**result, "ok": False, "error": "a server died"}
                    runs[spec.name].append(result)
                    rate = result.get("deliveries_per_s", 0)
                    log(f"    cluster_bcast {spec.name} rep {rep + 1}: {rate:,.0f} deliveries/s")
                finally:
                    for s in pair:
                        s.stop()
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        ok = [r for r in results if r.get("ok")]
        summary[name] = {
            "deliveries_per_s": median([float(r["deliveries_per_s"]) for r in ok]),
            "lost": sum(int(r.get("lost", 0)) for r in results),
            "failed": len(results) - len(ok),
        }
    a, n = summary["anysio-asyncio"]["deliveries_per_s"], summary["node"]["deliveries_per_s"]
    return {"runs": runs, "summary": summary, "ratio": ratio(a, n), "clients": int(clients)}


def cluster_report(doc: dict[str, Any], smoke: bool) -> str:
    """The pair's figures; a smoke run's loads are too small for a verdict, so it gives none."""
    s, r = doc["summary"], doc["ratio"]

    def fmt(v: Any) -> str:
        return f"{v:,.0f}" if isinstance(v, int | float) else "n/a"

    a, n = s["anysio-asyncio"], s["node"]
    verdict = "n/a" if r is None or smoke else ("met" if r >= 3.0 else "MISSED")
    return (
        f"cluster_bcast: broadcast to a room of {doc['clients']} over two servers on one Redis, deliveries/s: "
        f"anysio pair {fmt(a['deliveries_per_s'])}, Node pair {fmt(n['deliveries_per_s'])}, "
        f"ratio {'n/a' if r is None else f'{r:.2f}x'}{'' if smoke else f' (target >= 3x: {verdict})'}; "
        f"lost {a['lost']} / {n['lost']}, failed runs {a['failed']} / {n['failed']}"
    )


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SERVERS]
    all_scenarios = ["connect_1k", "connect_10k", "echo", "bcast", "poll", "idle", "cluster_bcast"]
    p = argparse.ArgumentParser(description="anysio's benchmarks (see bench/README.md)")
    p.add_argument("--smoke", action="store_true", help="tiny loads, one repetition: checks the harness (< 2 min)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --smoke)")
    p.add_argument("--idle-reps", type=int, default=1, help="repetitions of the idle scenario (default 1)")
    p.add_argument("--hold", type=float, default=None, help="seconds the idle run holds its connections (30)")
    p.add_argument("--servers", default=",".join(names), help=f"comma-separated subset of {','.join(names)}")
    p.add_argument("--scenarios", default=",".join(all_scenarios), help=f"subset of {','.join(all_scenarios)}")
    p.add_argument(
        "--strict", action="store_true", help="exit non-zero on failed correctness checks too, not only on breakage"
    )
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and load generator")
    p.add_argument("--no-setup", dest="setup", action="store_false", help="skip npm/pip/cargo (already done)")
    p.add_argument("--loadgen", type=Path, default=None, help="use this load generator binary")
    p.add_argument("--timeout", type=float, default=360.0, help="bound on each load generator run, seconds")
    p.add_argument("--out", type=Path, default=None, help="results file (default bench/results/<time>.json)")
    p.add_argument("--report", type=Path, default=None, help="print the tables of an earlier results file, and exit")
    args = p.parse_args(argv)
    if args.report is not None:
        return reprint(args.report)
    args.reps = args.reps or (1 if args.smoke else 3)
    args.hold = args.hold if args.hold is not None else (0.5 if args.smoke else 30.0)
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    bad = [s for s in args.servers if s not in names] + [s for s in args.scenarios if s not in all_scenarios]
    if bad:
        p.error(f"unknown: {', '.join(bad)}")
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        log("taskset or a second core is missing: running unpinned")
        args.pin = False
    t0 = time.monotonic()
    loadgen = args.loadgen or (
        setup("dev" if args.smoke else "release") if args.setup else ROOT / "target" / "release" / "loadgen"
    )
    if not loadgen.exists():
        sys.exit(f"no load generator at {loadgen}")
    load = load_average()
    if load > 0.5 and not args.smoke:
        log(f"warning: load average {load:.2f}: other work on this machine will disturb the figures")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{'smoke-' if args.smoke else ''}{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"meta": meta(args, loadgen)}
    cluster = "cluster_bcast" in args.scenarios
    args.scenarios = [s for s in args.scenarios if s != "cluster_bcast"]
    if cluster:
        log(f"==> cluster_bcast: the anysio pair and the Node pair on Redis x {args.reps} reps")
        doc["cluster_bcast"] = cluster_bcast(args, loadgen, logs)
        if not args.scenarios:
            out.write_text(json.dumps(doc, default=_jsonable, indent=1))
            print(cluster_report(doc["cluster_bcast"], args.smoke))
            failed_pairs = sum(v["failed"] for v in doc["cluster_bcast"]["summary"].values())
            return 1 if failed_pairs and args.strict else 0
    log(f"==> measuring {len(args.servers)} servers x {len(args.scenarios)} scenarios x {args.reps} reps")
    measured = measure(args, loadgen, logs)
    doc["summary"] = summarize(measured)
    doc["servers"] = measured["servers"]
    doc["unavailable"] = measured["unavailable"]
    doc["targets"] = [] if args.smoke else targets(doc["summary"], _fd_limit())
    doc["loadgen"] = loadgen_headroom(measured, doc["summary"])
    doc["runs"] = measured["runs"]
    doc["meta"]["load_after"] = load_average()
    doc["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(doc, default=_jsonable, indent=1))
    print(report(doc, measured["scenarios"]))
    if cluster:
        print(cluster_report(doc["cluster_bcast"], args.smoke))
    failed = [r for r in measured["runs"] if not r.ok]
    print(f"\nraw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}  ({doc['meta']['seconds']} s)")
    for r in failed:
        print(f"FAILED ({r.failure}): {r.server} {r.scenario} rep {r.rep + 1}: {r.error}", file=sys.stderr)
    fatal = [r for r in failed if r.failure == "harness" or args.strict]
    if failed and not fatal:
        print("(correctness checks failed above; the harness itself worked: exit 0 without --strict)", file=sys.stderr)
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
