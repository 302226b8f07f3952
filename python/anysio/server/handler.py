"""An application's handler with its coercion planned once, at registration, and the middleware type."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..codec.coerce import Plan, parser_refused, plan
from ..codec.wire import decode_args
from .socket import Ack, Socket

Middleware = Callable[[Socket], Any]
#: An event's arguments: decoded, or still JSON text with their count (decoded by the handler's plan).
Args = list[Any] | tuple[str, int]


class Handler:
    """A handler with its coercion planned once, at registration."""

    __slots__ = ("direct", "fn", "name", "plan", "socket_first")

    def __init__(self, fn: Callable[..., Any], plan: Plan, name: str, socket_first: bool) -> None:
        self.fn = fn
        self.plan = plan
        self.name = name
        #: python-socketio's convention: an unannotated first parameter receives the socket.
        self.socket_first = socket_first
        #: Called as fn(socket, *arguments) when its arguments come from the JSON path.
        self.direct = plan.direct_marker is Socket

    @classmethod
    def of(cls, fn: Callable[..., Any], name: str) -> Handler:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        socket_first = bool(params) and params[0].annotation is inspect.Parameter.empty
        return cls(fn, plan(fn, [Socket, Ack], lead=int(socket_first)), name, socket_first)

    def invoke(self, socket: Socket, args: Args, ack: Ack | None) -> Any:
        """Coerce and call: the result, or the awaitable a coroutine function returns. CoercionError when the
        arguments do not fit; Undecodable when Python cannot read their JSON text."""
        if type(args) is tuple:
            args_json, argc = args
            plan = self.plan
            if argc == plan.json_argc:
                try:
                    if self.direct:
                        assert plan.validate_json is not None
                        values = plan.validate_json(args_json)
                    else:
                        pos, kw = plan.bind_json(args_json, [socket], {Socket: socket, Ack: ack})
                except ValidationError as exc:
                    # Text pydantic's parser refuses and JSON.parse accepts takes the general path below.
                    if not parser_refused(exc):
                        raise plan.error(exc) from None
                else:
                    return self.fn(socket, *values) if self.direct else self.fn(*pos, **kw)
            args = decode_args(args_json, None)
        assert isinstance(args, list)
        counts = self.plan.direct_counts
        if (
            counts is not None
            and self.direct
            and counts[0] <= len(args)
            and (counts[1] is None or len(args) <= counts[1])
        ):
            # Nothing to validate, and Python's own binding does what `bind` would: defaults, *args.
            return self.fn(socket, *args)
        if self.socket_first:
            args = [socket, *args]
        pos, kw = self.plan.bind(args, {Socket: socket, Ack: ack})
        return self.fn(*pos, **kw)

    async def call(self, socket: Socket, args: list[Any], ack: Ack | None) -> Any:
        result = self.invoke(socket, args, ack)
        if inspect.isawaitable(result):
            result = await result
        return result
