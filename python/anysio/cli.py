"""``anysio run module:attr [--workers N] [--host H] [--port P] [--backend asyncio|uvloop|trio]``."""

from __future__ import annotations

import argparse
import contextlib
import logging
from functools import partial

from .workers import BACKENDS, load, run, run_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anysio", description="Run an anysio Socket.IO server.")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="serve module:attr (an anysio.Server, or a function returning one)")
    r.add_argument("target")
    r.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=5000)
    r.add_argument("--backend", choices=BACKENDS, default="asyncio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.workers > 1:
        return run(args.target, workers=args.workers, host=args.host, port=args.port, backend=args.backend)
    server = load(args.target)
    with contextlib.suppress(KeyboardInterrupt):
        run_backend(partial(server.serve, args.host, args.port), args.backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
