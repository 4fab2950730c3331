"""Fixtures shared by every tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.files import issue_to_dir
from tests.component.gate.servers import PostgresServer


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a serving certificate for localhost / 127.0.0.1, as `certs issue` writes them."""
    out = tmp_path_factory.mktemp("tls")
    issue_to_dir(out, ["localhost"], ["127.0.0.1"])
    return out


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL for the whole run; each test tier makes its own databases."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
