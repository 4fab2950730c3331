"""Test support lives in modules made for it (tests/support and each tier's helpers):
no file under tests/ or bench/ imports a test module (`test_*`) or a conftest.

pytest loads those itself; importing one as a Python module runs it a second time under
another name, couples one test file to another's internals, and hides what is shared.
Fixtures are still defined in conftests; only importing them as modules is refused.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tests", "bench")


def _forbidden(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def forbidden_imports(source: str, filename: str = "<source>") -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a conftest or test module in `source`."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden(alias.name):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module and _forbidden(node.module):
                yield node.lineno, base
            for alias in node.names:  # `from tests.unit import test_check`
                if _forbidden(alias.name):
                    yield node.lineno, f"{base}.{alias.name}" if node.module else base + alias.name


def python_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def test_the_scan_sees_the_tiers() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in python_files()}
    assert {"tests/conftest.py", "tests/support/servers.py", "bench/procs.py"} <= names
    assert len(names) > 100


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            "from tests.component.gate.conftest import Scratch",
            [(1, "tests.component.gate.conftest")],
        ),
        ("from tests.unit.test_check import ROOT", [(1, "tests.unit.test_check")]),
        ("import tests.reliability.conftest", [(1, "tests.reliability.conftest")]),
        ("import tests.unit.test_check as tc", [(1, "tests.unit.test_check")]),
        ("from tests.unit import test_check", [(1, "tests.unit.test_check")]),
        ("from . import conftest", [(1, ".conftest")]),
        ("from .test_sources import read", [(1, ".test_sources")]),
        ("def f():\n    from tests.node.conftest import _IDS", [(2, "tests.node.conftest")]),
        ("from tests.support import ddl\nimport tests.server", []),
        ("from tests.e2e.harness import Kubectl", []),
        ("from tests.support.testing_tools import x", []),
    ],
)
def test_the_check_finds_what_it_should(source: str, found: list[tuple[int, str]]) -> None:
    assert list(forbidden_imports(source)) == found


def test_no_file_imports_a_test_module_or_a_conftest() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in python_files()
        for line, module in forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    ]
    assert offences == [], (
        "move what is shared into tests/support (or the tier's helper module):\n"
        + "\n".join(offences)
    )
