"""``anysio run module:attr``: serve an application from the command line, as uvicorn or hypercorn do.

``python -m anysio`` is the same command. The current folder is on the import path (``--app-dir`` changes it);
errors a user can fix (no such module or attribute, a port in use, a backend that is not installed, a worker
that cannot start) are one line on stderr and status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from .engineio.runtime import BACKENDS, run_until_signalled
from .exceptions import BackendUnavailable
from .workers import PING_INTERVAL, PING_TIMEOUT, TargetError, load, ping_error, run, serve_alone

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, except for flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is False else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anysio", description="Run an anysio Socket.IO server.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "run",
        help="serve module:attr",
        description="Serve module:attr, an anysio.Server (attr defaults to sio), or a function returning one.",
        formatter_class=_Defaults,
    )
    r.add_argument("target", metavar="module:attr", help="the server, e.g. echo:sio for sio in echo.py")
    r.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    r.add_argument("--port", type=int, default=5000, help="port to listen on (0: any free one)")
    r.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    r.add_argument("--backend", choices=BACKENDS, default="asyncio", help="event loop")
    r.add_argument("--app-dir", default=".", help="look for the module in this folder (put first on sys.path)")
    r.add_argument("--factory", action="store_true", help="module:attr is a function returning the server")
    r.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of the anysio logger")
    r.add_argument(
        "--allow-eio3",
        action="store_true",
        help="accept Engine.IO v3 clients (socket.io-client 2.x), as the server's allow_eio3=True",
    )
    r.add_argument(
        "--worker-ping-interval",
        type=float,
        default=PING_INTERVAL,
        help="seconds between the master's pings of each worker (with --workers)",
    )
    r.add_argument(
        "--worker-ping-timeout",
        type=float,
        default=PING_TIMEOUT,
        help="a worker that answers no ping for this many seconds (stopped, hung) is killed and restarted",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    wrong = ping_error(args.worker_ping_interval, args.worker_ping_timeout)
    if wrong is not None:
        print(f"anysio: {wrong}", file=sys.stderr, flush=True)
        return 1
    try:
        if args.workers > 1:
            return run(
                args.target,
                workers=args.workers,
                host=args.host,
                port=args.port,
                backend=args.backend,
                app_dir=args.app_dir,
                factory=args.factory,
                log_level=args.log_level,
                worker_ping_interval=args.worker_ping_interval,
                worker_ping_timeout=args.worker_ping_timeout,
                allow_eio3=args.allow_eio3,
            )
        server = load(args.target, factory=args.factory, app_dir=args.app_dir)
        server.allow_eio3 = server.allow_eio3 or args.allow_eio3
        run_until_signalled(partial(serve_alone, server), args.host, args.port, args.backend)
    except (TargetError, BackendUnavailable, OSError) as e:
        print(f"anysio: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
