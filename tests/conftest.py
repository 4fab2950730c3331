"""Fixtures shared by every tier."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.files import issue_to_dir
from tests.support import compiled, summary
from tests.support.servers import MariaDBServer, PostgresServer
from webhook import accesslog, logs

# Seconds spent per tier (tests/<tier>/...): setup, call and teardown, session fixtures
# included (they are charged to the test that first or last uses them).
TIER_SECONDS: dict[str, float] = {}
# The tiers that run a cluster wait on it more than they compute: each has a
# pytest-xdist worker of its own (`-n 3 --dist loadgroup`), the other tiers share one.
CLUSTER_TIERS = ("e2e", "node")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(compiled.EXPECT_ENV) == "1":
        import webhook.decide  # a module of the compiled core (setup.py)

        if not webhook.decide.__file__ or not webhook.decide.__file__.endswith(".so"):
            raise pytest.UsageError(
                f"{compiled.EXPECT_ENV}=1 but webhook.decide is {webhook.decide.__file__}, not the "
                "compiled extension: put the tree first on PYTHONPATH, --import-mode=append"
            )
    if not hasattr(config, "workerinput"):  # the controlling process: workers inherit it
        folder = Path(tempfile.mkdtemp(prefix="schemagate-summary-"))
        os.environ[summary.ENV] = str(folder / "summary.jsonl")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item.nodeid)
        lane = tier if tier in CLUSTER_TIERS else "local"
        item.add_marker(pytest.mark.xdist_group(lane))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tier = _tier(report.nodeid)
    if tier:
        TIER_SECONDS[tier] = TIER_SECONDS.get(tier, 0.0) + report.duration


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if hasattr(config, "workerinput"):  # a worker: the other lane may still be recording
        return
    path = Path(os.environ.get(summary.ENV, "/nonexistent"))
    for title, lines in summary.sections(path).items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
    shutil.rmtree(path.parent, ignore_errors=True)
    if TIER_SECONDS:
        terminalreporter.write_sep("-", "time per tier (summed over the lanes)")
        for tier, seconds in sorted(TIER_SECONDS.items()):
            terminalreporter.write_line(f"{tier:<14} {seconds:8.1f} s")


def _tier(nodeid: str) -> str | None:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else None


@pytest.fixture(autouse=True)
def _process_logging_undone() -> Iterator[None]:
    """A command run in-process (`main(["check", ...])`) sets up logging for a whole
    process: the root level (`check` sets error), its JSON handler and the admission
    line's sink. Undo that after each test, so a later test's caplog sees what it logs
    whatever ran before it."""
    root = logging.getLogger()
    level = root.level
    yield
    accesslog.uninstall()
    root.handlers[:] = [h for h in root.handlers if type(h).__module__ != logs.__name__]
    root.setLevel(level)


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
