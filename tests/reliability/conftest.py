"""The reliability tier: `schemagate serve` processes over real TLS, a real PostgreSQL,
load while things break, hostile clients. Every webhook started here logs into the tier's
transcript, which test_zz_secrets.py greps for the database password at the end."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.component.gate import ddl
from tests.component.gate.servers import PostgresServer
from tests.reliability.harness import TRANSCRIPT
from tests.server import Served, start


@dataclass(frozen=True)
class Database:
    """A fresh PostgreSQL database whose flyway_schema_history records version 3."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)


@pytest.fixture
def orders(postgres: PostgresServer) -> Database:
    return make_orders(postgres)


def make_orders(postgres: PostgresServer) -> Database:
    name = f"rel_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)
    with postgres.connect(name) as conn:
        for sql in (
            *ddl.flyway("postgresql"),
            ddl.flyway_row(1, "1", "create orders"),
            ddl.flyway_row(2, "2", "add status"),
            ddl.flyway_row(3, "3", "add index"),
        ):
            conn.execute(sql)
    return Database(postgres, name)


def gate_config(
    *, policy: str = "closed", timeout: float = 1.0, ttl: float = 1.0, extra: str = ""
) -> str:
    return (
        "databases:\n"
        "  orders: {url_env: ORDERS_DATABASE_URL, tool: flyway, namespaces: ['*']}\n"
        f"{extra}"
        f"lookup: {{timeout_seconds: {timeout}, cache_ttl_seconds: {ttl}}}\n"
        f"on_unreachable: {policy}\n"
    )


Launch = Callable[..., Served]


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
