"""Real sql-migrate (Debian package sql-migrate, installed by the test when missing)
migrates each engine; the gate reads what `sql-migrate status` reports. sql-migrate runs
each migration in a transaction and records only what succeeded, and takes no lock."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.component.tools import install
from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch

pytestmark = pytest.mark.component

MIGRATIONS = {
    "1_orders.sql": "CREATE TABLE orders (id INT PRIMARY KEY);",
    "2_invoices.sql": "CREATE TABLE invoices (id INT PRIMARY KEY);",
    "10_refunds.sql": "CREATE TABLE refunds (id INT PRIMARY KEY);",
    "11_broken.sql": "CREATE TABLE nonsense (;",
}


def config(scratch: Scratch, tmp_path: Path) -> Path:
    parts = urlsplit(scratch.url)
    password = unquote(parts.password or "")
    if scratch.engine == "postgresql":
        dialect = "postgres"
        source = (
            f"host=127.0.0.1 port={parts.port} user={parts.username} password='{password}' "
            f"dbname={parts.path.lstrip('/')} sslmode=disable"
        )
    elif scratch.engine == "mariadb":
        dialect = "mysql"
        source = (
            f"{parts.username}:{password}@tcp(127.0.0.1:{parts.port}){parts.path}?parseTime=true"
        )
    else:
        dialect, source = "sqlite3", scratch.url.removeprefix("sqlite://")
    path = tmp_path / "dbconfig.yml"
    # JSON is YAML: no quoting surprises with the awkward password.
    path.write_text(json.dumps({"test": {"dialect": dialect, "datasource": source,
                                         "dir": str(tmp_path / "migrations")}}))  # fmt: skip
    return path


def sql_migrate(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = install.apt_binary("sql-migrate", "sql-migrate")
    return subprocess.run(
        [binary, args[0], f"-config={cfg}", "-env=test", *args[1:]],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def applied(cfg: Path) -> list[str]:
    """The migration ids `sql-migrate status` shows with an applied time."""
    done = sql_migrate(cfg, "status")
    assert done.returncode == 0, done.stderr
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in done.stdout.splitlines()]
    return [c[0] for c in cells if len(c) == 2 and c[0].endswith(".sql") and c[1] != "no"]


async def test_sql_migrate_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    for name, sql in MIGRATIONS.items():
        (tmp_path / "migrations" / name).write_text(f"-- +migrate Up\n{sql}\n-- +migrate Down\n")
    cfg = config(scratch, tmp_path)
    done = sql_migrate(cfg, "up", "-limit=2")
    assert done.returncode == 0, done.stdout + done.stderr
    found = await read(scratch.url, "sql-migrate")
    assert applied(cfg) == ["1_orders.sql", "2_invoices.sql"]
    assert found.latest == "2"
    # PostgreSQL's column is timestamptz and go-sqlite3 writes an offset; MySQL's
    # DATETIME has none (the driver's `loc`), so its time is shown without a zone.
    at = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + (
        ", time zone not recorded" if scratch.engine == "mariadb" else "Z"
    )
    allowed, message = verdict("sql-migrate", "10", found)
    assert not allowed
    before, after = wording.behind(
        "shop/api", "schema orders >= 10 (sql-migrate)", "orders", "2 (applied \0)"
    ).split("\0")
    assert re.fullmatch(re.escape(before) + at + re.escape(after), message), message

    assert sql_migrate(cfg, "up", "-limit=1").returncode == 0
    found = await read(scratch.url, "sql-migrate")
    # Ordered by number, as sql-migrate orders them: 10 comes after 2.
    assert applied(cfg) == ["1_orders.sql", "2_invoices.sql", "10_refunds.sql"]
    assert found.latest == "10"
    assert verdict("sql-migrate", "10", found, "exact") == (True, "")

    failed = sql_migrate(cfg, "up")
    assert failed.returncode != 0
    found = await read(scratch.url, "sql-migrate")
    assert "11_broken.sql" not in applied(cfg)
    assert (found.latest, found.problems) == ("10", ())
    assert not verdict("sql-migrate", "11", found)[0]
