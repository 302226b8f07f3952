"""Several handlers for one event, and an event's way through a socket's packet middlewares (Node's ``socket.use``).

The dispatcher runs both as it runs a coroutine handler that takes an ``Ack``: they start eagerly, and the socket's
next events wait for them. Every handler of an event gets the same ``Ack``; the first reply (a call of the Ack, or
the return value of a handler that does not take one) answers the client and later ones are ignored, as Node
ignores a second call of an ack callback. A return value of None is no reply while another handler follows: when
no handler replied, a None returned by one is the empty ack a single handler's None would send. Handlers run in
the order they were registered, each after the previous one finished.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from .._native import HandlerTimes
from ..codec.coerce import CoercionError, plan
from ..codec.wire import BadAttachments, Undecodable
from .handler import Args, Handler
from .metrics import Counts
from .socket import Ack, Socket

logger = logging.getLogger("anysio")
#: An ``error`` handler: called with the socket (None for bad input no socket is known for) and the exception.
ErrorHandler = Callable[[Socket | None, BaseException], Any]


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


class Reporting:
    """Failures, each logged once and then handed to the ``error`` handlers (the dispatcher's part that Chain and
    Pipeline reach), and the catch-all listeners, whose failures go the same way."""

    #: What Python counts for ``/metrics``, and the handlers' time among it; None when metrics are off (the
    #: event path then times nothing).
    counts: Counts | None = None
    times: HandlerTimes | None = None

    def error_handlers(self, socket: Socket | None) -> Sequence[ErrorHandler]:
        """The socket's namespace's ``error`` handlers, or, when it has none (or there is no socket), those of
        the main namespace "/" (``@sio.on("error")``)."""
        raise NotImplementedError

    def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in a task of the server; False when it is not being served."""
        raise NotImplementedError

    def report(self, socket: Socket | None, error: BaseException) -> None:
        if self.counts is not None:
            _count(self.counts, error)
        for fn in list(self.error_handlers(socket)):
            try:
                result = fn(socket, error)
            except Exception:
                logger.exception("error handler %s failed", getattr(fn, "__qualname__", fn))
                continue
            if inspect.isawaitable(result) and not self.start(_awaited, result):
                getattr(result, "close", lambda: None)()

    def notify_server(self, name: str, listener: Callable[..., Any], *args: Any) -> None:
        """A server's listener (``new_namespace``)."""
        self._call_listener(name, None, listener, args)

    def _call_listener(
        self, name: str, socket: Socket | None, listener: Callable[..., Any], args: Sequence[Any]
    ) -> None:
        """What a listener raises is a failed handler's; a coroutine listener runs in a task of its own (closed
        unrun when the server is not served)."""
        try:
            result = listener(*args)
        except Exception as e:
            self.failed(name, socket, e)
            return
        if inspect.isawaitable(result) and not self.start(self._listened, name, socket, result):
            getattr(result, "close", lambda: None)()

    def failed(self, name: str, socket: Socket | None, error: Exception, more: str = "") -> None:
        """A handler (or listener) raised: one log line with the traceback, then the error handlers."""
        where = f"socket {socket.id}" if socket is not None else "no socket"
        logger.error("handler for %r failed (%s)%s", name, where, more, exc_info=error)
        self.report(socket, error)

    def rejected(self, socket: Socket, error: Exception) -> None:
        """A packet middleware stopped a packet: the error handlers; logged only when there are none (Node's
        "Missing error handler on `socket`")."""
        if not self.error_handlers(socket):
            logger.warning("packet from %s stopped by a middleware, and no error handler: %r", socket.id, error)
        self.report(socket, error)

    def notify_any(self, socket: Socket, packet: list[Any], ack: Ack) -> None:
        """The socket's catch-all listeners, with the event's Ack last when the client asked for one; a
        coroutine listener runs in a task of its own."""
        args = (*packet, ack) if ack.requested else packet
        for listener in list(socket.any_listeners):
            self._call_listener("catch-all listener", socket, listener, args)

    async def _listened(self, name: str, socket: Socket | None, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception as e:
            self.failed(name, socket, e)


def _count(counts: Counts, error: BaseException) -> None:
    """Bad input Python found (the core counts what it refuses itself)."""
    if isinstance(error, CoercionError):
        counts.bad("payload")
    elif isinstance(error, (BadAttachments, Undecodable)):
        counts.bad("undecodable")


class Reporter(Protocol):
    """Where failures go (the dispatcher): each is logged once and handed to the ``error`` handler."""

    def unfit(
        self, handler: Handler, socket: Socket, ack_id: int | None, error: CoercionError, ack: Ack | None
    ) -> None:
        """Arguments that do not fit the handler: answered with the problems."""

    def undecodable(self, socket: Socket, error: Exception) -> None:
        """A packet Python cannot read: the connection is closed."""

    def failed(self, name: str, socket: Socket, error: Exception) -> None:
        """A handler raised."""

    def rejected(self, socket: Socket, error: Exception) -> None:
        """A packet middleware stopped the packet."""


async def _takes_ack(socket: Socket, ack: Ack) -> None:
    """The shape the dispatcher sees: a coroutine function that takes the Ack (so its return value is no reply)."""


_PLAN = plan(_takes_ack, [Socket, Ack])


def ack_args(result: Any) -> list[Any]:
    """A handler's return value as ack arguments: None is no argument, a tuple is several."""
    if result is None:
        return []
    return list(result) if isinstance(result, tuple) else [result]


#: What ``invoke`` returns for a call that failed (answered and reported already).
FAILED: Any = object()


def invoke(
    handler: Handler, socket: Socket, args: Args, ack: Ack | None, ack_id: int | None, reporter: Reporter
) -> Any:
    """Coerce and call: the result (a coroutine function's coroutine), or FAILED once the failure is answered
    (arguments that do not fit) and reported."""
    try:
        return handler.invoke(socket, args, ack)
    except CoercionError as e:
        reporter.unfit(handler, socket, ack_id, e, ack)
    except Undecodable as e:
        reporter.undecodable(socket, e)
    except Exception as e:
        reporter.failed(handler.name, socket, e)
    return FAILED


async def call(handler: Handler, socket: Socket, args: Args, ack: Ack, reporter: Reporter, last: bool = True) -> bool:
    """Run one handler with the event's shared Ack: its return value answers unless a reply was sent already, or
    it is None and other handlers follow (``last`` False). True when it returned None without answering."""
    result = invoke(handler, socket, args, ack, ack.ack_id, reporter)
    if result is FAILED:
        return False
    if handler.plan.is_async:
        try:
            result = await result
        except Exception as e:
            reporter.failed(handler.name, socket, e)
            return False
    if not handler.plan.returns_ack or ack.sent:
        return False
    if result is None and not last:
        return True
    ack(*ack_args(result))
    return False


class Chain(Handler):
    """The handlers registered for one event, called in registration order with the same Ack."""

    __slots__ = ("handlers", "reporter")

    def __init__(self, handlers: list[Handler], reporter: Reporter) -> None:
        super().__init__(self._run, _PLAN, handlers[0].name, False)
        self.handlers = handlers
        self.reporter = reporter

    def invoke(self, socket: Socket, args: Args, ack: Ack | None) -> Any:
        return self._run(socket, args, ack if ack is not None else Ack(socket, None))

    async def _run(self, socket: Socket, args: Args, ack: Ack) -> None:
        returned_none = False
        for handler in list(self.handlers):
            returned_none |= await call(handler, socket, args, ack, self.reporter, last=False)
        if returned_none:
            ack()  # a no-op when a later handler replied

    async def call(self, socket: Socket, args: list[Any], ack: Ack | None) -> Any:
        """``connect`` and ``disconnect``: each handler in turn; one that refuses (raises, or returns False)
        stops the rest."""
        for handler in list(self.handlers):
            if await handler.call(socket, args, ack) is False:
                return False
        return None


class Pipeline(Handler):
    """One event through the socket's packet middlewares, then its handler (if it has one). A middleware that
    raises stops the packet; a socket that disconnected meanwhile gets no handler call, as in Node."""

    __slots__ = ("handler", "packet", "reporter")

    def __init__(self, handler: Handler | None, packet: list[Any], reporter: Reporter) -> None:
        super().__init__(self._run, _PLAN, handler.name if handler is not None else str(packet[0]), False)
        self.handler = handler
        self.packet = packet
        self.reporter = reporter

    def invoke(self, socket: Socket, args: Args, ack: Ack | None) -> Any:
        return self._run(socket, args, ack if ack is not None else Ack(socket, None))

    async def _run(self, socket: Socket, args: Args, ack: Ack) -> None:
        for middleware in list(socket.packet_middlewares):
            try:
                result = middleware(self.packet)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                self.reporter.rejected(socket, e)
                return
        if socket.connected and self.handler is not None:
            await call(self.handler, socket, args, ack, self.reporter)
