"""`schemagate check --config` reading real databases: the gate's verdict as the webhook
gives it, word for word (tests/golden/check/gate/), for SQLite and PostgreSQL, and for a
database that cannot be read under both on_unreachable policies."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
import yaml

from tests.e2e.flyway import FlywayHistory
from tests.golden import compare
from tests.server import ROOT
from tests.support import ddl, wording
from tests.support.manifests import kustomize
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.component

PRESYNC = "manifests/examples/argocd-presync"  # gates on orders >= 42, namespace shop-presync


def write_config(path: Path, database: Mapping[str, object], policy: str = "closed") -> Path:
    spec = {"tool": "flyway", "namespaces": ["shop-presync"], **database}
    path.write_text(yaml.safe_dump({"databases": {"orders": spec}, "on_unreachable": policy}))
    return path


def check(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "check", "--config", str(config), *args, "-"],
        input=kustomize(PRESYNC),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_sqlite_denies_until_migrated_then_admits(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    ddl.flyway_sqlite(db, "1", "41")
    config = write_config(tmp_path / "config.yaml", {"url": f"sqlite:///{db}"})

    denied = check(config)
    assert (denied.returncode, denied.stderr) == (1, "")
    compare("check/gate/denied.txt", denied.stdout)
    as_json = check(config, "-o", "json")
    assert as_json.returncode == 1
    compare("check/gate/denied.json", as_json.stdout)

    ddl.flyway_sqlite(db, "42")
    admitted = check(config)
    assert (admitted.returncode, admitted.stderr) == (0, "")
    compare("check/gate/admitted.txt", admitted.stdout)


def test_postgresql_through_the_url_env_as_the_webhook_reads_it(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    postgres.create_database("check_orders")
    history = FlywayHistory(postgres.url("check_orders"))
    history.create()
    history.record("42", datetime.datetime(2026, 11, 21, 8, 30))
    config = write_config(tmp_path / "config.yaml", {"url_env": "ORDERS_URL"})
    done = check(config, "-o", "json", env={"ORDERS_URL": history.dsn})
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    (workload,) = orjson.loads(done.stdout)["workloads"]
    assert workload["verdict"] == "admitted"
    assert workload["gate"] == {
        "database": "orders",
        "tool": "flyway",
        "match": "at-least",
        "required": "42",
        "read": True,
        "reachable": True,
        "recorded": "42",
    }


def test_unreachable_database_follows_the_policy(tmp_path: Path) -> None:
    # Port 1 (tcpmux) is closed on any test machine, and fixed so the golden output is.
    url = {"url": "postgresql://gate:secret@127.0.0.1:1/orders"}
    closed = check(write_config(tmp_path / "closed.yaml", url))
    assert closed.returncode == 1
    compare("check/gate/unreachable-closed.txt", closed.stdout)
    assert "secret" not in closed.stdout + closed.stderr

    opened = check(write_config(tmp_path / "open.yaml", url, policy="open"))
    assert (opened.returncode, opened.stderr) == (0, "")
    compare("check/gate/unreachable-open.txt", opened.stdout)


def test_missing_url_variable_is_the_reason(tmp_path: Path) -> None:
    """As the webhook answers it: the kind of failure, the detail only in its log."""
    done = check(write_config(tmp_path / "config.yaml", {"url_env": "ORDERS_URL"}))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        "-: document 1: Deployment shop-presync/orders (gate): denied (503): "
        + wording.unreachable_closed(
            "shop-presync/orders", "schema orders >= 42 (flyway)", "orders", "misconfigured"
        )
    )
