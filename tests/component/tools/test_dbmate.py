"""Real dbmate (npm @dbmate/linux-x64) migrates each engine; the gate reads what
`dbmate status` reports. dbmate takes no lock and records only what it applied (a
failed migration leaves no row), so there is no locked or failed state to read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.component.tools import install
from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch

pytestmark = pytest.mark.component

MIGRATIONS = {
    "20260101000000_orders.sql": "CREATE TABLE orders (id INT PRIMARY KEY);",
    "20260102000000_invoices.sql": "CREATE TABLE invoices (id INT PRIMARY KEY);",
    "20260103000000_refunds.sql": "CREATE TABLE refunds (id INT PRIMARY KEY);",
    "20260104000000_broken.sql": "CREATE TABLE nonsense (;",
}


def _url(scratch: Scratch) -> str:
    if scratch.engine == "postgresql":
        return scratch.url + "?sslmode=disable"
    if scratch.engine == "sqlite":
        return "sqlite:" + scratch.url.removeprefix("sqlite://")
    return scratch.url


def dbmate(scratch: Scratch, migrations: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [install.dbmate(), "--url", _url(scratch), "--migrations-dir", str(migrations),
         "--no-dump-schema", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def applied(scratch: Scratch, migrations: Path) -> list[str]:
    """The versions `dbmate status` marks applied."""
    done = dbmate(scratch, migrations, "status")
    return [
        line.split()[1].split("_")[0] for line in done.stdout.splitlines() if line.startswith("[X]")
    ]


def add(migrations: Path, name: str) -> None:
    (migrations / name).write_text(f"-- migrate:up\n{MIGRATIONS[name]}\n\n-- migrate:down\n")


async def test_dbmate_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    migrations = tmp_path / "db" / "migrations"
    migrations.mkdir(parents=True)
    for name in list(MIGRATIONS)[:2]:
        add(migrations, name)
    done = dbmate(scratch, migrations, "migrate")
    assert done.returncode == 0, done.stderr
    found = await read(scratch.url, "dbmate")
    assert [found.latest] == applied(scratch, migrations)[-1:] == ["20260102000000"]
    assert verdict("dbmate", "20260102000000", found) == (True, "")
    assert verdict("dbmate", "20260103000000", found) == (
        False,
        wording.behind(
            "shop/api", "schema orders >= 20260103000000 (dbmate)", "orders", "20260102000000"
        ),
    )

    add(migrations, "20260103000000_refunds.sql")
    assert dbmate(scratch, migrations, "migrate").returncode == 0
    found = await read(scratch.url, "dbmate")
    assert [found.latest] == applied(scratch, migrations)[-1:] == ["20260103000000"]
    assert verdict("dbmate", "20260103000000", found, "exact") == (True, "")

    add(migrations, "20260104000000_broken.sql")
    failed = dbmate(scratch, migrations, "migrate")
    assert failed.returncode != 0
    found = await read(scratch.url, "dbmate")
    assert [found.latest] == applied(scratch, migrations)[-1:] == ["20260103000000"]
    assert found.problems == ()
    assert not verdict("dbmate", "20260104000000", found)[0]
