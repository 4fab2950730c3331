"""Gate mode end to end: `schemagate serve` over real TLS, reading a real PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.factories import deployment, labelled, review
from tests.server import start
from tests.support import ddl
from tests.support.servers import PASSWORD, PostgresServer
from webhook.lookup import RECHECK_DENIAL_AFTER

pytestmark = pytest.mark.component

CONFIG = """\
databases:
  orders:
    url_env: ORDERS_DATABASE_URL
    tool: flyway
    namespaces: [shop]
lookup:
  timeout_seconds: 2
  cache_ttl_seconds: 30
on_unreachable: closed
"""


def test_denied_until_the_migration_is_recorded_then_admitted(
    postgres: PostgresServer, tls_dir: Path, tmp_path: Path
) -> None:
    postgres.create_database("tls_orders")
    with postgres.connect("tls_orders") as conn:
        for sql in (*ddl.flyway("postgresql"), ddl.flyway_row(1, "41", "create orders")):
            conn.execute(sql)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    log = tmp_path / "serve.log"
    served = start(config, tls_dir, log, env={"ORDERS_DATABASE_URL": postgres.url("tls_orders")})
    gated = labelled(
        deployment(),
        "gate",
        {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "42"},
    )
    try:
        denial = served.admit(review(gated))["response"]
        assert (denial["allowed"], denial["status"]) == (
            False,
            {
                "code": 403,
                # Flyway's PostgreSQL `installed_on` is a zone-less timestamp.
                "message": "shop/api needs schema orders >= 42 (flyway); orders records 41 "
                "(applied 2026-11-20T10:00:00, time zone not recorded). Run the migrations "
                "first, then re-apply.",
            },
        )
        with postgres.connect("tls_orders") as conn:
            conn.execute(ddl.flyway_row(2, "42", "add status"))
        migrated = time.monotonic()
        while not (answer := served.admit(review(gated))["response"])["allowed"]:
            assert time.monotonic() - migrated < RECHECK_DENIAL_AFTER + 2, answer
            time.sleep(0.1)
        # Denials are re-read once older than RECHECK_DENIAL_AFTER, despite the 30 s TTL.
        assert time.monotonic() - migrated < RECHECK_DENIAL_AFTER + 1
        assert "status" not in answer
        reads = served.metric("schemagate_lookups_total", database="orders", result="recorded")
        assert reads >= 2
        assert served.metric("schemagate_lookup_duration_seconds_count", database="orders") == reads
    finally:
        assert served.stop() == 0
    text = log.read_text()
    assert PASSWORD not in text
    assert quote(PASSWORD, safe="") not in text
