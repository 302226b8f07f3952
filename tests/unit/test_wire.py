"""anysio.codec.wire: event arguments to and from JSON text with binary attachments, as socket.io-parser does."""

import dataclasses
import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anysio.codec.wire import BadAttachments, Undecodable, decode_args, encode_args


def ph(n: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": n}


def test_plain_arguments_have_no_attachments() -> None:
    data, attachments = encode_args(["chat", "héllo", 1, 2.5, None, True, {"a": [1, {"b": "c"}]}])
    assert attachments == []
    assert data == '["chat","héllo",1,2.5,null,true,{"a":[1,{"b":"c"}]}]'
    assert decode_args(data, None) == ["chat", "héllo", 1, 2.5, None, True, {"a": [1, {"b": "c"}]}]


def test_nested_binary_becomes_numbered_placeholders_depth_first() -> None:
    args = ["up", b"\x00\x01", {"file": bytearray(b"ab"), "parts": [memoryview(b"c"), (b"",)]}, "end"]
    data, attachments = encode_args(args)
    assert attachments == [b"\x00\x01", b"ab", b"c", b""]
    assert json.loads(data) == ["up", ph(0), {"file": ph(1), "parts": [ph(2), [ph(3)]]}, "end"]
    assert all(type(a) is bytes for a in attachments)
    assert decode_args(data, attachments) == ["up", b"\x00\x01", {"file": b"ab", "parts": [b"c", [b""]]}, "end"]


def test_values_are_made_jsonable_before_binary_is_pulled_out() -> None:
    @dataclasses.dataclass
    class Blob:
        name: str
        raw: bytes

    data, attachments = encode_args(["blob", Blob("x", b"\xff"), {1, 2} - {2}])
    assert json.loads(data) == ["blob", {"name": "x", "raw": ph(0)}, [1]]
    assert attachments == [b"\xff"]


def test_non_json_values_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_args(["x", object()])


def test_infinities_and_nan_go_out_as_json_stringify_writes_them() -> None:
    inf, nan = float("inf"), float("nan")
    data, _ = encode_args([inf, -inf, nan, {"k": [inf]}, {inf: 1, -inf: 2, nan: 3, 1.5: 4}])
    assert data == '[null,null,null,{"k":[null]},{"Infinity":1,"-Infinity":2,"NaN":3,"1.5":4}]'


@pytest.mark.parametrize(
    ("payload", "attachments"),
    [
        ([ph(1)], [b"a"]),  # past the end
        ([ph(-1)], [b"a"]),
        ([{"_placeholder": True, "num": "0"}], [b"a"]),
        ([{"_placeholder": True, "num": True}], [b"a", b"b"]),  # a bool is not a number in JavaScript either
        ([{"_placeholder": True}], [b"a"]),
        ([{"_placeholder": True, "num": 0.5}], [b"a"]),
        (["deep", {"a": [[ph(3)]]}], [b"a", b"b", b"c"]),
    ],
)
def test_bad_placeholders_raise(payload: list[Any], attachments: list[bytes]) -> None:
    with pytest.raises(BadAttachments):
        decode_args(json.dumps(payload), attachments)


def test_placeholders_are_read_as_socket_io_parser_reads_them() -> None:
    # Any object with "_placeholder": true is one, whatever else it holds; a number written as 1.0 is 1.
    attachments = [b"a", b"b"]
    got = decode_args(
        json.dumps([{"_placeholder": True, "num": 1.0, "extra": 1}, {"_placeholder": 1, "num": 0}]), attachments
    )
    assert got == [b"b", {"_placeholder": 1, "num": 0}]
    # Unused attachments are allowed, and a packet without attachments keeps placeholder-like objects as they are.
    assert decode_args(json.dumps(["x", ph(0)]), [b"a", b"unused"]) == ["x", b"a"]
    assert decode_args(json.dumps(["x", ph(5)]), None) == ["x", ph(5)]


def test_decode_wants_an_array() -> None:
    with pytest.raises(ValueError):
        decode_args('{"a":1}', None)
    with pytest.raises(ValueError):
        decode_args("[", None)


# --- the Rust encoder against Python's json ------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5) | st.booleans() | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=5))
def test_encoded_json_reads_back_as_pythons_json_writes_it(args: list[Any]) -> None:
    data, attachments = encode_args(args)
    assert attachments == []
    assert json.loads(data) == json.loads(json.dumps(args, allow_nan=False))


def test_what_json_has_no_type_for_goes_through_to_jsonable() -> None:
    class Color(enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 2

    class Name(str):
        pass

    data, _ = encode_args([Color.RED, Level.HIGH, (1, 2), frozenset({3}), {Color.RED: 1}, Name("n")])
    assert json.loads(data) == ["red", 2, [1, 2], [3], {"red": 1}, "n"]


def test_refused_as_json_dumps_refuses() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for bad, error in [
        (cyclic, ValueError),
        ({object(): 1}, TypeError),
    ]:
        with pytest.raises(error):
            encode_args(["x", bad])


def test_lone_surrogates_go_out_escaped() -> None:
    data, _ = encode_args(["a\ud800b", {"k\udc00": 1}])
    assert data == '["a\\ud800b",{"k\\udc00":1}]'


def test_numbers_are_read_as_json_parse_reads_them() -> None:
    huge = "9" * 5000  # past Python's int/str limit: a float, as JSON.parse gives every number
    assert decode_args(f"[1e400,-1e400,{huge},-{huge},{'9' * 400}]", None) == [
        math.inf,
        -math.inf,
        math.inf,
        -math.inf,
        int("9" * 400),
    ]
    # Through Python's reader too (pydantic's refuses the lone surrogate).
    assert decode_args(f'["\\ud800",1e400,{huge}]', None) == ["\ud800", math.inf, math.inf]


def test_nesting_past_what_python_reads_is_undecodable() -> None:
    assert decode_args("[" * 500 + "]" * 500, None) != []
    with pytest.raises(Undecodable):
        decode_args("[" * 100_000 + "]" * 100_000, None)
