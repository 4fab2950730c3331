"""Real Node.js migration tools (npm, installed by the tests into a cache prefix) migrate
PostgreSQL and MariaDB; the gate reads what each tool's own status command reports.

SQLite is not tried: the Node SQLite drivers are native modules whose prebuilt binaries
come from outside the npm registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.component.tools import install
from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch
from webhook.versions import Recorded

pytestmark = pytest.mark.component

SERVERS = ["postgresql", "mariadb"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def connection(scratch: Scratch) -> dict[str, object]:
    parts = urlsplit(scratch.url)
    return {
        "host": "127.0.0.1",
        "port": parts.port,
        "user": parts.username,
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/"),
    }


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tools' environment: colour off, whatever the caller's terminal or CI says
    (ansis, typeorm's colouring, turns itself on when CI is set)."""
    return {
        **os.environ,
        "NODE_PATH": str(install.npm_prefix() / "node_modules"),
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        **(extra or {}),
    }


def node(
    tool: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [install.npm_bin(tool), *args], cwd=cwd, env=node_env(env), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def sleep_sql(scratch: Scratch, seconds: int) -> str:
    return (
        f"SELECT pg_sleep({seconds})"
        if scratch.engine == "postgresql"
        else f"SELECT SLEEP({seconds})"
    )


async def while_running(url: str, tool: str, seconds: float = 20) -> Recorded:
    """Read until the gate sees a migration running, or the deadline passes."""
    deadline = time.monotonic() + seconds
    while True:
        found = await read(url, tool)
        if found.running or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def in_background(
    tool: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        install.npm_bin(tool), *args, cwd=cwd, env=node_env(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


# knex -------------------------------------------------------------------------------

KNEX_STEPS = {
    "20260101_orders.js": "exports.up = k => k.raw('CREATE TABLE orders (id INT)');",
    "20260102_invoices.js": "exports.up = k => k.raw('CREATE TABLE invoices (id INT)');",
    "20260103_slow.js": "exports.config = { transaction: false };\n"
    "exports.up = k => k.raw('{sleep}');",
    "20260104_broken.js": "exports.up = k => k.raw('CREATE TABLE nonsense (');",
}


def knex_project(scratch: Scratch, tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    client = "pg" if scratch.engine == "postgresql" else "mysql2"
    config = {"client": client, "connection": connection(scratch)}
    (tmp_path / "knexfile.js").write_text(f"module.exports = {json.dumps(config)};\n")
    return tmp_path


def knex_add(project: Path, name: str, scratch: Scratch) -> None:
    body = KNEX_STEPS[name].replace("{sleep}", sleep_sql(scratch, 3))
    (project / "migrations" / name).write_text(body + "\nexports.down = () => {};\n")


def knex_completed(project: Path) -> list[str]:
    """The completed migrations `knex migrate:list` prints."""
    done = node("knex", project, "migrate:list")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.split("Pending", 1)[0]
    return [line.strip() for line in out.splitlines() if line.strip().endswith(".js")]


@pytest.mark.parametrize("scratch", SERVERS, indirect=True)
async def test_knex_middle_head_locked_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    project = knex_project(scratch, tmp_path)
    for name in ("20260101_orders.js", "20260102_invoices.js"):
        knex_add(project, name, scratch)
    assert node("knex", project, "migrate:up").returncode == 0
    found = await read(scratch.url, "knex")
    assert knex_completed(project) == ["20260101_orders.js"]
    assert found.latest == "20260101_orders"
    allowed, message = verdict("knex", "20260102_invoices", found)
    assert not allowed
    assert message.startswith(
        "shop/api needs migration 20260102_invoices in orders (knex); orders records "
        "20260101_orders (applied "
    )

    assert node("knex", project, "migrate:latest").returncode == 0
    found = await read(scratch.url, "knex")
    assert knex_completed(project) == ["20260101_orders.js", "20260102_invoices.js"]
    assert verdict("knex", "20260101_orders.js,20260102_invoices", found) == (True, "")
    assert verdict("knex", "20260102_invoices", found, "exact") == (True, "")

    # A migration without a transaction holds the lock, committed, while it runs.
    knex_add(project, "20260103_slow.js", scratch)
    slow = await in_background("knex", project, "migrate:latest")
    try:
        running = await while_running(scratch.url, "knex")
        assert running.running == ("the knex migration lock is held",)
        assert verdict("knex", "20260102_invoices", running) == (
            False,
            wording.migration_running(
                "shop/api",
                "migration 20260102_invoices in orders (knex)",
                "orders",
                "the knex migration lock is held",
            ),
        )
    finally:
        out, err = await asyncio.wait_for(slow.communicate(), 60)
    assert slow.returncode == 0, (out + err).decode()
    found = await read(scratch.url, "knex")
    assert (found.latest, found.running) == ("20260103_slow", ())

    knex_add(project, "20260104_broken.js", scratch)
    assert node("knex", project, "migrate:latest").returncode != 0
    found = await read(scratch.url, "knex")
    assert "20260104_broken.js" not in knex_completed(project)
    assert (found.latest, found.problems, found.running) == ("20260103_slow", (), ())


# sequelize ---------------------------------------------------------------------------

SEQUELIZE_STEPS = {
    "20260101-orders.js": "CREATE TABLE orders (id INT)",
    "20260102-invoices.js": "CREATE TABLE invoices (id INT)",
    "20260103-broken.js": "CREATE TABLE nonsense (",
}


def sequelize_project(scratch: Scratch, tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    c = connection(scratch)
    config = {
        "username": c["user"],
        "password": c["password"],
        "database": c["database"],
        "host": c["host"],
        "port": c["port"],
        "dialect": "postgres" if scratch.engine == "postgresql" else "mysql",
        "logging": False,
    }
    (tmp_path / "config.json").write_text(json.dumps({"test": config}))
    for name, sql in SEQUELIZE_STEPS.items():
        (tmp_path / "migrations" / name).write_text(
            f"module.exports = {{ up: q => q.sequelize.query({sql!r}), down: () => {{}} }};\n"
        )
    return tmp_path


def sequelize(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return node(
        "sequelize-cli", project, *args, "--env", "test", "--config", "config.json",
        "--migrations-path", "migrations",
    )  # fmt: skip


def sequelize_up(project: Path) -> list[str]:
    """The migrations `sequelize db:migrate:status` marks up."""
    done = sequelize(project, "db:migrate:status")
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.split()[1] for line in done.stdout.splitlines() if line.startswith("up ")]


@pytest.mark.parametrize("scratch", SERVERS, indirect=True)
async def test_sequelize_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    project = sequelize_project(scratch, tmp_path)
    done = sequelize(project, "db:migrate", "--to", "20260101-orders.js")
    assert done.returncode == 0, done.stdout + done.stderr
    found = await read(scratch.url, "sequelize")
    assert sequelize_up(project) == ["20260101-orders.js"]
    assert verdict("sequelize", "20260102-invoices", found) == (
        False,
        wording.behind(
            "shop/api",
            "migration 20260102-invoices in orders (sequelize)",
            "orders",
            "20260101-orders",
        ),
    )

    done = sequelize(project, "db:migrate", "--to", "20260102-invoices.js")
    assert done.returncode == 0, done.stdout + done.stderr
    found = await read(scratch.url, "sequelize")
    assert sequelize_up(project) == ["20260101-orders.js", "20260102-invoices.js"]
    assert verdict("sequelize", "20260102-invoices", found, "exact") == (True, "")
    assert verdict("sequelize", "20260101-orders,20260102-invoices.js", found) == (True, "")

    assert sequelize(project, "db:migrate").returncode != 0
    found = await read(scratch.url, "sequelize")
    assert "20260103-broken.js" not in sequelize_up(project)
    assert (found.latest, found.problems) == ("20260102-invoices", ())


# node-pg-migrate (PostgreSQL only) ----------------------------------------------------

PG_MIGRATE_STEPS = {
    "1767225600000_orders.js": "CREATE TABLE orders (id INT)",
    "1767312000000_invoices.js": "CREATE TABLE invoices (id INT)",
    "1767398400000_slow.js": "SELECT pg_sleep(3)",
    "1767484800000_broken.js": "CREATE TABLE nonsense (",
}


def pg_migrate_env(scratch: Scratch) -> dict[str, str]:
    return {"DATABASE_URL": scratch.url + "?sslmode=disable"}


def pg_migrate(project: Path, scratch: Scratch, *args: str) -> list[str]:
    """Run node-pg-migrate; the migrations it reports running (it has no status command)."""
    done = node("node-pg-migrate", project, *args, env=pg_migrate_env(scratch))
    if done.returncode != 0:
        raise AssertionError(done.stdout + done.stderr)
    # Each migration it runs is announced as `### MIGRATION <name> (UP) ###`.
    return [
        line.split()[2] for line in done.stdout.splitlines() if line.startswith("### MIGRATION")
    ]


def pg_migrate_add(project: Path, name: str) -> None:
    (project / "migrations").mkdir(exist_ok=True)
    sql = PG_MIGRATE_STEPS[name]
    (project / "migrations" / name).write_text(f"exports.up = pgm => {{ pgm.sql({sql!r}); }};\n")


@pytest.mark.parametrize("scratch", ["postgresql"], indirect=True)
async def test_node_pg_migrate_middle_head_locked_and_failed(
    scratch: Scratch, tmp_path: Path
) -> None:
    for name in ("1767225600000_orders.js", "1767312000000_invoices.js"):
        pg_migrate_add(tmp_path, name)
    assert pg_migrate(tmp_path, scratch, "up", "1") == ["1767225600000_orders"]
    found = await read(scratch.url, "node-pg-migrate")
    assert found.latest == "1767225600000_orders"
    allowed, message = verdict("node-pg-migrate", "1767312000000_invoices", found)
    assert not allowed
    assert message == wording.behind(
        "shop/api",
        "migration 1767312000000_invoices in orders (node-pg-migrate)",
        "orders",
        f"1767225600000_orders (applied {found.applied_at:%Y-%m-%dT%H:%M:%S}, "
        "time zone not recorded)",
    )
    assert pg_migrate(tmp_path, scratch, "up") == ["1767312000000_invoices"]
    found = await read(scratch.url, "node-pg-migrate")
    assert verdict("node-pg-migrate", "1767312000000_invoices", found, "exact") == (True, "")

    pg_migrate_add(tmp_path, "1767398400000_slow.js")
    slow = await in_background("node-pg-migrate", tmp_path, "up", env=pg_migrate_env(scratch))
    try:
        running = await while_running(scratch.url, "node-pg-migrate")
        assert running.running == ("the node-pg-migrate advisory lock is held",)
    finally:
        out, err = await asyncio.wait_for(slow.communicate(), 60)
    assert slow.returncode == 0, (out + err).decode()
    found = await read(scratch.url, "node-pg-migrate")
    assert (found.latest, found.running) == ("1767398400000_slow", ())

    pg_migrate_add(tmp_path, "1767484800000_broken.js")
    with pytest.raises(AssertionError):
        pg_migrate(tmp_path, scratch, "up")
    found = await read(scratch.url, "node-pg-migrate")
    assert (found.latest, found.problems, found.running) == ("1767398400000_slow", (), ())


# typeorm -----------------------------------------------------------------------------

TYPEORM_STEPS = {
    "CreateOrders1767225600000": "CREATE TABLE orders (id INT)",
    "CreateInvoices1767312000000": "CREATE TABLE invoices (id INT)",
    "Broken1767398400000": "CREATE TABLE nonsense (",
}


def typeorm_project(scratch: Scratch, tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    c = connection(scratch)
    options = {
        "type": "postgres" if scratch.engine == "postgresql" else "mysql",
        "host": c["host"],
        "port": c["port"],
        "username": c["user"],
        "password": c["password"],
        "database": c["database"],
    }
    (tmp_path / "data-source.js").write_text(
        'const { DataSource } = require("typeorm");\n'
        f"module.exports = new DataSource({{ ...{json.dumps(options)}, "
        'migrations: [__dirname + "/migrations/*.js"] });\n'
    )
    return tmp_path


def typeorm_add(project: Path, name: str) -> None:
    sql = TYPEORM_STEPS[name]
    (project / "migrations" / f"{name}.js").write_text(
        f"module.exports = class {name} {{\n  name = {name!r};\n"
        f"  async up(q) {{ await q.query({sql!r}); }}\n  async down() {{}}\n}};\n"
    )


def typeorm_applied(project: Path) -> list[str]:
    """The migrations `typeorm migration:show` marks [X]."""
    done = node("typeorm", project, "migration:show", "-d", "data-source.js")
    lines = ANSI.sub("", done.stdout).splitlines()
    return [line.split()[-1] for line in lines if line.strip().startswith("[X]")]


@pytest.mark.parametrize("scratch", SERVERS, indirect=True)
async def test_typeorm_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    project = typeorm_project(scratch, tmp_path)
    typeorm_add(project, "CreateOrders1767225600000")
    done = node("typeorm", project, "migration:run", "-d", "data-source.js")
    assert done.returncode == 0, done.stdout + done.stderr
    found = await read(scratch.url, "typeorm")
    assert typeorm_applied(project) == ["CreateOrders1767225600000"]
    assert verdict("typeorm", "CreateInvoices1767312000000", found) == (
        False,
        wording.behind(
            "shop/api",
            "migration CreateInvoices1767312000000 in orders (typeorm)",
            "orders",
            "CreateOrders1767225600000",
        ),
    )

    typeorm_add(project, "CreateInvoices1767312000000")
    assert node("typeorm", project, "migration:run", "-d", "data-source.js").returncode == 0
    found = await read(scratch.url, "typeorm")
    assert typeorm_applied(project) == ["CreateOrders1767225600000", "CreateInvoices1767312000000"]
    assert verdict("typeorm", "CreateInvoices1767312000000", found, "exact") == (True, "")

    typeorm_add(project, "Broken1767398400000")
    assert node("typeorm", project, "migration:run", "-d", "data-source.js").returncode != 0
    found = await read(scratch.url, "typeorm")
    assert "Broken1767398400000" not in typeorm_applied(project)
    assert (found.latest, found.problems) == ("CreateInvoices1767312000000", ())
