"""The reliability tier: `schemagate serve` processes over real TLS, a real PostgreSQL,
load while things break, hostile clients. Every webhook started here logs into the tier's
transcript, which test_zz_secrets.py greps for the database password at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import TRANSCRIPT, Database, Launch, make_orders
from tests.server import Served, start
from tests.support.servers import PostgresServer


@pytest.fixture
def orders(postgres: PostgresServer) -> Database:
    return make_orders(postgres)


@pytest.fixture
def launch(tls_dir: Path, tmp_path: Path) -> Iterator[Launch]:
    """Start `schemagate serve` processes; each is stopped (SIGTERM) at the end if still
    running, and must then exit 0."""
    started: list[Served] = []

    def run(
        config: str,
        *,
        env: dict[str, str] | None = None,
        tls: Path | None = None,
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> Served:
        index = len(started)
        path = tmp_path / f"config-{index}.yaml"
        path.write_text(config)
        log = tmp_path / f"serve-{index}.log"
        TRANSCRIPT.logs.append(log)
        served = start(path, tls or tls_dir, log, env=env, extra=extra, port=port)
        started.append(served)
        return served

    yield run
    running = [s for s in started if s.proc.poll() is None]
    assert {s.log.name: s.stop() for s in running} == {s.log.name: 0 for s in running}
