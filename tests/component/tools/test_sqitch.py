"""Real Sqitch (Debian package sqitch, with the DBI drivers it needs, installed by the
test when missing) deploys to each engine; the gate reads what `sqitch status` reports.

The registry is where Sqitch puts it: schema `sqitch` in the target database on
PostgreSQL, a database of its own on MariaDB (named per test here, and configured as the
`schema`), and `sqitch.db` beside the target on SQLite (the gate's URL names that file).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.component.tools import install
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch

pytestmark = pytest.mark.component

ENGINES = {"postgresql": "pg", "mariadb": "mysql", "sqlite": "sqlite"}
DRIVERS = {
    "postgresql": ("DBD::Pg", "libdbd-pg-perl"),
    "mariadb": ("DBD::mysql", "libdbd-mysql-perl"),
    "sqlite": ("DBD::SQLite", "libdbd-sqlite3-perl"),
}
CHANGES = {
    "orders": "CREATE TABLE orders (id INT);",
    "invoices": "CREATE TABLE invoices (id INT);",
    "slow": "SELECT pg_sleep(3);",
    "broken": "CREATE TABLE nonsense (;",
}


class Project:
    def __init__(self, scratch: Scratch, root: Path) -> None:
        install.apt_binary("sqitch", "sqitch")
        install.apt_perl_module(*DRIVERS[scratch.engine])
        if scratch.engine == "sqlite":
            install.apt_binary("sqlite3", "sqlite3")  # sqitch runs its scripts with it
        self.scratch, self.root = scratch, root
        self.registry = f"sqitch_{scratch.name}" if scratch.engine == "mariadb" else "sqitch"
        user = root / "user.conf"
        user.write_text("[user]\n\tname = CI\n\temail = ci@example.com\n")
        self.env = {**os.environ, "SQITCH_USER_CONFIG": str(user)}
        self.run("init", "shop", "--engine", ENGINES[scratch.engine])

    @property
    def target(self) -> str:
        if self.scratch.engine == "sqlite":
            return "db:sqlite:" + self.scratch.url.removeprefix("sqlite://")
        scheme = "pg" if self.scratch.engine == "postgresql" else "mysql"
        return f"db:{scheme}:" + self.scratch.url.split(":", 1)[1]

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["sqitch", *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        if ok and done.returncode != 0:
            raise AssertionError(f"sqitch {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done

    def add(self, name: str) -> None:
        self.run("add", name, "-n", name)
        (self.root / "deploy" / f"{name}.sql").write_text(CHANGES[name] + "\n")
        (self.root / "revert" / f"{name}.sql").write_text("SELECT 1;\n")

    def deploy(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("deploy", "--registry", self.registry, self.target, *args, ok=ok)

    def status(self) -> str:
        """The change `sqitch status` names as deployed last."""
        out = self.run("status", "--registry", self.registry, self.target).stdout
        return next(line.split()[-1] for line in out.splitlines() if line.startswith("# Name:"))

    def gate(self) -> tuple[str, dict[str, Any]]:
        """The URL and extra config the gate reads this registry with."""
        if self.scratch.engine == "sqlite":
            return (
                f"sqlite://{Path(self.scratch.url.removeprefix('sqlite://')).parent}/sqitch.db",
                {},
            )
        if self.scratch.engine == "mariadb":
            return self.scratch.url, {"schema": self.registry}
        return self.scratch.url, {}


async def test_sqitch_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    project = Project(scratch, tmp_path)
    project.add("orders")
    project.add("invoices")
    project.run("tag", "v1.0", "-n", "release")
    project.deploy("--to", "orders")
    url, extra = project.gate()
    found = await read(url, "sqitch", **extra)
    assert found.latest == project.status() == "orders"
    allowed, message = verdict("sqitch", "@v1.0", found)
    assert not allowed
    assert message.startswith(
        "shop/api needs change or tag @v1.0 in orders (sqitch); orders records change orders "
        "(applied "
    )

    project.deploy()
    found = await read(url, "sqitch", **extra)
    assert found.latest == project.status() == "invoices"
    assert verdict("sqitch", "@v1.0", found) == (True, "")
    assert verdict("sqitch", "v1.0,orders", found) == (True, "")
    assert verdict("sqitch", "invoices", found, "exact") == (True, "")

    project.add("broken")
    assert project.deploy(ok=False).returncode != 0
    found = await read(url, "sqitch", **extra)
    assert found.latest == project.status() == "invoices"
    assert (found.problems, "broken" in found.present) == ((), False)


@pytest.mark.parametrize("scratch", ["postgresql"], indirect=True)
async def test_sqitch_deploying_holds_its_lock(scratch: Scratch, tmp_path: Path) -> None:
    project = Project(scratch, tmp_path)
    project.add("orders")
    project.deploy()
    project.add("slow")
    slow = await asyncio.create_subprocess_exec(
        "sqitch", "deploy", project.target, cwd=tmp_path, env=project.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):
            found = await read(scratch.url, "sqitch")
            if found.running:
                break
            await asyncio.sleep(0.1)
        assert found.running == ("the sqitch advisory lock is held",)
    finally:
        out, err = await asyncio.wait_for(slow.communicate(), 60)
    assert slow.returncode == 0, (out + err).decode()
    found = await read(scratch.url, "sqitch")
    assert (found.latest, found.running) == ("slow", ())
