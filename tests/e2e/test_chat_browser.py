"""The chat page in Debian's Chromium (headless, driven by playwright-core) with a terminal participant in tmux.

The host runs headless on the test's backend and serves the page and the socket.io client bundle itself. Set
ANYSIO_CHAT_SCREENSHOT=docs/chat.png to write the README's picture: the page beside the terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.e2e.test_chat_terminal import DEADLINE, ROOT, Tmux, received, start_host, start_join
from tests.e2e.test_chat_terminal import tmux as tmux  # the fixture

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_DIR = ROOT / "tests" / "browser"
# scripts/test.sh installs tmux, chromium and playwright-core; without them these tests fail, never skip.
pytestmark = [
    pytest.mark.e2e,
]


class Browser:
    """tests/browser/driver.mjs: one JSON command a line in, one JSON answer a line out."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)

    async def __call__(self, op: str, timeout: float = DEADLINE, **args: Any) -> Any:
        await self.stdin.send(json.dumps({"op": op, **args}).encode() + b"\n")
        with anyio.fail_after(timeout):
            answer = json.loads(await self.stdout.receive_until(b"\n", 1 << 20))
        if not answer["ok"]:
            raise AssertionError(f"browser {op} {args}: {answer['error']}")
        return answer["value"]

    async def wait_text(self, text: str, selector: str = "#log") -> None:
        await self("waitText", selector=selector, text=text, timeout=DEADLINE * 1000)

    async def say(self, line: str) -> None:
        await self("fill", selector="#message", value=line)
        await self("press", selector="#message", key="Enter")


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    process = await anyio.open_process(
        ["node", str(BROWSER_DIR / "driver.mjs")],
        cwd=BROWSER_DIR,
        stderr=None,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    driver = Browser(process)
    try:
        yield driver
    finally:
        with anyio.move_on_after(DEADLINE, shield=True):
            await driver.stdin.aclose()  # the driver closes Chromium at the end of its input
            await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()


@pytest.mark.anyio
async def test_page_with_a_terminal_participant(
    tmux: Tmux, browser: Browser, anyio_backend: str, tmp_path: Path
) -> None:
    host, url = await start_host(tmux, anyio_backend, "--headless")
    alice = await start_join(tmux, anyio_backend, url, "alice", "--room", "lobby")
    await tmux.wait_for(alice, r"^\* you joined lobby; members: alice$")

    await browser("open", url=url + "/", userDataDir=str(tmp_path / "chromium-profile"))
    await browser.wait_text("connected", selector="#status")
    await browser("fill", selector="#name", value="web")
    await browser("fill", selector="#room", value="lobby")
    await browser("click", selector="#join")
    await browser.wait_text("you joined lobby; members: alice, web")
    await tmux.wait_for(alice, r"^\* web joined lobby$")

    await browser.say("hello from the browser")
    await tmux.wait_for(alice, r"^\[lobby\] web: hello from the browser$")
    await tmux.type(alice, "hello from the terminal")
    await browser.wait_text("[lobby] alice: hello from the terminal")
    await browser.say("/who")
    await browser.wait_text("members of lobby: alice, web")

    # No console error and no failed request (a missing /favicon.ico is one in every browser).
    assert await browser("problems") == []
    with urllib.request.urlopen(url + "/favicon.ico", timeout=DEADLINE) as icon:
        assert icon.headers["Content-Type"] == "image/vnd.microsoft.icon" and icon.read(4) == b"\0\0\1\0"

    log = await browser("text", selector="#log")
    assert log.count("hello from the browser") == 1  # shown once, by the page itself: the server skips the sender
    assert "alice joined" not in log  # alice was there first
    assert await received(tmux, alice) == ["* web joined lobby", "[lobby] web: hello from the browser"]

    page_png = tmp_path / "page.png"
    await browser("screenshot", path=str(page_png))
    picture = tmp_path / "chat.png"
    terminal = "\n".join(line for line in (await tmux.lines(alice)) if line)
    title = "tmux: scripts/chat.sh join --name alice --room lobby"
    await browser("beside", path=str(picture), image=str(page_png), title=title, terminal=terminal)
    assert picture.stat().st_size > 10_000
    target = os.environ.get("ANYSIO_CHAT_SCREENSHOT")
    if target and anyio_backend == "asyncio":
        shutil.copyfile(picture, ROOT / target)

    # Leaving and coming back: notices both ways; the page's own leave is a /leave away.
    await browser("click", selector="#leave")
    await browser.wait_text("you left lobby")
    await tmux.wait_for(alice, r"^\* web left lobby$")
    await tmux.type(alice, "while the page is out")
    await browser("click", selector="#join")
    await tmux.wait_for(alice, r"^\* web joined lobby$", count=2)
    await tmux.type(alice, "/leave")
    await browser.wait_text("alice left lobby")
    assert "while the page is out" not in await browser("text", selector="#log")
    await tmux.type(alice, "/join lobby")
    await browser.wait_text("alice joined lobby")

    # Closing the page is a drop that the terminal hears of.
    await browser("close")
    await tmux.wait_for(alice, r"^\* web left lobby$", count=2)

    # The server going away is said on the page and in the terminal.
    await browser("open", url=url + "/", userDataDir=str(tmp_path / "chromium-profile-2"))
    await browser.wait_text("connected", selector="#status")
    await tmux.keys(host, "C-c")
    assert await tmux.exit_status(host) == 0
    await browser.wait_text("lost the connection to the server; reconnecting...")
    await browser.wait_text("disconnected", selector="#status")
    await tmux.wait_for(alice, r"^! lost the connection to the server; reconnecting\.\.\.$")
