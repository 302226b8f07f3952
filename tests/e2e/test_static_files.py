"""Files served beside the Socket.IO endpoint (``static_files=``): every request gets an answer, whatever its path,
and a bad path never holds the connection (it used to: a path segment over 255 bytes made the lookup raise, and
the request was never answered)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

import anysio

from .eio_helpers import HttpConn, closing_connections
from .sio_helpers import serving

pytestmark = pytest.mark.anyio


async def test_paths_the_file_system_refuses_are_answered_404(
    anyio_backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>hi</p>")
    sio = anysio.Server(static_files={"/": site})
    caplog.set_level(logging.INFO, logger="anysio")
    async with serving(sio) as address, closing_connections():
        conn = await HttpConn.open(address)
        with anyio.fail_after(5):
            for path in ["/" + "a" * 300, "/x/" + "b" * 4000 + "/c", "/%00", "/..%2f..%2fetc%2fpasswd"]:
                response = await conn.request("GET", path, headers=[("Host", "h")])
                assert response.status == 404, path
            # The same keep-alive connection still serves.
            ok = await conn.request("GET", "/", headers=[("Host", "h")])
            assert (ok.status, ok.body) == (200, b"<p>hi</p>")
