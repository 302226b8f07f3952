"""HTTP as the application sees it: the request that opened a session, and static files for requests outside
the Socket.IO path (the chat demo's page, a client bundle)."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import anyio

if TYPE_CHECKING:
    from .._native import RequestTuple

logger = logging.getLogger("anysio")

Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Request:
    """The HTTP request that opened a session (the seed's ``Request()``, Node's ``socket.request``)."""

    method: str
    path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]
    remote: tuple[str, int] | None
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parsed = {k: v[0] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}
        object.__setattr__(self, "query", parsed)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @classmethod
    def from_tuple(cls, t: RequestTuple) -> Request:
        method, path, query, headers, remote = t
        return cls(method, path, query, tuple(headers), remote)


def _not_found() -> Response:
    return 404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found"


class StaticFiles:
    """Maps URL prefixes to directories (or single files). Paths never leave their directory."""

    def __init__(self, mounts: Mapping[str, str | Path]) -> None:
        # Longest prefix first, so "/static/x" wins over "/".
        self.mounts = sorted(((p, Path(d).resolve()) for p, d in mounts.items()), key=lambda m: -len(m[0]))

    def resolve(self, url_path: str) -> Path | None:
        for prefix, root in self.mounts:
            if not url_path.startswith(prefix):
                continue
            if root.is_file():
                return root if url_path == prefix else None
            rest = url_path[len(prefix) :].lstrip("/") or "index.html"
            target = (root / rest).resolve()
            if target.is_relative_to(root) and target.is_file():
                return target
            return None
        return None

    async def respond(self, method: str, url_path: str) -> Response:
        """The answer to a request; never raises, so every request is answered."""
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD")], b""
        try:
            target = self.resolve(url_path)
            if target is None:
                return _not_found()
            body = await anyio.Path(target).read_bytes()
        except (OSError, ValueError) as e:
            # What the file system refuses (a name over 255 bytes, a NUL byte, a file gone or unreadable) is
            # as absent as a file that does not exist.
            logger.info("static file %.100r not served: %s", url_path, e)
            return _not_found()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        return 200, [("Content-Type", ctype), ("Cache-Control", "no-cache")], b"" if method == "HEAD" else body
