"""Real Django (the dev extras' django) migrates each engine; the gate reads what
`manage.py showmigrations` reports. MariaDB goes through PyMySQL as MySQLdb. Django
takes no lock and never records a failed migration, so a failure leaves the last
applied ones current (PostgreSQL and SQLite roll it back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from urllib.parse import unquote, urlsplit

import pytest

from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch

pytestmark = pytest.mark.component

SETTINGS = """\
import json, os
import pymysql

pymysql.install_as_MySQLdb()
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = ["shop"]
DATABASES = {"default": json.loads(os.environ["TEST_DATABASE"])}
"""
MIGRATION = """\
from django.db import migrations

class Migration(migrations.Migration):
    dependencies = {dependencies}
    operations = [migrations.RunSQL({sql!r})]
"""
STEPS = (
    ("0001_orders", "CREATE TABLE orders (id INT PRIMARY KEY)"),
    ("0002_invoices", "CREATE TABLE invoices (id INT PRIMARY KEY)"),
    ("0003_refunds", "CREATE TABLE refunds (id INT PRIMARY KEY)"),
    ("0004_broken", "CREATE TABLE nonsense ("),
)


def project(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    migrations = root / "shop" / "migrations"
    migrations.mkdir(parents=True)
    (root / "settings.py").write_text(SETTINGS)
    (root / "shop" / "__init__.py").write_text("")
    (migrations / "__init__.py").write_text("")
    previous: list[tuple[str, str]] = []
    for name, sql in STEPS:
        text = MIGRATION.format(dependencies=previous, sql=sql)
        (migrations / f"{name}.py").write_text(dedent(text))
        previous = [("shop", name)]
    return root


def database(scratch: Scratch) -> str:
    if scratch.engine == "sqlite":
        return json.dumps({"ENGINE": "django.db.backends.sqlite3", "NAME": scratch.url[9:]})
    parts = urlsplit(scratch.url)
    engine = "postgresql" if scratch.engine == "postgresql" else "mysql"
    return json.dumps(
        {
            "ENGINE": f"django.db.backends.{engine}",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username,
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(parts.port),
        }
    )


def manage(root: Path, scratch: Scratch, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "settings",
           "TEST_DATABASE": database(scratch)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "django", *args], capture_output=True, text=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip


def shown(root: Path, scratch: Scratch) -> set[str]:
    """The migrations `showmigrations --list` marks applied, as app.name."""
    done = manage(root, scratch, "showmigrations", "--list", "shop")
    assert done.returncode == 0, done.stderr
    return {f"shop.{line.split()[1]}" for line in done.stdout.splitlines() if "[X]" in line}


async def test_django_middle_head_and_failed(scratch: Scratch, tmp_path: Path) -> None:
    root = project(tmp_path)
    done = manage(root, scratch, "migrate", "shop", "0002_invoices", "--no-input")
    assert done.returncode == 0, done.stderr
    found = await read(scratch.url, "django")
    assert (
        {n for n in found.present if n.startswith("shop.")}
        == shown(root, scratch)
        == {
            "shop.0001_orders",
            "shop.0002_invoices",
        }
    )
    assert verdict("django", "shop.0002_invoices", found) == (True, "")
    assert verdict("django", "shop.0001_orders,shop.0002_invoices", found) == (True, "")
    allowed, message = verdict("django", "shop.0002_invoices,shop.0003_refunds", found)
    assert not allowed
    assert message.startswith(
        "shop/api needs migrations shop.0002_invoices,shop.0003_refunds in orders (django); "
        "orders records shop.0002_invoices (applied "
    )
    assert message.endswith(f"Z). {wording.RUN_THE_MIGRATIONS}")

    done = manage(root, scratch, "migrate", "shop", "0003_refunds", "--no-input")
    assert done.returncode == 0, done.stderr
    found = await read(scratch.url, "django")
    assert "shop.0003_refunds" in shown(root, scratch) & found.present
    assert verdict("django", "shop.0003_refunds", found) == (True, "")

    failed = manage(root, scratch, "migrate", "shop", "--no-input")
    assert failed.returncode != 0
    found = await read(scratch.url, "django")
    assert "shop.0004_broken" not in shown(root, scratch) | found.present
    assert (found.latest, found.problems) == ("shop.0003_refunds", ())
    assert not verdict("django", "shop.0004_broken", found)[0]
