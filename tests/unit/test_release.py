"""The release conventions (docs/releasing.md): one version, in Cargo.toml, semantic; a changelog in Keep a
Changelog's form; and the extension this checkout imports is the stable-ABI build the wheel ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import anysio
import anysio._native

ROOT = Path(__file__).resolve().parents[2]
SEMVER = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?"


def cargo_version() -> str:
    version: str = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    return version


def test_the_version_is_written_once_in_cargo_toml() -> None:
    assert re.fullmatch(SEMVER, cargo_version())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert anysio.__version__ == cargo_version()


def test_changelog_follows_keep_a_changelog() -> None:
    headings = re.findall(r"^## (.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == "[Unreleased]"
    released = [re.fullmatch(rf"\[({SEMVER})\] - (\d{{4}}-\d{{2}}-\d{{2}})", h) for h in headings[1:]]
    assert all(released), headings
    versions = [tuple(int(part) for part in m[1].split("-")[0].split(".")) for m in released if m]
    dates = [m[5] for m in released if m]
    assert versions == sorted(versions, reverse=True) and dates == sorted(dates, reverse=True)
    if versions:  # the next release is not older than the last one
        assert tuple(int(p) for p in cargo_version().split("-")[0].split(".")) >= versions[0]
    sections = re.findall(r"^### (.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert set(sections) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_extension_is_the_stable_abi_build() -> None:
    # An extension built for one interpreter would be imported before it: scripts/venv.sh removes such leftovers.
    assert anysio._native.__file__ is not None and anysio._native.__file__.endswith("_native.abi3.so")
