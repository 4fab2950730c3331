"""Fixtures shared by every tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.files import issue_to_dir
from tests.component.gate.servers import MariaDBServer, PostgresServer

# Seconds spent per tier (tests/<tier>/...): setup, call and teardown, session fixtures
# included (they are charged to the test that first or last uses them).
TIER_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    parts = report.nodeid.split("/")
    if len(parts) > 2 and parts[0] == "tests":
        TIER_SECONDS[parts[1]] = TIER_SECONDS.get(parts[1], 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIER_SECONDS:
        terminalreporter.write_sep("-", "time per tier")
        for tier, seconds in TIER_SECONDS.items():
            terminalreporter.write_line(f"{tier:<14} {seconds:8.1f} s")


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


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """One throwaway MariaDB for the whole run, with the account the webhook uses."""
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    try:
        server.start()
        server.add_user()
        yield server
    finally:
        server.close()
