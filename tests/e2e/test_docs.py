"""Every code example of the documentation site (the pages in docs/, mkdocs.yml), run. The HTML comment after a
block says how (the site does not show it):

- ```python, then ``<!-- test: serve`` and Python statements: the block is loaded as a module, its ``sio`` served on
  127.0.0.1 on the test's backend, and the statements run against it as the body of an async function, with
  ``client(**options)`` (the official Node client connected to it: tests/e2e/sio_helpers.node_sio), ``sio``,
  ``module`` (the block's globals) and ``address`` in scope;
- ```python, then ``<!-- test: run`` and statements: the same without a server (``client`` and ``address`` are
  None);
- ```python, then ``<!-- test: raises Type: message -->``: running the block raises that exception, so worded;
- ```js (the official Node client) or ```python (python-socketio's client), then ``<!-- test: client`` and the
  lines the program prints: it runs against the page's last ``serve`` block above it, served anew, with the
  server's address in place of http://127.0.0.1:5000;
- a block that only includes an example file (``--8<-- "examples/echo.py"``) is tested where that file is tested
  (``INCLUDED``); it stands between ``<!-- fmt: off -->`` and ``<!-- fmt: on -->``, since ``ruff format`` checks
  the pages' Python blocks and an include is not Python; a ```json block must be JSON.

Tracebacks name the page and its line. The pages' shell commands (```sh) are run by test_readme_commands.py.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import anysio

from .sio_helpers import WAIT, Address, node_sio, serving

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md"))
EXAMPLE_URL = "http://127.0.0.1:5000"
# Example files a page shows whole, and the test that runs each (which names it).
INCLUDED = {
    "examples/echo.py": ("tests/e2e/test_examples.py", '"examples/echo.py"'),
    "examples/asgi_app.py": ("tests/e2e/test_asgi.py", '"asgi_app"'),
    "examples/cluster/app.py": ("tests/e2e/test_readme_commands.py", "--app-dir examples/cluster"),
}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n(?:\s*<!-- test: (\w+)(.*?)-->)?", re.M | re.S)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"\n$')


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the block's first code line
    lang: str
    code: str
    kind: str | None  # serve, raises, client; None: no test comment
    spec: str  # what follows the kind in the comment
    spec_line: int

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        spec_line = text.count("\n", 0, m.start(4)) + 1 if m[4] is not None else 0
        rel = str(page.relative_to(ROOT))
        found.append(Block(rel, line, m[1], m[2], m[3], m[4] or "", spec_line))
    return found


ALL = [b for page in PAGES for b in blocks(page)]


def of_kind(*kinds: str) -> list[Block]:
    return [b for b in ALL if b.kind in kinds]


def served_for(block: Block) -> Block:
    """The page's last ``serve`` block above ``block``."""
    above = [b for b in ALL if b.page == block.page and b.line < block.line and b.kind == "serve"]
    assert above, f"{block}: a client example needs a served example above it on its page"
    return above[-1]


def load(block: Block) -> ModuleType:
    """The block as a fresh module; its line numbers are the page's."""
    module = ModuleType(f"docs_example_{Path(block.page).stem.replace('-', '_')}_{block.line}")
    sys.modules[module.__name__] = module  # dataclasses resolve their string annotations through it
    if (include := INCLUDE.match(block.code)) is not None:
        exec(compile((ROOT / include[1]).read_text(), include[1], "exec"), module.__dict__)
    else:
        exec(compile("\n" * (block.line - 1) + block.code, block.page, "exec"), module.__dict__)
    return module


def scenario(block: Block) -> Callable[..., Any]:
    """The test comment's statements as ``async def scenario(sio, module, address, client)``."""
    body = textwrap.indent(textwrap.dedent(block.spec.strip("\n")), "    ") if block.spec.strip() else "    pass"
    source = "\n" * (block.spec_line - 1) + f"async def scenario(sio, module, address, client):\n{body}\n"
    namespace: dict[str, Any] = {"anyio": anyio, "anysio": anysio}
    exec(compile(source, block.page, "exec"), namespace)
    fn: Callable[..., Any] = namespace["scenario"]
    return fn


def test_every_example_is_tested() -> None:
    assert len(PAGES) >= 10 and of_kind("serve")
    for block in ALL:
        if block.lang == "json":
            json.loads(block.code)
        if block.lang not in ("python", "js"):
            continue
        if (include := INCLUDE.match(block.code)) is not None:
            assert include[1] in INCLUDED, f"{block}: {include[1]} is tested nowhere INCLUDED knows"
            test, mention = INCLUDED[include[1]]
            assert mention in (ROOT / test).read_text(), f"{test} does not run {include[1]} any more"
        else:
            assert block.kind in ("serve", "run", "raises", "client"), f"{block}: no <!-- test: ... --> after the block"
            assert block.kind != "client" or served_for(block)


@pytest.mark.parametrize("block", of_kind("serve"), ids=str)
async def test_served_example(block: Block, anyio_backend: str) -> None:
    module = load(block)
    async with serving(module.sio) as address:
        with anyio.fail_after(6 * WAIT):
            await scenario(block)(module.sio, module, address, partial(node_sio, address))


@pytest.mark.parametrize("block", of_kind("run"), ids=str)
async def test_run_example(block: Block, anyio_backend: str) -> None:
    module = load(block)
    with anyio.fail_after(6 * WAIT):
        await scenario(block)(getattr(module, "sio", None), module, None, None)


@pytest.mark.parametrize("block", of_kind("raises"), ids=str)
def test_raising_example(block: Block) -> None:
    with pytest.raises(Exception) as raised:
        load(block)
    assert f"{type(raised.value).__name__}: {raised.value}" == block.spec.strip()


async def run_client(block: Block, address: Address, folder: Path) -> list[str]:
    """The client example against ``address``; the lines it printed."""
    code = block.code.replace(EXAMPLE_URL, f"http://{address[0]}:{address[1]}")
    if block.lang == "js":
        # Node resolves socket.io-client from the folder's node_modules: the one tests/node installs.
        (folder / "node_modules").symlink_to(ROOT / "tests" / "node" / "node_modules")
        argv = ["node", str(folder / "example.mjs")]
        (folder / "example.mjs").write_text(code)
    else:
        argv = [sys.executable, str(folder / "example.py")]
        (folder / "example.py").write_text(code)
    with anyio.fail_after(3 * WAIT):
        done = await anyio.run_process(argv, cwd=folder, check=False)
    assert done.returncode == 0, f"{block}: status {done.returncode}\n{done.stderr.decode()}"
    return done.stdout.decode().splitlines()


@pytest.mark.parametrize("block", of_kind("client"), ids=str)
async def test_client_example(block: Block, anyio_backend: str, tmp_path: Path) -> None:
    module = load(served_for(block))
    async with serving(module.sio) as address:
        printed = await run_client(block, address, tmp_path)
    assert printed == [line.strip() for line in block.spec.strip("\n").splitlines()]
