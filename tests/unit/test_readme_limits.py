"""The README's "Limits" table stays tested: every row names at least one test, and each named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def limits_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header, rule, *body = rows
    assert header.split("|")[-2].strip() == "tested by" and set(rule) <= set("| -:")
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in body]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_limit_names_tests_that_exist() -> None:
    rows = limits_rows()
    assert len(rows) >= 10
    for row in rows:
        named = re.findall(r"`([\w/]+\.(?:py|rs))::(\w+)`", row[-1])
        assert named, f"no test named for {row[0]!r}"
        for path, name in named:
            file = ROOT / path
            assert file.is_file(), path
            if path.endswith(".py"):
                assert name in defined_tests(file), f"{path}::{name} (for {row[0]!r})"
            else:
                assert re.search(rf"^\s*fn {name}\(", file.read_text(encoding="utf-8"), re.M), f"{path}::{name}"
