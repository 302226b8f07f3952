"""Turn JSON-decoded Socket.IO event arguments into handler call arguments, and back.

A handler's signature is read once, when it is registered (`plan`); each event then
only runs `Plan.bind`.

Decisions:

- Lax coercion, as FastAPI does: pydantic's default (lax) mode, so `"3"` fits an `int`
  parameter, `"true"` a `bool`, a JSON array a `tuple` or `set`, a JSON object a
  dataclass, TypedDict or model. One exception, both ways: text and binary never turn
  into each other. A `bytes` parameter given a str, or a `str` parameter given a binary
  attachment, is an error, at the top level and inside list/dict/tuple/set/Union
  arguments. Fields of a model or dataclass follow that class's own rules (use
  `pydantic.StrictBytes` there).
- A parameter annotated with an injectable marker type (or a subclass of one, or
  `Optional`/`Annotated` of one) is filled from `inject[marker]` and consumes no event
  argument. When `inject` lacks the marker, the parameter takes its default, else None
  when it is Optional, else the event fails with "missing argument".
- The other positional parameters take the event arguments in order. Unannotated, `Any`
  and `object` parameters get the value as it is. A missing argument takes the
  parameter's default (not validated, as in Python).
- Extra arguments go to `*args` when the handler has one (validated when `*args` is
  annotated); otherwise they are ignored, as Node's socket.io does.
- Keyword-only parameters are filled by injection or keep their defaults; `plan`
  rejects one that has neither.
- A handler "takes an ack" when an injected parameter's marker has callable instances
  (defines `__call__`, as `anysio.Ack` does); otherwise `Plan.returns_ack` is True and
  the handler's return value is the ack.
- A signature no event could satisfy (an annotation pydantic cannot validate, a
  required keyword-only parameter) raises TypeError from `plan`, at registration rather
  than on the first event. Before Python 3.12 pydantic needs
  `typing_extensions.TypedDict`, not `typing.TypedDict`.
- All validated parameters share one pydantic TypeAdapter over a TypedDict of
  parameter name -> annotation with no key required: one call validates the arguments
  that are present, and error locations start with the parameter's name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from itertools import islice
from typing import Annotated, Any, Union, get_args, get_origin

import typing_extensions
from pydantic import BaseModel, Strict, TypeAdapter, ValidationError

__all__ = ["MAX_ERRORS", "CoercionError", "ErrorDetail", "Plan", "parser_refused", "plan", "to_jsonable"]


#: One problem of a payload, in pydantic's form: where (parameter name first), what, and its pydantic type.
class ErrorDetail(typing_extensions.TypedDict):
    loc: list[str | int]
    msg: str
    type: str


class CoercionError(Exception):
    """A payload that does not fit the handler's signature.

    str(e) is a short message safe to send to the client (the first problem, and how many more there are);
    ``errors`` lists every problem in pydantic's structured form, without the input: ``{"loc": [...], "msg":
    ..., "type": ...}``, where ``loc`` starts with the parameter's name (at most ``MAX_ERRORS`` of them).
    """

    def __init__(self, message: str, errors: list[ErrorDetail]) -> None:
        super().__init__(message)
        self.errors = errors

    @classmethod
    def missing(cls, name: str) -> CoercionError:
        return cls(f"missing argument '{name}'", [{"loc": [name], "msg": "Field required", "type": "missing"}])

    def body(self) -> dict[str, Any]:
        """What the client receives (in the ack, or the "error" event) and the log line shows."""
        return {"error": str(self), "errors": self.errors}


#: At most this many problems are reported (a large payload of bad items would otherwise make a larger answer).
MAX_ERRORS = 100


_MISSING: Any = object()
_MAX_MESSAGE = 200
# Runtime-only constructors whose dynamic arguments mypy cannot check.
_make_typed_dict: Any = typing_extensions.TypedDict
_annotated: Any = Annotated
_tuple: Any = tuple


def _tuple_of(hints: list[Any]) -> Any:
    return _tuple[tuple(hints)]


_union: Any = Union
_STRICT_TEXT: dict[type, Any] = {
    bytes: _annotated[bytes, Strict()],
    str: _annotated[str, Strict()],
}
# Generic origins whose arguments may be rebuilt with strict text types.
_REBUILDABLE = frozenset({list, set, frozenset, tuple, dict, Union, types.UnionType})


@dataclasses.dataclass(slots=True, frozen=True)
class _Param:
    name: str
    marker: type | None  # injected from inject[marker] when set
    index: int  # position among the event arguments, when not injected
    checked: bool  # validated by the plan's adapter
    default: Any  # _MISSING when the parameter has none
    fallback: Any  # value for an injected parameter whose marker is absent from inject


class Plan:
    """How to call one handler; built by `plan`, reused for every event."""

    __slots__ = (
        "_checked",
        "_json",
        "_json_names",
        "_keyword",
        "_lead",
        "_positional",
        "_required",
        "_var",
        "_var_checked",
        "ack_to_json",
        "adapter",
        "arg_names",
        "direct_counts",
        "direct_marker",
        "is_async",
        "json_argc",
        "returns_ack",
        "validate_json",
    )

    def __init__(
        self,
        *,
        is_async: bool,
        returns_ack: bool,
        positional: list[_Param],
        keyword: list[_Param],
        var: str | None,
        var_checked: bool,
        adapter: TypeAdapter[Any] | None,
        json: TypeAdapter[Any] | None = None,
        lead: int = 0,
        ack_json: TypeAdapter[Any] | None = None,
    ) -> None:
        self.is_async = is_async
        self.returns_ack = returns_ack
        # None when no parameter needs validation: bind then does no pydantic work.
        self.adapter = adapter
        # Parameters that take event arguments, in order: what the handler consumes.
        self.arg_names: tuple[str, ...] = tuple(p.name for p in positional if p.marker is None)
        self._positional = tuple(positional)
        self._keyword = tuple(keyword)
        self._var = var
        self._var_checked = var_checked
        self._required = sum(1 for p in positional if p.marker is None and p.default is _MISSING)
        self._checked = tuple((p.name, p.index) for p in positional if p.checked)
        # The JSON path (`bind_json`): one adapter over the tuple of the event parameters after the first `lead`
        # (which the caller supplies), validating straight from the argument text.
        self._json = json
        self._lead = lead
        self._json_names = self.arg_names[lead:]
        #: The argument count `bind_json` serves (one for every parameter, none over); -1 when it serves none.
        self.json_argc = len(self._json_names) if json is not None else -1
        #: pydantic-core's own call, without TypeAdapter's wrapper: the tuple of the event parameters' values.
        self.validate_json = json.validator.validate_json if json is not None else None
        #: When the handler's only parameters are one injected marker, then the event parameters: the marker.
        #: The caller may then call it as handler(injected, *validate_json(text)).
        self.direct_marker = (
            positional[0].marker
            if lead == 0
            and not keyword
            and positional
            and positional[0].marker is not None
            and [p.index for p in positional[1:]] == list(range(len(positional) - 1))
            else None
        )
        #: With `direct_marker` and nothing to validate: the argument counts (least, most; None for no limit)
        #: with which the caller may call handler(injected, *decoded arguments), as `bind` would.
        event_params = len(positional) - 1
        self.direct_counts: tuple[int, int | None] | None = (
            (self._required, None if var is not None else event_params)
            if self.direct_marker is not None and adapter is None
            else None
        )
        #: The return annotation's serializer over a one-element tuple (the ack's JSON array in one call), or
        #: None; see `ack_json`.
        self.ack_to_json = ack_json.serializer.to_json if ack_json is not None else None

    def error(self, exc: ValidationError) -> CoercionError:
        """The CoercionError for a ValidationError of `validate_json`."""
        return _coercion_error(exc, self._json_names)

    def bind_json(
        self, args_json: str | bytes, lead: list[Any], inject: Mapping[type, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """`bind` for an event whose arguments are still JSON text (`takes_json` said so): parsed and validated
        in one step by pydantic-core. `lead` fills the first parameters (the socket, python-socketio style).

        Raises CoercionError, or the ValidationError of pydantic's parser when it refuses the text itself
        (`parser_refused`): the caller then reads it as JSON.parse does and calls `bind`.
        """
        assert self.validate_json is not None
        try:
            values = self.validate_json(args_json)
        except ValidationError as exc:
            if parser_refused(exc):
                raise
            raise _coercion_error(exc, self._json_names) from None
        lead_count = self._lead
        call: list[Any] = []
        for p in self._positional:
            if p.marker is not None:
                call.append(_injected(p, inject))
            elif p.index < lead_count:
                call.append(lead[p.index])
            else:
                call.append(values[p.index - lead_count])
        return call, {p.name: _injected(p, inject) for p in self._keyword} if self._keyword else {}

    def bind(self, args: list[Any], inject: Mapping[type, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Turn the JSON-decoded event arguments into call arguments.

        Raises CoercionError.
        """
        count = len(args)
        if count < self._required:
            raise CoercionError.missing(self.arg_names[count])
        checked = self._validate(args, count) if self.adapter is not None else None
        call: list[Any] = []
        for p in self._positional:
            if p.marker is not None:
                call.append(_injected(p, inject))
            elif p.index >= count:
                call.append(p.default)
            elif checked is not None and p.checked:
                call.append(checked[p.name])
            else:
                call.append(args[p.index])
        extra = len(self.arg_names)
        if self._var is not None and count > extra:
            call.extend(checked[self._var] if checked is not None and self._var_checked else args[extra:])
        return call, {p.name: _injected(p, inject) for p in self._keyword}

    def _validate(self, args: list[Any], count: int) -> dict[str, Any] | None:
        present: dict[str, Any] = {}
        for name, index in self._checked:
            if index >= count:
                break  # arguments fill parameters in order: the rest are missing too
            present[name] = args[index]
        extra = len(self.arg_names)
        if self._var is not None and self._var_checked and count > extra:
            present[self._var] = args[extra:]
        if not present:
            return None
        assert self.adapter is not None
        try:
            result: dict[str, Any] = self.adapter.validate_python(present)
        except ValidationError as exc:
            raise _coercion_error(exc) from None
        return result


def parser_refused(exc: ValidationError) -> bool:
    """Whether pydantic's JSON parser refused the text itself rather than a value in it: text JSON.parse accepts
    and pydantic does not (an integer over 4300 digits, a lone surrogate, nesting past 200 levels)."""
    return exc.error_count() == 1 and exc.errors(include_url=False)[0]["type"] == "json_invalid"


def _injected(p: _Param, inject: Mapping[type, Any]) -> Any:
    assert p.marker is not None
    value = inject.get(p.marker, _MISSING)
    if value is _MISSING:
        value = p.fallback
        if value is _MISSING:
            raise CoercionError.missing(p.name)
    return value


def _coercion_error(exc: ValidationError, names: Sequence[str] = ()) -> CoercionError:
    """Every problem pydantic found, located from the parameter's name (`names` name the positions of a tuple
    adapter), without the input; the message names the first."""
    errors: list[ErrorDetail] = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False)[:MAX_ERRORS]:
        loc = list(error["loc"])
        if loc and isinstance(loc[0], int) and 0 <= loc[0] < len(names):
            loc[0] = names[loc[0]]
        errors.append({"loc": loc, "msg": error["msg"], "type": error["type"]})
    first = errors[0]
    loc = first["loc"]
    path = (str(loc[0]) if loc else "?") + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]
    )
    message = f"invalid argument '{path}': {first['msg']}"
    more = exc.error_count() - 1
    if more:
        message += f" (+{more} more)"
    message = message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
    return CoercionError(message, errors)


def plan(handler: Callable[..., Any], injectable: Sequence[type], lead: int = 0) -> Plan:
    """Read `handler`'s signature once. The first `lead` event parameters are filled by the caller (the socket,
    for python-socketio's convention), never from JSON.

    Raises TypeError for a signature that no event could satisfy.
    """
    target = _annotated_target(handler)
    hints = _resolve_hints(target)
    positional: list[_Param] = []
    keyword: list[_Param] = []
    fields: dict[str, Any] = {}
    var: str | None = None
    var_checked = False
    takes_ack = False
    taken = 0  # event arguments consumed by the parameters so far
    for param in inspect.signature(handler).parameters.values():
        hint = hints.get(param.name, _MISSING)
        default = _MISSING if param.default is inspect.Parameter.empty else param.default
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            var = param.name
            if _needs_validation(hint):
                fields[param.name] = list[_strict_text(hint)]  # type: ignore[misc]
                var_checked = True
            continue
        marker, optional = _marker_of(hint, injectable)
        if marker is not None:
            takes_ack = takes_ack or _own_call(marker) is not None
            fallback = default if default is not _MISSING else (None if optional else _MISSING)
            entry = _Param(param.name, marker, -1, False, default, fallback)
            (keyword if param.kind is inspect.Parameter.KEYWORD_ONLY else positional).append(entry)
            continue
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            if default is _MISSING:
                raise TypeError(
                    f"{_label(handler)}: keyword-only parameter '{param.name}' is neither injected nor defaulted"
                )
            continue
        checked = _needs_validation(hint)
        if checked:
            fields[param.name] = _strict_text(hint)
        positional.append(_Param(param.name, None, taken, checked, default, _MISSING))
        taken += 1
    adapter = _build_adapter(handler, fields) if fields else None
    event_hints = [hints.get(p.name, Any) if p.checked else Any for p in positional if p.marker is None][lead:]
    json = None
    if adapter is not None and not any(_mentions_bytes(h) for h in event_hints):
        # Binary never comes from JSON text: with a bytes parameter anywhere, events take the general path,
        # where attachments are swapped in (and str -> bytes refused) before validation.
        json = TypeAdapter(_tuple_of(event_hints)) if event_hints else None
    returns = hints.get("return", _MISSING)
    ack_json = None
    if (
        not takes_ack
        and _needs_validation(returns)
        and returns not in (None, type(None))
        and not _mentions_bytes(returns, open_types=True)
        and get_origin(_strip_annotated(returns)) is not tuple
    ):
        try:
            ack_json = TypeAdapter(_tuple_of([returns]))
        except Exception:
            ack_json = None  # a return type pydantic cannot serialize: the general path judges the value
    return Plan(
        is_async=_is_async(handler),
        returns_ack=not takes_ack,
        positional=positional,
        keyword=keyword,
        var=var,
        var_checked=var_checked,
        adapter=adapter,
        json=json,
        lead=lead,
        ack_json=ack_json,
    )


_CONTAINERS = (list, dict, set, frozenset, tuple)


def _mentions_bytes(hint: Any, seen: frozenset[int] = frozenset(), open_types: bool = False) -> bool:
    """Whether a binary type appears in `hint`: in its type arguments, or the fields of a dataclass or TypedDict
    (whose binary values travel as attachments). A pydantic model's own serializer turns bytes into text.
    ``open_types``: Any and object count too (a returned value they describe may hold bytes, which pydantic's
    serializer would write as text, where the general path sends them as binary)."""
    if hint is bytes or hint is bytearray or hint is memoryview:
        return True
    if open_types and (hint is Any or hint is object):
        return True
    if id(hint) in seen:
        return False
    seen = seen | {id(hint)}
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or typing_extensions.is_typeddict(hint)):
        try:
            fields = typing.get_type_hints(hint)
        except Exception:
            return True  # unknown fields: the general path
        return any(_mentions_bytes(f, seen, open_types) for f in fields.values())
    if open_types and not get_args(hint) and (hint in _CONTAINERS or get_origin(hint) in _CONTAINERS):
        return True  # `dict`, `typing.List`: their items are Any
    return any(_mentions_bytes(arg, seen, open_types) for arg in get_args(hint) if arg is not Ellipsis)


def _label(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


def _annotated_target(handler: Callable[..., Any]) -> Any:
    """The function object whose annotations and globals describe `handler`."""
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.ismethod(target):
        target = target.__func__
    if not inspect.isfunction(target) and not isinstance(target, type):
        call = _own_call(type(target))
        if call is not None:
            target = call
    return target


def _own_call(cls: type) -> Any:
    """`cls.__call__` as defined by the class itself (not the metaclass's), or None."""
    for klass in cls.__mro__:
        if klass is not object and "__call__" in vars(klass):
            return vars(klass)["__call__"]
    return None


def _resolve_hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    # One parameter at a time: an unresolvable string leaves only its own parameter
    # unannotated.
    raw = getattr(target, "__annotations__", None) or {}
    globalns = getattr(inspect.unwrap(target), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in raw.items():
        holder = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints.update(typing.get_type_hints(holder, globalns=globalns, include_extras=True))
        except Exception:
            continue
    return hints


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.isfunction(target) or inspect.ismethod(target) or isinstance(target, type):
        return False
    return inspect.iscoroutinefunction(_own_call(type(target)))


def _strip_annotated(hint: Any) -> Any:
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return hint


def _marker_of(hint: Any, injectable: Sequence[type]) -> tuple[type | None, bool]:
    """The injectable marker `hint` asks for, and whether it is Optional."""
    hint = _strip_annotated(hint)
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        members = get_args(hint)
        others = [m for m in members if m is not type(None)]
        if len(others) != 1 or len(others) == len(members):
            return None, False
        hint = _strip_annotated(others[0])
        optional = True
    if get_origin(hint) is not None or not isinstance(hint, type):
        return None, False
    for marker in injectable:
        if issubclass(hint, marker):
            return marker, optional
    return None, False


def _needs_validation(hint: Any) -> bool:
    return hint is not _MISSING and hint is not Any and hint is not object


def _strict_text(hint: Any) -> Any:
    """`hint` with each bare str/bytes made strict: text and binary never mix."""
    if hint is str or hint is bytes:
        return _STRICT_TEXT[hint]
    origin = get_origin(hint)
    if origin is Annotated:
        inner, *metadata = get_args(hint)
        new_inner = _strict_text(inner)
        return hint if new_inner is inner else _annotated[(new_inner, *metadata)]
    if origin not in _REBUILDABLE:
        return hint
    args = get_args(hint)
    new_args = tuple(_strict_text(arg) for arg in args)
    if all(new is old for new, old in zip(new_args, args, strict=True)):
        return hint
    if origin in (Union, types.UnionType):
        return _union[new_args]
    return origin[new_args]


def _build_adapter(handler: Callable[..., Any], fields: dict[str, Any]) -> TypeAdapter[Any]:
    arguments = _make_typed_dict("Arguments", fields, total=False)
    try:
        return TypeAdapter(arguments)
    except Exception as exc:
        # Name the parameter pydantic refused.
        culprit = next(iter(fields))
        for name, hint in fields.items():
            try:
                TypeAdapter(hint)
            except Exception:
                culprit = name
                break
        raise TypeError(f"{_label(handler)}: cannot validate parameter '{culprit}': {exc}") from exc


# Emitted as they are: JSON scalars, and binary data the caller makes attachments of.
_PASSTHROUGH = frozenset({str, int, float, bool, type(None), bytes, bytearray, memoryview})
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """`value` with dataclasses, pydantic models, enums, tuples and sets made JSON-like.

    Containers are copied only when something inside them changes. Binary values are
    left for the caller. Inside a pydantic model, model_dump(mode="json") decides (bytes
    fields become str there). Other objects are returned unchanged for the JSON encoder
    to judge.
    """
    kind = type(value)
    if kind in _PASSTHROUGH:
        return value
    if kind is dict:
        return _dict(value)
    if kind is list:
        return _list(value)
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(kind, "__dataclass_fields__"):
        names = _DATACLASS_FIELDS.get(kind)
        if names is None:
            names = _DATACLASS_FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return _dict(value)
    if isinstance(value, list):
        return _list(value)
    return value


def _dict(value: dict[Any, Any]) -> dict[Any, Any]:
    copy: dict[Any, Any] | None = None
    for position, (key, item) in enumerate(value.items()):
        new_key = key.value if type(key) is not str and isinstance(key, Enum) else key
        new_item = item if type(item) in _PASSTHROUGH else to_jsonable(item)
        if copy is None:
            if new_item is item and new_key is key:
                continue
            copy = dict(islice(value.items(), position))
        copy[new_key] = new_item
    return value if copy is None else copy


def _list(value: list[Any]) -> list[Any]:
    copy: list[Any] | None = None
    for position, item in enumerate(value):
        new_item = item if type(item) in _PASSTHROUGH else to_jsonable(item)
        if copy is None:
            if new_item is item:
                continue
            copy = value[:position]
        copy.append(new_item)
    return value if copy is None else copy
