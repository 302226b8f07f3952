"""Static files for requests outside the Socket.IO path (the chat demo's page, a client bundle)."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path

import anyio

Response = tuple[int, list[tuple[str, str]], bytes]


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
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD")], b""
        target = self.resolve(url_path)
        if target is None:
            return _not_found()
        body = await anyio.Path(target).read_bytes()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        return 200, [("Content-Type", ctype), ("Cache-Control", "no-cache")], b"" if method == "HEAD" else body
