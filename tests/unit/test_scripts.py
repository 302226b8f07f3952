"""scripts/venv.sh and scripts/test.sh in a scratch copy of the build files, with pip, cargo and the linters
replaced by stand-ins that log their calls (the fuzzing script too): the extension is rebuilt only when Rust or the
build files changed, and ``--quick`` runs pytest alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Logs its name and arguments; `python -c "import anysio._native"` succeeds; the rest runs the real python.
FAKE_PYTHON = f"""#!/bin/sh
echo "python $*" >> "$LOG"
case "$*" in
  "-c import anysio._native" | "-m pytest"* | "-m mypy.stubtest"* | "bench/run.py"* | "bench/client.py"*) exit 0 ;;
esac
exec {sys.executable} "$@"
"""
LOGGER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$LOG"\n'


def scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / "rust").mkdir(parents=True)
    (repo / "scripts").mkdir()
    for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    (repo / "rust" / "lib.rs").write_text("// lib\n")
    for name in ("venv.sh", "test.sh"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    for name in ("setup-system-deps.sh", "setup-node-deps.sh", "fuzz.sh"):
        (repo / "scripts" / name).write_text(LOGGER)
        (repo / "scripts" / name).chmod(0o755)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    (bin_dir / "python").write_text(FAKE_PYTHON)
    for tool in ("pip", "cargo", "ruff", "mypy", "lint-imports", "mkdocs"):
        (bin_dir / tool).write_text(LOGGER)
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    env = {**os.environ, "LOG": str(tmp_path / "log"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("ANYSIO_REBUILD", None)
    return repo, env


def run(repo: Path, env: dict[str, str], script: str) -> list[str]:
    """Run a bash snippet in the scratch repository; the calls logged meanwhile."""
    log = Path(env["LOG"])
    log.unlink(missing_ok=True)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env, check=True, capture_output=True)
    return [line.rstrip() for line in log.read_text().splitlines()] if log.exists() else []


def builds(calls: list[str]) -> bool:
    return any(call.startswith("pip install -q -e .[") for call in calls)


def test_the_extension_is_rebuilt_only_when_rust_or_the_build_files_change(tmp_path: Path) -> None:
    repo, env = scratch(tmp_path)
    venv = ". scripts/venv.sh && anysio_venv chat,trio"
    first = run(repo, env, venv)
    assert builds(first) and "pip install -q -e .[chat,trio]" in first
    # Nothing changed: no build, only the extras' requirements (which pip leaves alone when present).
    again = run(repo, env, venv)
    assert not builds(again)
    assert [c for c in again if c.startswith("pip")] == ["pip install -q trio>=0.25"]
    (repo / "rust" / "lib.rs").write_text("// changed\n")
    assert builds(run(repo, env, venv))
    assert not builds(run(repo, env, venv))
    (repo / "Cargo.lock").write_text((repo / "Cargo.lock").read_text() + "\n")
    assert builds(run(repo, env, venv))
    assert builds(run(repo, {**env, "ANYSIO_REBUILD": "1"}, venv))


def test_quick_runs_pytest_alone(tmp_path: Path) -> None:
    repo, env = scratch(tmp_path)
    run(repo, env, "scripts/test.sh")  # the first build
    full = run(repo, env, "scripts/test.sh -k x")
    assert not builds(full)
    for tool in (
        "cargo fmt --check",
        "ruff check .",
        "mypy",
        "lint-imports",
        "mkdocs build --strict",
        "python bench/run.py --smoke",
        "python bench/client.py --smoke",
        "fuzz.sh 15",
    ):
        assert tool in full, full
    assert full[-1] == "python -m pytest -q -k x"
    quick = run(repo, env, "scripts/test.sh --quick -k x")
    assert not builds(quick)
    assert [c for c in quick if c.split()[0] in ("cargo", "ruff", "mypy", "lint-imports", "mkdocs")] == []
    assert not [c for c in quick if "bench" in c or "stubtest" in c or "fuzz" in c]
    assert quick[-1] == "python -m pytest -q -k x"
