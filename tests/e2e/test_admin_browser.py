"""The official Admin UI (ui/dist of @socket.io/admin-ui 0.5, served by anysio at /admin-ui/) in Debian's Chromium,
headless (driven by playwright-core through tests/browser/driver.mjs), on asyncio and trio: log in, see the sockets
of the clients the test connected, disconnect one from the UI, and see that client disconnected.

Set ANYSIO_ADMIN_SCREENSHOT=docs/admin-ui.png to write the README's picture (the sockets page)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.e2e.sio_helpers import ROOT, node_sio, serving
from tests.e2e.test_admin import PASSWORD, app, bcryptjs_hash
from tests.e2e.test_chat_browser import Browser
from tests.e2e.test_chat_browser import browser as browser  # the fixture
from tests.e2e.test_chat_terminal import DEADLINE

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def field(label: str) -> str:
    """The input of a Vuetify text field, by its label."""
    return f'xpath=//label[normalize-space()="{label}"]/following-sibling::input'


async def test_log_in_see_sockets_and_disconnect_one(browser: Browser, anyio_backend: str, tmp_path: Path) -> None:
    auth = {"type": "basic", "username": "admin", "password": bcryptjs_hash(PASSWORD)}
    sio = app(auth=auth, ui=ROOT / "tests" / "node" / "node_modules")
    async with (
        serving(sio) as address,
        node_sio(address) as alice,
        node_sio(address) as carol,
        node_sio(address, nsp="/chat") as bob,
    ):
        url = f"http://{address[0]}:{address[1]}"
        alice_id, carol_id = alice.all("connect")[0]["id"], carol.all("connect")[0]["id"]
        bob_id = bob.all("connect")[0]["id"]
        wide = {"width": 1400, "height": 760}  # wide enough for the UI to show its navigation drawer
        await browser("open", url=url + "/admin-ui/", userDataDir=str(tmp_path / "chromium-profile"), viewport=wide)
        await browser("fill", selector=field("Server URL"), value=url)
        await browser("fill", selector=field("Username"), value="admin")
        await browser("fill", selector=field("Password"), value=PASSWORD)
        await browser("click", selector="button[type=submit]")

        await browser("goto", url=url + "/admin-ui/#/sockets/")
        await browser("waitText", selector="main", text=alice_id, timeout=DEADLINE * 1000)
        await browser("waitText", selector="main", text=carol_id, timeout=DEADLINE * 1000)
        await browser("goto", url=url + "/admin-ui/#/servers/")
        await browser("waitText", selector="main", text=socket.gethostname(), timeout=DEADLINE * 1000)
        await browser("goto", url=url + "/admin-ui/#/")
        await browser("waitText", selector="main", text="/chat", timeout=DEADLINE * 1000)
        shot = tmp_path / "admin-ui.png"
        await browser("screenshot", path=str(shot))
        assert shot.stat().st_size > 10_000
        target = os.environ.get("ANYSIO_ADMIN_SCREENSHOT")
        if target and anyio_backend == "asyncio":
            shutil.copyfile(shot, ROOT / target)

        # Disconnect alice from the sockets page (the button of her row); carol and bob (in /chat) stay.
        await browser("goto", url=url + "/admin-ui/#/sockets/")
        await browser("waitText", selector="main", text=alice_id, timeout=DEADLINE * 1000)
        await browser("click", selector=f'xpath=//tr[td[normalize-space()="{alice_id}"]]//button')
        assert (await alice.expect("disconnect"))["reason"] == "io server disconnect"
        # The click reaches the row too, which opens the socket's page: it shows her disconnected.
        await browser("waitText", selector="main", text="DISCONNECTED", timeout=DEADLINE * 1000)
        await browser("goto", url=url + "/admin-ui/#/sockets/")
        await browser("waitText", selector="main", text=carol_id, timeout=DEADLINE * 1000)
        await browser("waitGone", selector="main", text=alice_id, timeout=DEADLINE * 1000)
        assert await carol.call("echo", "still here") == ["still here"]
        assert await bob.call("echo", "still here") == ["still here"]
        assert bob_id in [s.id for s in sio.of("/chat").sockets.values()]
        # Every file the UI asked for was there (no CDN: nothing left the machine), and no script failed.
        assert await browser("problems") == []
