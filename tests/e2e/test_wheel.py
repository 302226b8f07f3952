"""The release wheel as a user gets it: built by ``scripts/build-wheel.sh`` (the README's command), checked for what
a release wheel must carry, installed with its dependencies into a fresh virtual environment whose PATH has no Rust
toolchain, and the echo example served from there (the installed ``anysio`` command) to the official Node client,
on asyncio and on trio.

The build is cargo's release profile: a minute or two from a cold target directory, seconds when only packaging
is left to do. Every step has a deadline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest

from .test_cli import serving
from .test_examples import check_echo_clients

ROOT = Path(__file__).resolve().parents[2]
BUILD_DEADLINE = 900  # a cold release build (thin LTO, one codegen unit) on a busy 2-core machine
INSTALL_DEADLINE = 300
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    env: dict[str, str]  # PATH: the fresh environment's bin, then the system's folders that hold no Rust tool


def without_rust(path: str) -> list[str]:
    """The folders of ``path`` that hold no cargo, rustc or rustup."""
    return [
        d for d in path.split(os.pathsep) if d and not any(Path(d, t).exists() for t in ("cargo", "rustc", "rustup"))
    ]


def run(argv: list[str | Path], deadline: float, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run to the end within ``deadline``; status 0 asserted; stdout and stderr together."""
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=deadline,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: status {done.returncode}\n{done.stdout}"
    return done.stdout


@pytest.fixture(scope="module")
def built() -> Path:
    """scripts/build-wheel.sh, run as the README says; the one wheel it left in dist/."""
    out = run([ROOT / "scripts" / "build-wheel.sh"], BUILD_DEADLINE)
    (wheel,) = (ROOT / "dist").glob("anysio-*.whl")
    (sdist,) = (ROOT / "dist").glob("anysio-*.tar.gz")
    assert f"{wheel.relative_to(ROOT)}: " in out and f"{sdist.relative_to(ROOT)}: " in out  # sizes printed
    return wheel


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtual environment with the wheel and its dependencies (the trio extra too), all installed from
    wheels, with no Rust on PATH."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    run([sys.executable, "-m", "venv", venv], INSTALL_DEADLINE)
    path = os.pathsep.join([str(venv / "bin"), *without_rust(os.environ.get("PATH", ""))])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env |= {"PATH": path, "PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--only-binary=:all:"]
    run([*pip, f"{built}[trio]"], INSTALL_DEADLINE, env=env, cwd=venv.parent)
    return Installed(built, venv, env)


def test_wheel_is_abi3_stripped_and_complete(built: Path, tmp_path: Path) -> None:
    """One wheel for CPython 3.11 and later (the stable ABI, checked symbol by symbol by abi3audit), without debug
    info, with the stub, py.typed, the license and complete metadata."""
    assert built.name.startswith(f"anysio-{VERSION}-cp311-abi3-")
    with zipfile.ZipFile(built) as wheel:
        names = set(wheel.namelist())
        info = f"anysio-{VERSION}.dist-info"
        assert {"anysio/py.typed", "anysio/_native.pyi", "anysio/_native.abi3.so", f"{info}/licenses/LICENSE"} <= names
        assert not any(n.endswith((".c", ".rs")) or "/tests/" in n for n in names)
        native = Path(wheel.extract("anysio/_native.abi3.so", tmp_path))
        metadata = HeaderParser().parsestr(wheel.read(f"{info}/METADATA").decode())
    # Stripped: no debug info, no symbol table (binutils' readelf: the linker's companion, there wherever Rust links).
    sections = run(["readelf", "--section-headers", "--wide", native], INSTALL_DEADLINE)
    assert ".dynsym" in sections and ".debug_" not in sections and ".symtab" not in sections
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"].startswith("text/markdown")
    assert "A Socket.IO server for Python" in (metadata.get_payload() or "")  # the README
    classifiers = metadata.get_all("Classifier") or []
    assert {"Typing :: Typed", "Framework :: AnyIO", "Framework :: Trio", "Programming Language :: Rust"} <= set(
        classifiers
    )
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    abi3audit: list[str | Path] = [Path(sys.executable).parent / "abi3audit", "--strict", "--summary", built]
    audit = run(abi3audit, INSTALL_DEADLINE)
    assert "0 ABI version mismatches and 0 ABI violations found" in " ".join(audit.split())


def test_installed_wheel_imports_from_its_environment(installed: Installed) -> None:
    """anysio comes from the fresh environment's site-packages, not from this checkout, at the wheel's version."""
    out = run(
        [
            installed.venv / "bin" / "python",
            "-c",
            "import anysio._native as n, anysio; print(anysio.__version__, n.__file__)",
        ],
        INSTALL_DEADLINE,
        env=installed.env,
        cwd=installed.venv.parent,
    )
    version, native = out.split()
    assert version == VERSION
    assert Path(native).is_relative_to(installed.venv) and native.endswith("_native.abi3.so")


async def test_installed_wheel_serves_the_echo_example(installed: Installed, anyio_backend: str) -> None:
    """examples/echo.py, served by the installed ``anysio run`` on the test's backend, meets the official client."""
    argv = [installed.venv / "bin" / "anysio", "run", "echo:sio", "--app-dir", ROOT / "examples", "--port", "0"]
    cmd = [str(a) for a in [*argv, "--backend", anyio_backend]]
    async with serving(cmd, cwd=installed.venv.parent, env=installed.env) as (address, out):
        await check_echo_clients(address)
    assert any("listening on http://127.0.0.1:" in line for line in out.lines)
