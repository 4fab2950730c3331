"""A fresh, empty database per test on each engine: the session's PostgreSQL and MariaDB
servers (tests/conftest.py) and a SQLite file in the test's tmp. The `scratch` fixture
(tests/component/conftest.py) makes one per engine with `new_scratch`."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import MariaDBServer, PostgresServer

ENGINES = ("postgresql", "mariadb", "sqlite")


@dataclass
class Scratch:
    """An empty database on one engine: its webhook URL and a way to run setup SQL."""

    engine: str
    dialect: str  # the source's dialect: postgresql, mysql or sqlite
    name: str
    url: str
    connect: Callable[[], Any]

    def run(self, *statements: str) -> None:
        conn = self.connect()
        try:
            for sql in statements:
                conn.cursor().execute(sql)
        finally:
            conn.close()

    @contextlib.contextmanager
    def locked(self, table: str) -> Iterator[None]:
        """Hold a lock that blocks every reader of `table` until the block ends."""
        conn = self.connect()
        try:
            if self.engine == "postgresql":
                conn.autocommit = False
                conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            elif self.engine == "mariadb":
                conn.cursor().execute(f"LOCK TABLES `{table}` WRITE")
            else:
                conn.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            conn.close()  # ends the transaction, releasing the lock


def new_scratch(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Scratch:
    """An empty database on `engine`; the servers are the session fixtures `postgres` and
    `mariadb`, asked for only when the engine needs them."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if engine == "postgresql":
        pg: PostgresServer = request.getfixturevalue("postgres")
        pg.create_database(name)
        return Scratch(engine, "postgresql", name, pg.url(name), lambda: pg.connect(name))
    if engine == "mariadb":
        my: MariaDBServer = request.getfixturevalue("mariadb")
        my.create_database(name)
        return Scratch(engine, "mysql", name, my.url(name), lambda: my.connect(name))
    path = tmp_path / f"{name}.db"
    sqlite3.connect(path).close()
    return Scratch(
        engine,
        "sqlite",
        name,
        f"sqlite://{path}",
        lambda: sqlite3.connect(path, isolation_level=None),
    )
