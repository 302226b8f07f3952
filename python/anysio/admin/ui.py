"""The Admin UI's static app, served by anysio: ``ui/dist`` of the npm package ``@socket.io/admin-ui``, with the
two stylesheets its index.html loads from CDNs replaced by a local copy (the icons of ``@mdi/font``) or left
out (Roboto: the system's sans-serif stands in)."""

from __future__ import annotations

import re
from pathlib import Path

_ROBOTO = re.compile(r'<link rel="?stylesheet"? href="?https://fonts\.googleapis\.com/[^>]*>')
_ICONS = re.compile(r'<link rel="?stylesheet"? href="?https://cdn\.jsdelivr\.net/npm/@mdi/font[^>]*>')
_ICONS_CSS = "mdi/css/materialdesignicons.min.css"


def ui_files(node_modules: str | Path, prefix: str) -> dict[str, Path | bytes]:
    """The mounts that serve the UI at ``prefix`` + "/" from a ``node_modules`` directory where
    ``npm install @socket.io/admin-ui @mdi/font`` put them. ValueError when the UI is not there."""
    root = Path(node_modules)
    dist = root / "@socket.io" / "admin-ui" / "ui" / "dist"
    if not (dist / "index.html").is_file():
        raise ValueError(f"no Admin UI in {root}: `npm install @socket.io/admin-ui @mdi/font` there first")
    icons = root / "@mdi" / "font"
    index = _ROBOTO.sub("", (dist / "index.html").read_text(encoding="utf-8"))
    index = _ICONS.sub(f'<link rel="stylesheet" href="{_ICONS_CSS}">' if icons.is_dir() else "", index)
    prefix = prefix.rstrip("/")
    page = index.encode()
    mounts: dict[str, Path | bytes] = {prefix + "/": page, prefix + "/index.html": page, prefix: dist}
    if icons.is_dir():
        mounts[prefix + "/mdi"] = icons
    return mounts
