"""Per-stage cost of an event, from a py-spy ``--native`` profile and the server's measured CPU time per event.

    python bench/profile_stages.py PROFILE.txt LOAD.json [--svg flame.svg] [--json stages.json] [--stacks N]

PROFILE.txt is py-spy's raw output (``py-spy record --native -f raw``: one collapsed stack per line, root first,
with its sample count); LOAD.json is the load generator's result for a run of the same server *without* the
profiler (bench/profile.sh makes both). The method, so that two runs can be compared:

1. each sample is put in one stage: its frames are read from the leaf up, and the first frame that a rule of
   ``STAGES`` matches decides. A rule may also ask which Python function is the frame's nearest Python caller,
   to tell the same native code apart by what called it (pyo3 converting the core's events for Python, or the
   ack handed to ``emit_to``). Generic Rust library frames (std, core, alloc) decide only when nothing more
   specific follows before the nearest Python frame. A sample that none of these matches goes to the first
   "context" rule (the handler, task spawning, the dispatcher and event loop) that any of its frames matches,
   else to "other";
2. py-spy leaves out the samples where the thread sleeps (waiting in epoll), so the samples are the server's
   CPU time, and a stage's share of them is its share of that time. Samples py-spy could not unwind (native
   code without usable unwind tables, such as pydantic-core's wheel) are left out, and counted (``--pyspy-log``);
   with ``--perf-dso`` the CPU per event by library, from perf's samples, is printed beside the stages as a check;
3. the server's CPU time per event is measured by the load generator from /proc/<pid>/stat over its measured
   window, in the run without the profiler (py-spy stops the process for each sample: the profiled run is slower
   and its batches smaller);
4. a stage's microseconds per event = its share x the CPU microseconds per event. For ``echo`` an event is one
   acknowledged echo; for ``bcast`` it is one broadcast (one event in, one frame out to each member).

The shares carry the sampling error of their count (about sqrt(share x (1 - share) / samples)): the table
prints the count, so a reader can judge. The rules name functions of today's event path; when the path moves,
edit ``STAGES`` (a frame is "function (file)" as py-spy prints it, or a native symbol) and check the "other"
line and ``--stacks`` output for samples that fell through.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    frame: re.Pattern[str]
    #: When set, a frame between this one and its nearest Python caller, both included, must match too: which
    #: call the native code runs under (``core.turn()`` or ``core.emit_to()``), or which Python function called it.
    under: re.Pattern[str] | None = None
    #: A weak rule (generic library code: Rust's std, core and alloc) decides only when no other rule matches a
    #: frame further up the same native stretch, up to the nearest Python frame.
    weak: bool = False
    #: A context rule (where the time was spent, not what it was spent on) applies only to a sample that no
    #: other rule matches; the first context rule that matches any of its frames decides.
    context: bool = False


def _rule(name: str, frame: str, under: str | None = None, weak: bool = False, context: bool = False) -> Stage:
    return Stage(name, re.compile(frame), re.compile(under) if under else None, weak, context)


_RUST = r"(^|[^\w])anysio::|_R\w*6anysio"  # anysio's own Rust functions, demangled or v0-mangled
_RUST_ANY = r"\.rs\)$"  # any Rust function (std, core, alloc, serde_json, ... too)
_PYO3 = (
    r"pyo3|^Py\w+_(New|From\w*|Pack|SetItem|Append)\b|^_?Py(Tuple|Unicode|Long|Bytes|List|Dict)_|unicode_decode_utf8"
)
# The calls from Python into the core: pyo3's trampolines and the Rust methods, or the Python callers.
_EMIT = (
    r"__pymethod_(emit_to|broadcast\w*)__|Core::(emit_to|broadcast\w*) |"
    r"^([\w.]*\.)?(_send_ack|emit_to|broadcast_event|_emit\w*) \("
)
_TURN = r"__pymethod_turn__|Core::turn |^(run_core|_drive) \("

# In order of precedence for one frame; frames are tried from the leaf up.
STAGES = [
    _rule("write (send syscalls)", r"^(__libc_)?(send|sendto|sendmsg|write|writev)\b.*\(libc"),
    _rule("read (recv syscalls)", r"^(__libc_)?(recv|recvfrom|recvmsg|read|readv)\b.*\(libc"),
    _rule("poller (epoll, wake-ups)", r"^(epoll_\w+|poll|eventfd_\w+)\b.*\(libc"),
    _rule("garbage collector", r"gc_collect|_PyGC_|collect_generations"),
    # The ack (or broadcast) handed back to Rust: the call, its argument conversion, and what Rust does with it.
    _rule("emit_to: crossing to Rust", _PYO3 + r"|^([\w.]*\.)?(_send_ack|emit_to) \(", _EMIT),
    _rule("emit_to: Rust packet, frame, queue", _RUST, _EMIT),
    _rule("emit_to: Rust packet, frame, queue", _RUST_ANY, _EMIT, weak=True),
    # The core's turn: reading and parsing the frames, and handing the events to Python.
    _rule("crossing to Python (event tuples)", _PYO3 + r"|_to_py\b", _TURN),
    _rule("Rust read + parse (core turn)", _RUST),
    _rule("Rust read + parse (core turn)", _RUST_ANY, _TURN, weak=True),
    # Python: the ack's JSON, the arguments' JSON, their coercion, the handler.
    _rule(
        "encode (ack or emitted args to JSON)",
        r"encode_args|_dumps|_has_binary|_extract|to_jsonable|encoder_|JSONEncoder|json/encoder|model_dump|"
        r"dump_python|dump_json|to_json\b|asdict|serializ",
    ),
    # pydantic-core's native frames, by their Python caller: a serializer (the ack planned from the return
    # annotation, called from the reply) or, below, a validator (which parses the JSON itself with validate_json).
    _rule(
        "encode (ack or emitted args to JSON)",
        r"pydantic",
        r"to_jsonable|model_dump|dump_python|dump_json|to_json|serializ|encode|_reply \(",
    ),
    _rule(
        "JSON decode",
        r"decode_args|_decode\b|scanner_call|scan_once|_parse_(array|object)|scanstring|_match_number|"
        r"json/decoder|JSONDecoder|py_scanstring|_insert ",
    ),
    _rule(
        "validation (bind, pydantic; its JSON parse too)",
        r"pydantic|validate_|TypeAdapter|\(_coerce\.py\)|Plan\.\w+ \(",
    ),
    # Where the rest went.
    _rule("handler call", r"^(echo|bcast)\w* \(anysio_server\.py|^Handler\.\w+ \(", context=True),
    _rule(
        "task spawn (start_soon)",
        r"^(TaskGroup\.(start_soon|create_task|_spawn)|Dispatcher\._spawn) \(",
        context=True,
    ),
    _rule(
        "dispatch, tasks, event loop",
        r"\((_dispatch|_tasks|_asyncio|tasks|base_events|events|selector_events|runners|_eventloop|"
        r"_synchronization|locks|engineio|server|socket|adapter|_run|_core_\w+|_ki|_impl|threading)\.py\)|"
        r"_asynciomodule|^task_step|TaskStep|^_asyncio_|uvloop|\(loop\.pyx|trio",
        context=True,
    ),
]
OTHER = "other (interpreter, allocator, unmatched)"

_LOCATION = re.compile(r" \(([^()]*/)?([^/()]*?)(:\d+)?\)$")
_HASH = re.compile(r"::h[0-9a-f]{16}")


def clean(frame: str) -> str:
    """``function (file)``: the path and line dropped, Rust symbol hashes too."""
    return _HASH.sub("", _LOCATION.sub(r" (\2)", frame))


def is_python(frame: str) -> bool:
    return frame.endswith(".py)")


def classify(frames: list[str]) -> str:
    """The stage of one sample; ``frames`` root first."""
    python_at: list[int] = []  # the index of each frame's nearest Python caller (itself when a Python frame)
    last = 0
    for i, f in enumerate(frames):
        if is_python(f):
            last = i
        python_at.append(last)
    fallback: str | None = None
    for i in range(len(frames) - 1, -1, -1):
        f = frames[i]
        if fallback is not None and is_python(f):
            return fallback
        for st in STAGES:
            if st.context or not st.frame.search(f):
                continue
            if st.under is not None and not any(st.under.search(g) for g in frames[python_at[i] : i + 1]):
                continue
            if not st.weak:
                return st.name
            fallback = fallback or st.name
            break
    if fallback is not None:
        return fallback
    for st in STAGES:
        if st.context and any(st.frame.search(f) for f in frames):
            return st.name
    return OTHER


def read_profile(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([clean(f) for f in stack.split(";")], int(count)))
    return stacks


def pyspy_errors(path: Path) -> int | None:
    """The samples py-spy took but could not unwind ("Samples: N Errors: M" in its output)."""
    found = re.findall(r"Errors: (\d+)", path.read_text(errors="replace")) if path.exists() else []
    return int(found[-1]) if found else None


def perf_dso(path: Path) -> list[tuple[str, float]]:
    """(library, share of the samples) from ``perf report --sort dso --no-children --stdio``."""
    out = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        m = re.match(r"^\s*([\d.]+)%\s+(\S.*?)\s*$", line)
        if m:
            out.append((m.group(2), float(m.group(1)) / 100))
    return out


def per_event_cpu_us(load: dict[str, Any]) -> tuple[float | None, str]:
    """The server's CPU microseconds per event in the load generator's result, and what an event is."""
    cpu = load.get("server_cpu")
    scenario = load.get("scenario")
    if scenario == "bcast":
        members = load.get("members") or 0
        rate = (load.get("deliveries_per_s") or 0) / members if members else 0
        what = f"broadcast to {members}"
    else:
        rate = load.get("echo_per_s") or 0
        what = "acknowledged echo"
    if not isinstance(cpu, (int, float)) or not rate:
        return None, what
    return cpu / rate * 1e6, what


def stages(stacks: list[tuple[list[str], int]]) -> tuple[Counter[str], dict[str, Counter[str]], int]:
    by_stage: Counter[str] = Counter()
    examples: dict[str, Counter[str]] = {}
    for frames, n in stacks:
        st = classify(frames)
        by_stage[st] += n
        leaf = frames[-1] if frames else "?"
        examples.setdefault(st, Counter())[leaf] += n
    return by_stage, examples, sum(by_stage.values())


def flame_svg(stacks: list[tuple[list[str], int]], title: str, width: int = 1600) -> str:
    """A flame graph (root at the bottom) of the collapsed stacks, as a self-contained SVG with hover titles."""
    tree: dict[str, Any] = {"n": 0, "kids": {}}
    for frames, n in stacks:
        node = tree
        node["n"] += n
        for f in frames:
            node = node["kids"].setdefault(f, {"n": 0, "kids": {}})
            node["n"] += n
    total = tree["n"] or 1
    row, rects, depth_max = 16, [], 0

    def walk(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] / total * width
            if w >= 0.3:
                depth_max = max(depth_max, depth)
                hue = 10 + zlib.crc32(name.encode()) % 50  # the same colour for a frame in every run
                label = html.escape(name[: int(w / 7)]) if w > 21 else ""
                tip = html.escape(f"{name}: {kid['n']} samples, {100 * kid['n'] / total:.1f}%")
                rects.append((x, depth, w, f"hsl({hue},80%,60%)", label, tip))
                walk(kid, x, depth + 1)
            x += w

    walk(tree, 0.0, 0)
    height = (depth_max + 1) * row + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
        f'font-size="11"><rect width="100%" height="100%" fill="#fff"/>',
        f'<text x="4" y="16" font-size="14">{html.escape(title)} ({total} samples)</text>',
    ]
    for x, depth, w, fill, label, tip in rects:
        y = height - (depth + 1) * row
        out.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{fill}"/>'
            f'<text x="{x + 2:.1f}" y="{y + 11}">{label}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("profile", type=Path, help="py-spy record --native -f raw output")
    p.add_argument("load", type=Path, help="the load generator's JSON for a run without the profiler")
    p.add_argument("--svg", type=Path, help="write a flame graph here")
    p.add_argument("--json", type=Path, help="write the stages here")
    p.add_argument("--stacks", type=int, default=3, help="hottest leaf frames shown per stage (default 3)")
    p.add_argument("--title", default="", help="the flame graph's title")
    p.add_argument("--pyspy-log", type=Path, help="py-spy's output, for the count of samples it could not unwind")
    p.add_argument("--perf-dso", type=Path, help="`perf report --sort dso --stdio` output: a per-library check")
    args = p.parse_args(argv)
    stacks = read_profile(args.profile)
    if not stacks:
        print(f"no samples in {args.profile}", file=sys.stderr)
        return 1
    lines = [ln for ln in args.load.read_text().splitlines() if ln.strip()]
    load = json.loads(lines[-1]) if lines else {}
    us, what = per_event_cpu_us(load)
    by_stage, examples, total = stages(stacks)
    order = [s.name for s in STAGES]
    names = sorted(by_stage, key=lambda s: order.index(s) if s in order else len(order))
    rate = load.get("echo_per_s") or load.get("deliveries_per_s")
    print(
        f"server CPU per {what}: {'-' if us is None else f'{us:.2f} us'} "
        f"(server_cpu {load.get('server_cpu')}, rate {rate}/s, run without the profiler); {total} samples"
    )
    print(f"{'stage':48} {'samples':>8} {'share':>7} {'us/event':>9}   hottest leaf frames")
    rows = []
    for name in names:
        n = by_stage[name]
        share = n / total
        cost = None if us is None else share * us
        leaves = ", ".join(f"{leaf} {100 * k / n:.0f}%" for leaf, k in examples[name].most_common(args.stacks))
        cost_s = "-" if cost is None else f"{cost:.2f}"
        print(f"{name:48} {n:8d} {100 * share:6.1f}% {cost_s:>9}   {leaves[:160]}")
        rows.append({"stage": name, "samples": n, "share": share, "us_per_event": cost})
    print(f"{'total':48} {total:8d} {100.0:6.1f}% {'-' if us is None else f'{us:.2f}':>9}")
    errors = pyspy_errors(args.pyspy_log) if args.pyspy_log else None
    if errors:
        print(
            f"py-spy could not unwind {errors} more samples ({100 * errors / (errors + total):.0f}% of those taken), "
            "left out above: mostly native code without unwind tables, whose time may also land on the calling "
            "Python frame. The per-library split below (perf, every on-CPU sample) shows how much that is."
        )
    libraries = perf_dso(args.perf_dso) if args.perf_dso else []
    if libraries:
        print(f"\n{'library (perf)':48} {'':8} {'share':>7} {'us/event':>9}")
        for lib, share in libraries:
            cost_s = "-" if us is None else f"{share * us:.2f}"
            print(f"{lib[:48]:48} {'':8} {100 * share:6.1f}% {cost_s:>9}")
    if args.json:
        doc = {
            "event": what,
            "cpu_us_per_event": us,
            "samples": total,
            "pyspy_errors": errors,
            "load": load,
            "stages": rows,
            "libraries": [
                {"library": lib, "share": sh, "us_per_event": None if us is None else sh * us} for lib, sh in libraries
            ],
        }
        args.json.write_text(json.dumps(doc, indent=1))
    if args.svg:
        args.svg.write_text(flame_svg(stacks, args.title or args.profile.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
