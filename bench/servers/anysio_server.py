"""The benchmark contract on anysio's standalone server.

PORT from the environment; every socket joins room "bench" on connect; "echo" is acknowledged with its argument,
an object {"id": int, "text": str, "ts": float}; "bcast" is broadcast to the room, sender included. Default
options, as every peer. The handlers are the ones users write (``--handler``):

- ``typed`` (default): ``async def echo(socket, msg: Echo) -> Echo`` with ``Echo`` a dataclass, the returned
  value being the ack; ``async def bcast(socket, msg: Echo) -> None`` broadcasts it;
- ``model``: the same with ``Echo`` a pydantic ``BaseModel``;
- ``untyped``: ``def echo(socket, *args: Any)`` returning the arguments as they came (no coercion, no
  coroutine), and an untyped ``async def bcast``.

Usage: PORT=5000 python bench/servers/anysio_server.py [--backend asyncio|uvloop|trio] [--handler typed|model|untyped]
[--workers N] [--metrics] [--parser default|msgpack] [--deflate]

With ``--metrics`` the server counts for ``/metrics`` (``Server(metrics=True)``): what metrics cost.
``--parser msgpack`` serves socket.io-msgpack-parser's packets (the msgpack echo row; the load generator's
``--parser msgpack`` speaks them). With ``--deflate``, ``per_message_deflate={"threshold": 0}``: every message
compressed both ways with a client that offers it (the load generator's ``--deflate``): what compression costs.

With ``REDIS_URL`` in the environment the server is one of a cluster on Redis (``anysio.RedisCluster``, the
cluster_bcast scenario).

With ``--workers N`` (N > 1) anysio's master process runs N workers on the port (``anysio.workers``); bench/run.py
measures one process on one core and does not use it: the PID it watches would be the master's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel

import anysio
from anysio import Server, Socket
from anysio.workers import serve_alone

HANDLERS = ("typed", "model", "untyped")


@dataclass
class Echo:
    """The load generator's echo and bcast argument (bench/loadgen/src/payload.rs)."""

    id: int
    text: str
    ts: float


class EchoModel(BaseModel):
    """``Echo`` as a pydantic model."""

    id: int
    text: str
    ts: float


def make_server(
    handler: str | None = None,
    metrics: bool | None = None,
    parser: Literal["default", "msgpack"] | None = None,
    deflate: bool | None = None,
) -> Server:
    """The contract with the handlers of ``handler`` (else $BENCH_HANDLER, else typed), with metrics on when
    ``metrics`` (else $BENCH_METRICS), the packets of ``parser`` (else $BENCH_PARSER, else default), and with
    ``deflate`` (else $BENCH_DEFLATE) permessage-deflate on every message (threshold 0); on the Redis cluster of
    $REDIS_URL when set."""
    handler = handler or os.environ.get("BENCH_HANDLER", "typed")
    metrics = metrics if metrics is not None else os.environ.get("BENCH_METRICS") == "1"
    parser = parser or ("msgpack" if os.environ.get("BENCH_PARSER") == "msgpack" else "default")
    redis_url = os.environ.get("REDIS_URL")
    adapter = anysio.RedisCluster(redis_url).adapter if redis_url else anysio.Adapter
    deflate = deflate if deflate is not None else os.environ.get("BENCH_DEFLATE") == "1"
    options: dict[str, Any] = {"per_message_deflate": {"threshold": 0}} if deflate else {}
    sio = Server(adapter=adapter, metrics=metrics, parser=parser, **options)

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.join("bench")

    if handler == "typed":

        @sio.on("echo")
        async def echo(socket: Socket, msg: Echo) -> Echo:
            return msg  # the returned value is the ack

        @sio.on("bcast")
        async def bcast(socket: Socket, msg: Echo) -> None:
            await sio.to("bench").emit("bcast", msg)

    elif handler == "model":

        @sio.on("echo")
        async def echo_model(socket: Socket, msg: EchoModel) -> EchoModel:
            return msg

        @sio.on("bcast")
        async def bcast_model(socket: Socket, msg: EchoModel) -> None:
            await sio.to("bench").emit("bcast", msg)

    elif handler == "untyped":

        @sio.on("echo")
        def echo_untyped(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args  # the ack carries the same arguments

        @sio.on("bcast")
        async def bcast_untyped(socket: Socket, *args: Any) -> None:
            await sio.to("bench").emit("bcast", *args)

    else:
        raise ValueError(f"handler: one of {', '.join(HANDLERS)}, not {handler!r}")
    return sio


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--handler", choices=HANDLERS, default="typed", help="the handlers' form (default typed)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    parser.add_argument("--metrics", action="store_true", help="metrics on (Server(metrics=True))")
    parser.add_argument("--parser", choices=["default", "msgpack"], default="default", help="Node's parser option")
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate on every message (threshold 0)")
    args = parser.parse_args()
    port = int(os.environ.get("PORT", "5000"))
    if args.workers > 1:
        from anysio import workers

        # The workers import this file as a module, from its own directory; the handler form goes by environment.
        here = os.path.dirname(os.path.abspath(__file__))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        os.environ["BENCH_HANDLER"] = args.handler
        os.environ["BENCH_METRICS"] = "1" if args.metrics else "0"
        os.environ["BENCH_PARSER"] = args.parser
        os.environ["BENCH_DEFLATE"] = "1" if args.deflate else "0"
        target = "anysio_server:make_server"
        raise SystemExit(workers.run(target, workers=args.workers, host="127.0.0.1", port=port, backend=args.backend))
    backend, options = ("asyncio", {"use_uvloop": True}) if args.backend == "uvloop" else (args.backend, {})
    with contextlib.suppress(KeyboardInterrupt):
        sio = make_server(args.handler, args.metrics, args.parser, args.deflate)
        anyio.run(serve_alone, sio, "127.0.0.1", port, backend=backend, backend_options=options)


if __name__ == "__main__":
    main()
