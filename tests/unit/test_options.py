"""A misspelt option is a TypeError naming it and the closest valid one, not a silently ignored keyword."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import anysio
import anysio.workers


def build(kind: str) -> Callable[..., Any]:
    kinds: dict[str, Callable[..., Any]] = {
        "Server": anysio.Server,
        "EngineServer": anysio.EngineServer,
        "ASGIApp": lambda **options: anysio.ASGIApp(anysio.Server(), **options),
        "workers.run": lambda **options: anysio.workers.run("unused:sio", **options),
    }
    return kinds[kind]


@pytest.mark.parametrize(
    ("kind", "option", "suggestion"),
    [
        ("Server", "ping_intervall", "ping_interval"),
        ("Server", "static_file", "static_files"),
        ("Server", "cors_allowed_origin", "cors_allowed_origins"),
        ("EngineServer", "max_paylod", "max_payload"),
        ("ASGIApp", "static_file", "static_files"),
        ("workers.run", "worker", "workers"),
    ],
)
def test_a_misspelt_option_names_the_closest_valid_one(kind: str, option: str, suggestion: str) -> None:
    with pytest.raises(TypeError) as caught:
        build(kind)(**{option: 5})
    assert str(caught.value) == f"unknown option '{option}' (did you mean '{suggestion}'?)"


def test_an_unknown_option_with_no_close_match_is_named_alone() -> None:
    with pytest.raises(TypeError) as caught:
        anysio.Server(bogus=1)  # type: ignore[call-arg]
    assert str(caught.value) == "unknown option 'bogus'"


def test_valid_options_still_work() -> None:
    sio = anysio.Server(ping_interval=5, cors_allowed_origins="*", static_files={})
    anysio.ASGIApp(sio, socketio_path="io")
    anysio.EngineServer(max_payload=10, path="/eio")


def test_an_unknown_parser_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r'unknown parser "json" \("default" or "msgpack"\)'):
        anysio.Server(parser="json")  # type: ignore[arg-type]
    assert anysio.Server(parser="msgpack") is not None
