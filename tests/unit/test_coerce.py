"""anysio.codec.coerce: planning handler signatures, coercing payloads, emitting values."""

import dataclasses
import datetime
import enum
import functools
import json
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pytest
import typing_extensions
from pydantic import BaseModel, Field, TypeAdapter

from anysio.codec import coerce as _coerce
from anysio.codec.coerce import CoercionError, Plan, plan, to_jsonable


class FakeSocket:
    pass


class SubSocket(FakeSocket):
    pass


class FakeAck:
    def __call__(self, *args: Any) -> None:
        pass


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Message(BaseModel):
    text: str
    to: list[int] = []


class Movie(typing_extensions.TypedDict):
    title: str
    year: int


INJECTABLE = (FakeSocket, FakeAck)
SOCK = FakeSocket()
ACK = FakeAck()
INJECT: dict[type, Any] = {FakeSocket: SOCK, FakeAck: ACK}


def bind(
    handler: Callable[..., Any], args: list[Any], inject: dict[type, Any] | None = None
) -> tuple[list[Any], dict[str, Any]]:
    return plan(handler, INJECTABLE).bind(args, INJECT if inject is None else inject)


def legacy(annotation: str) -> Callable[..., None]:
    """`def h(v: <annotation>)` spelled as pre-3.10 code does, e.g. typing.Optional."""
    namespace: dict[str, Any] = {"typing": typing}
    exec(f"def h(v: {annotation}) -> None: ...", namespace)
    handler: Callable[..., None] = namespace["h"]
    return handler


def first(handler: Callable[..., Any], value: Any) -> Any:
    """The value the handler's only parameter receives for one event argument."""
    call, _ = bind(handler, [value])
    return call[0]


def error(handler: Callable[..., Any], args: list[Any]) -> str:
    with pytest.raises(CoercionError) as caught:
        bind(handler, args)
    return str(caught.value)


# --- supported types -------------------------------------------------------------


def test_str() -> None:
    def h(v: str) -> None: ...

    assert first(h, "hi") == "hi"
    assert error(h, [3]) == "invalid argument 'v': Input should be a valid string"
    assert "'v'" in error(h, [b"binary"])  # binary never turns into text


def test_int_is_lax_like_fastapi() -> None:
    def h(v: int) -> None: ...

    assert first(h, 3) == 3
    assert first(h, "3") == 3
    assert first(h, 3.0) == 3
    assert error(h, ["x"]).startswith("invalid argument 'v': Input should be a valid")
    assert "fractional" in error(h, [3.5])


def test_float_and_bool() -> None:
    def f(v: float) -> None: ...

    def b(v: bool) -> None: ...

    assert first(f, 2) == 2.0
    assert first(f, "2.5") == 2.5
    assert "'v'" in error(f, ["x"])
    assert first(b, True) is True
    assert first(b, "false") is False
    assert first(b, 1) is True
    assert "'v'" in error(b, ["maybe"])


def test_none_optional_union() -> None:
    def n(v: None) -> None: ...

    o = legacy("typing.Optional[int]")

    def u(v: int | None) -> None: ...

    un = legacy("typing.Union[int, typing.List[int]]")

    assert first(n, None) is None
    assert "'v'" in error(n, [1])
    for handler in (o, u):
        assert first(handler, None) is None
        assert first(handler, "4") == 4
        assert "'v'" in error(handler, ["x"])
    assert first(un, ["1", 2]) == [1, 2]
    assert "(+1 more)" in error(un, ["x"])


def test_containers() -> None:
    def li(v: list[int]) -> None: ...

    def di(v: dict[str, int]) -> None: ...

    def tu(v: tuple[int, str]) -> None: ...

    def se(v: set[int]) -> None: ...

    assert first(li, [1, "2"]) == [1, 2]
    assert error(li, [[1, "x"]]).startswith("invalid argument 'v[1]': ")
    assert first(di, {"a": "1"}) == {"a": 1}
    assert error(di, [{"a": "x"}]).startswith("invalid argument 'v.a': ")
    assert first(tu, [1, "a"]) == (1, "a")
    assert "'v'" in error(tu, [[1, "a", 3]])
    assert first(se, [1, 1, 2]) == {1, 2}
    assert "'v'" in error(se, [{"a": 1}])


def test_literal_and_enum() -> None:
    def lit(v: Literal["on", "off"]) -> None: ...

    def col(v: Color) -> None: ...

    def lvl(v: Level) -> None: ...

    assert first(lit, "on") == "on"
    assert "'on' or 'off'" in error(lit, ["dim"])
    assert first(col, "red") is Color.RED
    assert "'v'" in error(col, ["green"])
    assert first(lvl, 2) is Level.HIGH
    assert "'v'" in error(lvl, [7])


def test_dataclass_typeddict_model() -> None:
    def dc(v: Point) -> None: ...

    def td(v: Movie) -> None: ...

    def mo(v: Message) -> None: ...

    assert first(dc, {"x": "1"}) == Point(1, 0)
    assert error(dc, [{"y": 2}]) == "invalid argument 'v.x': Field required"
    assert first(td, {"title": "T", "year": "1999"}) == {"title": "T", "year": 1999}
    assert error(td, [{"title": "T"}]) == "invalid argument 'v.year': Field required"
    assert first(mo, {"text": "hi", "to": ["1"]}) == Message(text="hi", to=[1])
    assert error(mo, [{"text": "hi", "to": [1, "x"]}]).startswith("invalid argument 'v.to[1]': ")
    assert "'v'" in error(mo, ["not an object"])


def test_bytes_take_attachments_not_text() -> None:
    def h(v: bytes) -> None: ...

    def many(v: list[bytes]) -> None: ...

    maybe = legacy("typing.Optional[bytes]")

    blob = b"\x00\xff"
    assert first(h, blob) == blob
    assert error(h, ["text"]) == "invalid argument 'v': Input should be a valid bytes"
    assert first(many, [blob]) == [blob]
    assert error(many, [[blob, "x"]]).startswith("invalid argument 'v[1]': ")
    assert first(maybe, None) is None
    assert "'v'" in error(maybe, ["x"])


def test_any_object_and_unannotated_pass_through() -> None:
    def a(v: Any) -> None: ...

    def o(v: object) -> None: ...

    payload = {"deep": [1, "x"]}
    assert first(a, payload) is payload
    assert first(o, payload) is payload
    assert first(lambda v: None, payload) is payload


def test_annotated_constraints() -> None:
    def h(v: Annotated[int, Field(gt=0)], name: Annotated[str, "doc"]) -> None: ...

    assert bind(h, ["5", "n"])[0] == [5, "n"]
    assert "greater than 0" in error(h, [0, "n"])
    assert "'name'" in error(h, [1, b"n"])  # Annotated str stays strict about binary


def test_unsupported_annotation_fails_at_plan_time() -> None:
    class Opaque:
        pass

    def h(a: int, b: Opaque) -> None: ...

    with pytest.raises(TypeError, match="parameter 'b'"):
        plan(h, INJECTABLE)


# --- arguments, defaults, extras ------------------------------------------------------


def test_missing_arguments_and_defaults() -> None:
    def h(a: int, b: int = 3, c: int | None = None) -> None: ...

    assert bind(h, [1]) == ([1, 3, None], {})
    assert bind(h, ["1", "2"]) == ([1, 2, None], {})
    assert error(h, []) == "missing argument 'a'"
    assert error(lambda socket, a: None, [1]) == "missing argument 'a'"


def test_defaults_are_not_validated() -> None:
    sentinel = object()

    def h(a: int = sentinel) -> None:  # type: ignore[assignment]
        ...

    assert bind(h, [])[0][0] is sentinel


def test_extra_arguments_are_ignored() -> None:
    def h(a: int) -> None: ...

    assert bind(h, [1, "extra", {"x": 1}]) == ([1], {})
    assert bind(lambda a: None, [1, 2, 3]) == ([1], {})


def test_var_positional() -> None:
    def typed(a: str, *rest: int) -> None: ...

    extras = [{"x": 1}, "y"]
    call, _ = bind(lambda s, a, *rest: None, [1, 2, *extras])
    assert call == [1, 2, *extras]
    assert call[2] is extras[0]
    assert bind(typed, ["a", "1", 2]) == (["a", 1, 2], {})
    assert bind(typed, ["a"]) == (["a"], {})
    assert error(typed, ["a", 1, "x"]).startswith("invalid argument 'rest[1]': ")


def test_message_is_short_and_omits_payload() -> None:
    def h(a: int, b: Message) -> None: ...

    secret = "s3cret" * 1000
    message = error(h, [1, {"text": 5, "to": [secret]}])
    assert secret[:6] not in message
    assert len(message) <= 200
    assert message.startswith("invalid argument 'b.")
    assert "(+" in message


# --- injection ----------------------------------------------------------------------


def test_injection_by_type() -> None:
    def h(socket: FakeSocket, msg: Message, ack: FakeAck) -> str:
        return ""

    call, kwargs = bind(h, [{"text": "hi"}])
    assert call == [SOCK, Message(text="hi"), ACK]
    assert kwargs == {}
    assert plan(h, INJECTABLE).arg_names == ("msg",)


def test_injection_of_subclass_optional_and_annotated() -> None:
    def h(
        a: int,
        s: SubSocket,
        ack: FakeAck | None,
        s2: Annotated[FakeSocket | None, "meta"],
    ) -> None: ...

    assert bind(h, [1]) == ([1, SOCK, ACK, SOCK], {})
    # An absent Optional marker is None; an absent required one fails the event.
    assert bind(h, [1], {FakeSocket: SOCK}) == ([1, SOCK, None, SOCK], {})
    with pytest.raises(CoercionError, match="missing argument 's'"):
        bind(h, [1], {FakeAck: ACK})


def test_keyword_only_parameters() -> None:
    def h(a: int, *, socket: FakeSocket, flag: bool = False, **extra: Any) -> None: ...

    assert bind(h, ["1", True]) == ([1], {"socket": SOCK})

    def bad(a: int, *, b: int) -> None: ...

    with pytest.raises(TypeError, match="keyword-only parameter 'b'"):
        plan(bad, INJECTABLE)


def test_string_annotations() -> None:
    def h(socket: "FakeSocket", msg: "Message", ack: "FakeAck") -> None: ...

    assert bind(h, [{"text": "x"}])[0] == [SOCK, Message(text="x"), ACK]


def test_future_annotations_module(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("handlers_future")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    source = (
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class Local:\n"
        "    n: int\n"
        "async def h(socket: FakeSocket, a: Local, b: int = 3, *rest: str) -> None:\n"
        "    pass\n"
    )
    module.FakeSocket = FakeSocket  # type: ignore[attr-defined]
    exec(compile(source, "handlers_future.py", "exec"), module.__dict__)
    p = plan(module.h, INJECTABLE)
    assert p.is_async
    call, _ = p.bind([{"n": "2"}, "4", "x"], INJECT)
    assert call == [SOCK, module.Local(2), 4, "x"]


def test_unresolvable_string_annotation_passes_through() -> None:
    def h(socket: "FakeSocket", a: "NoSuchType", b: "int") -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    p = plan(h, INJECTABLE)
    assert p.arg_names == ("a", "b")
    payload = {"anything": 1}
    call, _ = p.bind([payload, "7"], INJECT)
    assert call[0] is SOCK
    assert call[1] is payload
    assert call[2] == 7


def test_returns_ack() -> None:
    def with_ack(ack: FakeAck) -> None: ...

    def with_optional_ack(a: int, ack: FakeAck | None = None) -> None: ...

    def without(socket: FakeSocket, a: int) -> int:
        return a

    assert not plan(with_ack, INJECTABLE).returns_ack
    assert not plan(with_optional_ack, INJECTABLE).returns_ack
    assert plan(without, INJECTABLE).returns_ack
    assert plan(lambda sid, data: None, INJECTABLE).returns_ack


# --- sync / async detection ----------------------------------------------------


class AsyncHandler:
    async def __call__(self, socket: FakeSocket, n: int) -> int:
        return n

    async def method(self, n: int) -> int:
        return n


class SyncHandler:
    def __call__(self, n: int) -> int:
        return n


def test_async_detection() -> None:
    async def coro(n: int) -> None: ...

    def sync(n: int) -> None: ...

    assert plan(coro, INJECTABLE).is_async
    assert not plan(sync, INJECTABLE).is_async
    assert plan(AsyncHandler().method, INJECTABLE).is_async
    assert plan(functools.partial(coro), INJECTABLE).is_async
    assert not plan(functools.partial(sync), INJECTABLE).is_async
    assert not plan(SyncHandler(), INJECTABLE).is_async


def test_callable_object() -> None:
    p = plan(AsyncHandler(), INJECTABLE)
    assert p.is_async
    assert p.arg_names == ("n",)
    assert p.bind(["5"], INJECT) == ([SOCK, 5], {})
    assert plan(SyncHandler(), INJECTABLE).bind(["6"], INJECT) == ([6], {})


# --- adapters ---------------------------------------------------------------------


def test_no_validation_means_no_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("TypeAdapter built")

    monkeypatch.setattr(_coerce, "TypeAdapter", refuse)

    def h(socket: FakeSocket, a: Any, b, *rest, ack: FakeAck) -> None:  # type: ignore[no-untyped-def]
        ...

    p = plan(h, INJECTABLE)
    assert p.adapter is None
    data = {"x": [1]}
    call, kwargs = p.bind([data, "b", 1, 2], INJECT)
    assert call == [SOCK, data, "b", 1, 2]
    assert call[1] is data
    assert kwargs == {"ack": ACK}


def test_adapters_built_at_plan_time_only(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []

    def counting(tp: Any) -> Any:
        built.append(tp)
        return TypeAdapter(tp)

    monkeypatch.setattr(_coerce, "TypeAdapter", counting)

    def h(a: int, b: Message, c: list[int], *rest: float) -> None: ...

    p: Plan = plan(h, INJECTABLE)
    assert p.adapter is not None
    at_plan = len(built)  # the general path's adapter and the JSON path's
    assert at_plan == 2
    for _ in range(3):
        p.bind(["1", {"text": "t"}, [2], "3.5"], INJECT)
        p.bind_json('["1",{"text":"t"},[2]]', [], INJECT)
    assert len(built) == at_plan


# --- to_jsonable ----------------------------------------------------------------------


@dataclasses.dataclass
class Inner:
    color: Color
    tags: tuple[str, ...]
    blob: bytes


class Stamp(BaseModel):
    at: datetime.date
    level: Level


@dataclasses.dataclass
class Outer:
    inner: Inner
    stamp: Stamp
    items: list[Any]
    groups: set[int]


def test_to_jsonable_plain_values_are_not_copied() -> None:
    plain = {"a": [1, 2.5, None, True, {"b": "c"}], "d": b"raw"}
    assert to_jsonable(plain) is plain
    items = [1, "x", [2]]
    assert to_jsonable(items) is items
    for scalar in ("s", 1, 1.5, True, None):
        assert to_jsonable(scalar) is scalar


def test_to_jsonable_nested() -> None:
    blob = b"\x00\x01"
    view = memoryview(b"mv")
    value = Outer(
        inner=Inner(Color.BLUE, ("a", "b"), blob),
        stamp=Stamp(at=datetime.date(2024, 1, 2), level=Level.HIGH),
        items=[1, Point(3), view, (Color.RED,)],
        groups={7},
    )
    out = to_jsonable(value)
    assert out == {
        "inner": {"color": "blue", "tags": ["a", "b"], "blob": blob},
        "stamp": {"at": "2024-01-02", "level": 2},
        "items": [1, {"x": 3, "y": 0}, view, ["red"]],
        "groups": [7],
    }
    assert out["inner"]["blob"] is blob
    assert out["items"][2] is view


def test_to_jsonable_copies_only_changed_containers() -> None:
    untouched = {"k": [1, 2]}
    data = {"keep": untouched, "enum": Level.LOW, Color.RED: bytearray(b"x")}
    out = to_jsonable(data)
    assert out == {"keep": untouched, "enum": 1, "red": bytearray(b"x")}
    assert out is not data
    assert out["keep"] is untouched
    assert data["enum"] is Level.LOW  # the input is not changed
    assert to_jsonable([untouched, Color.BLUE])[0] is untouched
    assert to_jsonable(Message(text="m")) == {"text": "m", "to": []}
    assert to_jsonable(frozenset({"z"})) == ["z"]


# --- the JSON path: arguments validated straight from their text -------------------------------------------------


def _both(handler: Callable[..., Any], args: list[Any]) -> tuple[Any, Any]:
    """The general path's call and the JSON path's call for the same arguments."""
    import json

    p = plan(handler, INJECTABLE)
    assert p.json_argc == len(args)
    return p.bind(args, INJECT), p.bind_json(json.dumps(args), [], INJECT)


def test_json_path_calls_as_the_general_path() -> None:
    def h(s: FakeSocket, n: int, point: Point, msg: Message, movie: Movie, anything: Any, *, ack: FakeAck) -> None: ...

    args = ["3", {"x": 1}, {"text": "t", "to": [1]}, {"title": "T", "year": "1999"}, {"k": [1, None]}]
    general, from_json = _both(h, args)
    assert general == from_json
    assert from_json[0][1:] == [3, Point(1, 0), Message(text="t", to=[1]), {"title": "T", "year": 1999}, args[4]]


def test_json_path_only_for_exact_counts_and_without_binary() -> None:
    def pair(a: int, b: str = "x") -> None: ...

    def var(a: int, *rest: int) -> None: ...

    def binary(a: int, data: bytes) -> None: ...

    def nested(a: list[bytes | None]) -> None: ...

    @dataclasses.dataclass
    class Blob:
        data: bytes

    def blob(b: Blob) -> None: ...

    def untyped(a, b):  # type: ignore[no-untyped-def]
        ...

    assert plan(pair, INJECTABLE).json_argc == 2
    assert plan(var, INJECTABLE).json_argc == 1
    for h in (binary, nested, blob, untyped):
        assert plan(h, INJECTABLE).json_argc == -1, h.__name__


def test_json_path_names_the_argument_that_does_not_fit() -> None:
    def h(s: FakeSocket, n: int, point: Point) -> None: ...

    p = plan(h, INJECTABLE)
    with pytest.raises(CoercionError, match=r"invalid argument 'point\.x': Input should be a valid integer"):
        p.bind_json('[1,{"x":"no"}]', [], INJECT)
    with pytest.raises(CoercionError, match="invalid argument 'n'"):
        p.bind_json('["no",{"x":1}]', [], INJECT)
    assert p.direct_marker is FakeSocket


def test_lead_parameters_come_from_the_caller() -> None:
    def h(sock, n: int) -> None:  # type: ignore[no-untyped-def]
        ...

    p = plan(h, INJECTABLE, lead=1)
    assert (p.json_argc, p.direct_marker) == (1, None)
    assert p.bind_json("[5]", [SOCK], INJECT) == ([SOCK, 5], {})


def test_ack_serializer_from_the_return_annotation() -> None:
    def point(s: FakeSocket) -> Point:
        return Point(0)

    def several(s: FakeSocket) -> tuple[int, str]:
        return 1, "a"

    def binary(s: FakeSocket) -> bytes:
        return b""

    def takes_ack(s: FakeSocket, ack: FakeAck) -> int:
        return 0

    def open_dict(s: FakeSocket) -> dict[str, Any]:
        return {"blob": b"\x00"}  # binary that the annotation does not name: it must stay binary

    def open_list(s: FakeSocket) -> list[object]:
        return [b"\x00"]

    def bare_dict(s: FakeSocket) -> dict:  # type: ignore[type-arg]
        return {"blob": b"\x00"}

    def closed_dict(s: FakeSocket) -> dict[str, int]:
        return {"n": 1}

    to_json = plan(point, INJECTABLE).ack_to_json
    assert to_json is not None and to_json((Point(1, 2),)) == b'[{"x":1,"y":2}]'
    to_json = plan(closed_dict, INJECTABLE).ack_to_json
    assert to_json is not None and to_json(({"n": 1},)) == b'[{"n":1}]'
    for h in (several, binary, takes_ack, open_dict, open_list, bare_dict):
        assert plan(h, INJECTABLE).ack_to_json is None, h.__name__


# --- structured errors --------------------------------------------------------------


def test_every_problem_is_reported_in_pydantics_form() -> None:
    def h(s: FakeSocket, n: int, point: Point) -> None: ...

    with pytest.raises(CoercionError) as caught:
        bind(h, ["x", {"x": "no", "y": "nor"}])
    assert caught.value.errors == [
        {
            "loc": ["n"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {
            "loc": ["point", "x"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {
            "loc": ["point", "y"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
    ]
    # The short message names the first problem and counts the others, as before.
    assert str(caught.value) == (
        "invalid argument 'n': Input should be a valid integer, unable to parse string as an integer (+2 more)"
    )
    assert caught.value.body() == {"error": str(caught.value), "errors": caught.value.errors}


def test_the_json_path_reports_the_same_errors_as_the_decoded_path() -> None:
    def h(s: FakeSocket, n: int, point: Point, tags: list[str]) -> None: ...

    p = plan(h, INJECTABLE)
    args = ["x", {"y": "nor"}, ["a", 2, None]]
    with pytest.raises(CoercionError) as decoded:
        p.bind(args, INJECT)
    with pytest.raises(CoercionError) as from_json:
        p.bind_json(json.dumps(args), [], INJECT)
    assert from_json.value.errors == decoded.value.errors
    assert str(from_json.value) == str(decoded.value)
    assert [e["loc"] for e in decoded.value.errors] == [["n"], ["point", "x"], ["point", "y"], ["tags", 1], ["tags", 2]]
    assert [e["type"] for e in decoded.value.errors] == [
        "int_parsing",
        "missing",
        "int_parsing",
        "string_type",
        "string_type",
    ]


def test_missing_arguments_are_structured_too() -> None:
    def h(s: FakeSocket, a: int, b: int) -> None: ...

    with pytest.raises(CoercionError) as caught:
        bind(h, [1])
    assert str(caught.value) == "missing argument 'b'"
    assert caught.value.errors == [{"loc": ["b"], "msg": "Field required", "type": "missing"}]


def test_var_positional_errors_are_located_in_it() -> None:
    def h(s: FakeSocket, first: str, *rest: int) -> None: ...

    with pytest.raises(CoercionError) as caught:
        bind(h, ["a", 1, "x"])
    assert [e["loc"] for e in caught.value.errors] == [["rest", 1]]


def test_errors_are_capped() -> None:
    def h(s: FakeSocket, v: list[int]) -> None: ...

    with pytest.raises(CoercionError) as caught:
        bind(h, [["x"] * (_coerce.MAX_ERRORS + 50)])
    assert len(caught.value.errors) == _coerce.MAX_ERRORS
    assert str(caught.value).endswith(f"(+{_coerce.MAX_ERRORS + 49} more)")


def test_direct_counts_when_nothing_is_validated() -> None:
    def var(s: FakeSocket, *args):  # type: ignore[no-untyped-def]
        ...

    def defaults(s: FakeSocket, a, b=1):  # type: ignore[no-untyped-def]
        ...

    def typed(s: FakeSocket, a: int) -> None: ...

    def no_marker(a, b):  # type: ignore[no-untyped-def]
        ...

    assert plan(var, INJECTABLE).direct_counts == (0, None)
    assert plan(defaults, INJECTABLE).direct_counts == (1, 2)
    assert plan(typed, INJECTABLE).direct_counts is None
    assert plan(no_marker, INJECTABLE).direct_counts is None
