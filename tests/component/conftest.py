"""Fixtures of the component tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scratch import ENGINES, Scratch, new_scratch


@pytest.fixture(params=ENGINES)
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Scratch:
    """A fresh, empty database per test on each engine (PostgreSQL, MariaDB, SQLite), for
    the gate's sources (tests/component/gate) and the real tools (tests/component/tools)."""
    return new_scratch(request.param, request, tmp_path)
