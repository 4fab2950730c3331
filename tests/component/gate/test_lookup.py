"""The lookup layer over a real SQLite database: cache ages, single flight, remembered
failures, metrics, and URL resolution at start."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tests.support import ddl
from tests.support.fakes import FakeClock
from webhook.config import ConfigError, parse_config
from webhook.gate import Unreachable
from webhook.lookup import FAILURE_TTL, Lookups
from webhook.metrics import Metrics
from webhook.sources import open_source
from webhook.versions import Recorded

pytestmark = pytest.mark.component


def build(spec: dict[str, object], clock: FakeClock, metrics: Metrics | None = None) -> Lookups:
    config = parse_config(
        {"databases": {"orders": {"tool": "flyway", "namespaces": ["shop"], **spec}}}
    )
    sources = {"orders": open_source(config.databases["orders"], config.lookup_timeout)}
    observe = metrics.observe_lookup if metrics else (lambda database, result, seconds: None)
    return Lookups(sources, observe=observe, clock=clock)


def samples(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    found = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                labels = sample.labels
                found[tuple(labels[k] for k in ("database", "result") if k in labels)] = (
                    sample.value
                )
    return found


async def test_answers_are_cached_for_the_age_the_caller_accepts(tmp_path: Path) -> None:
    db, clock, metrics = tmp_path / "orders.db", FakeClock(), Metrics()
    ddl.flyway_sqlite(db, "41")
    lookups = build({"url": f"sqlite://{db}"}, clock, metrics)
    first = await lookups.get("orders", 5)
    assert (first.age, isinstance(first.found, Recorded) and first.found.latest) == (0.0, "41")

    ddl.flyway_sqlite(db, "42")  # the migration runs; a cached answer does not see it yet
    clock.now += 3
    cached = await lookups.get("orders", 5)
    assert (cached.found, cached.age) == (first.found, 3.0)
    fresh = await lookups.get("orders", 1)  # Lookups.answer's re-check of a denial
    assert isinstance(fresh.found, Recorded)
    assert (fresh.found.latest, fresh.age) == ("42", 0.0)
    lookups.close()
    assert samples(metrics, "schemagate_lookups_total") == {("orders", "recorded"): 2}
    assert samples(metrics, "schemagate_lookup_duration_seconds_count") == {("orders",): 2}


async def test_concurrent_requests_share_one_read(tmp_path: Path) -> None:
    db, metrics = tmp_path / "orders.db", Metrics()
    ddl.flyway_sqlite(db, "7")
    lookups = build({"url": f"sqlite://{db}"}, FakeClock(), metrics)
    answers = await asyncio.gather(*(lookups.get("orders", 5) for _ in range(25)))
    lookups.close()
    assert {a.found for a in answers} == {answers[0].found}
    assert samples(metrics, "schemagate_lookups_total") == {("orders", "recorded"): 1}


async def test_a_failure_is_remembered_briefly_then_read_again(tmp_path: Path) -> None:
    db, clock, metrics = tmp_path / "later.db", FakeClock(), Metrics()
    lookups = build({"url": f"sqlite://{db}"}, clock, metrics)
    failed = await lookups.get("orders", 5)
    assert failed.found == Unreachable("not found")
    ddl.flyway_sqlite(db, "1")
    clock.now += FAILURE_TTL / 2
    assert (await lookups.get("orders", 5)).found == failed.found
    clock.now += FAILURE_TTL
    back = await lookups.get("orders", 5)
    lookups.close()
    assert isinstance(back.found, Recorded)
    assert back.found.latest == "1"
    assert samples(metrics, "schemagate_lookups_total") == {
        ("orders", "unreachable"): 1,
        ("orders", "recorded"): 1,
    }
    assert b'result="unreachable"' in generate_latest(metrics.registry)


async def test_missing_table_is_counted_as_no_table(tmp_path: Path) -> None:
    db, metrics = tmp_path / "empty.db", Metrics()
    sqlite3.connect(db).close()
    lookups = build({"url": f"sqlite://{db}"}, FakeClock(), metrics)
    assert (await lookups.get("orders", 5)).found == Recorded(table_present=False)
    lookups.close()
    assert samples(metrics, "schemagate_lookups_total") == {("orders", "no_table"): 1}


def test_start_names_a_missing_url_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError) as raised:
        build({"url_env": "ORDERS_DATABASE_URL"}, FakeClock()).start()
    assert str(raised.value) == (
        "databases.orders.url_env: environment variable ORDERS_DATABASE_URL is not set"
    )
    with pytest.raises(ConfigError) as raised:
        build({"url_file": str(tmp_path / "absent")}, FakeClock()).start()
    assert str(raised.value) == (
        f"databases.orders.url_file: cannot read {tmp_path / 'absent'}: No such file or directory"
    )
    monkeypatch.setenv("ORDERS_DATABASE_URL", "mysql://gate:secret@db:3306/orders?sslmode=x")
    with pytest.raises(ConfigError) as raised:
        build({"url_env": "ORDERS_DATABASE_URL"}, FakeClock()).start()
    assert str(raised.value) == (
        "databases.orders.url_env: mysql URL option 'sslmode' is not supported; "
        "supported: ssl, ssl-ca, unix_socket"
    )


async def test_url_file_is_read_again_after_a_failure(tmp_path: Path) -> None:
    """A rotated Secret is picked up: after a failed read the URL is resolved anew."""
    good, secret = tmp_path / "good.db", tmp_path / "url"
    ddl.flyway_sqlite(good, "3")
    (tmp_path / "old.db").write_bytes(b"not a database, " * 64)
    secret.write_text(f"sqlite://{tmp_path / 'old.db'}\n")
    clock = FakeClock()
    lookups = build({"url_file": str(secret)}, clock)
    lookups.start()
    assert isinstance((await lookups.get("orders", 5)).found, Unreachable)
    secret.write_text(f"sqlite://{good}\n")
    clock.now += FAILURE_TTL
    found = (await lookups.get("orders", 5)).found
    lookups.close()
    assert isinstance(found, Recorded)
    assert found.latest == "3"
