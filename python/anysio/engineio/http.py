"""HTTP as the application sees it: the request that opened a session, and static files for requests outside
the Socket.IO path (the chat demo's page, a client bundle)."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable, Mapping
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
    """Maps URL prefixes to directories, single files, or contents held in memory (bytes: served at that exact
    path, with the type its name gives, HTML for a path that ends with "/"). Paths never leave their directory."""

    def __init__(self, mounts: Mapping[str, str | Path | bytes]) -> None:
        self.mounts: list[tuple[str, Path | bytes]] = []
        self.add(mounts)

    def add(self, mounts: Mapping[str, str | Path | bytes]) -> None:
        """Mount more (a prefix mounted again is replaced)."""
        kept = {p: root for p, root in self.mounts if p not in mounts}
        kept.update({p: d if isinstance(d, bytes) else Path(d).resolve() for p, d in mounts.items()})
        # Longest prefix first, so "/static/x" wins over "/".
        self.mounts = sorted(kept.items(), key=lambda m: -len(m[0]))

    def resolve(self, url_path: str) -> Path | bytes | None:
        for prefix, root in self.mounts:
            if not url_path.startswith(prefix):
                continue
            if isinstance(root, bytes) or root.is_file():
                if url_path == prefix:
                    return root
                continue  # a single file answers its own path only; a shorter prefix may serve this one
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
            body = target if isinstance(target, bytes) else await anyio.Path(target).read_bytes()
        except (OSError, ValueError) as e:
            # What the file system refuses (a name over 255 bytes, a NUL byte, a file gone or unreadable) is
            # as absent as a file that does not exist.
            logger.info("static file %.100r not served: %s", url_path, e)
            return _not_found()
        name = url_path if isinstance(target, bytes) else target.name
        ctype = mimetypes.guess_type(name)[0] or ("text/html" if name.endswith("/") else "application/octet-stream")
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        return 200, [("Content-Type", ctype), ("Cache-Control", "no-cache")], b"" if method == "HEAD" else body


async def serve_file(
    files: StaticFiles | None,
    respond: Callable[[int, int, list[tuple[str, str]], bytes], None],
    conn: int,
    request: Request,
) -> None:
    """Answer a request outside the Engine.IO path from ``files`` (404 without), through the core's ``respond``."""
    status, headers, body = await files.respond(request.method, request.path) if files is not None else _not_found()
    respond(conn, status, headers, body)
