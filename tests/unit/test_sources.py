"""Pure parts of the version sources: URL parsing and redaction, reading rows as each
tool means them, and the value shapes the engines hand back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from webhook.config import ConfigError, DatabaseConfig
from webhook.sources.engines import open_engine
from webhook.sources.target import Target, parse, resolve
from webhook.tools import gate_of
from webhook.tools.atlas import atlas_history
from webhook.tools.base import Location, flag, iso, moment
from webhook.tools.flyway import flyway_history
from webhook.tools.liquibase import liquibase_history

ON = datetime(2026, 11, 20, 10, 0)


def db(kind: str, value: str) -> DatabaseConfig:
    return DatabaseConfig("orders", kind, value, "flyway", frozenset({"shop"}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "fields"),
    [
        (
            "postgresql://app:s%40cret@db.shop:5433/orders?sslmode=require",
            ("postgresql", "db.shop", 5433, "app", "s@cret", "orders", {"sslmode": "require"}),
        ),
        ("postgres://db/orders", ("postgresql", "db", None, None, None, "orders", {})),
        (
            "mysql://gate:pw@10.0.0.7/orders?ssl=true",
            ("mysql", "10.0.0.7", None, "gate", "pw", "orders", {"ssl": "true"}),
        ),
    ],
)
def test_server_urls_are_split_for_the_driver(url: str, fields: tuple[Any, ...]) -> None:
    t = parse(url, "databases.orders.url")
    assert (t.engine, t.host, t.port, t.user, t.password, t.database, dict(t.options)) == fields
    assert "s@cret" not in repr(t)
    assert "pw" not in repr(t)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/app.db", "/var/lib/app.db"),
        ("sqlite:////var/lib/app.db", "/var/lib/app.db"),
        ("sqlite:///data/my%20app.db", "/data/my app.db"),
    ],
)
def test_sqlite_urls_name_an_absolute_path(url: str, path: str) -> None:
    assert parse(url, "x").path == path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mariadb://db/orders",
            "databases.orders.url: scheme must be postgresql://, mysql:// or sqlite:///",
        ),
        ("sqlite://", "databases.orders.url: a SQLite URL is sqlite:///absolute/path"),
        (
            "postgresql://app:s3cret@db:99999/orders",
            "databases.orders.url: not a valid URL (check the host and port)",
        ),
        (
            # An unencoded @ in the password: the host would be read from "cret@db".
            "postgresql://app:s3@cret@db:5432/orders",
            "databases.orders.url: more than one @ before the host; percent-encode @ in the "
            "user name or password as %40 (and : as %3A, / as %2F)",
        ),
        (
            "mysql://app:s3cret@db/orders?charset=latin1",
            "databases.orders.url: mysql URL option 'charset' is not supported; "
            "supported: ssl, ssl-ca, unix_socket",
        ),
    ],
)
def test_bad_urls_name_the_key_and_never_echo_the_url(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(url, "databases.orders.url")
    assert str(raised.value) == message
    assert "s3cret" not in str(raised.value) and "cret" not in str(raised.value)


def test_resolve_reads_env_and_file(tmp_path: Any) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://app:pw@db/orders\n")
    assert resolve(db("url_file", str(secret))).host == "db"
    assert resolve(db("url_env", "DB_URL"), {"DB_URL": "sqlite:///x.db"}).path == "/x.db"
    with pytest.raises(
        ConfigError, match=r"^databases\.orders\.url_env: environment variable DB_URL is not set$"
    ):
        resolve(db("url_env", "DB_URL"), {"DB_URL": "  "})


def test_a_dialect_without_an_engine_is_an_error_not_sqlite() -> None:
    # A Target can only be built for a known dialect by `parse`; one made by hand stands for
    # a dialect added to the URL schemes without an engine behind it.
    target = Target("oracle", "oracle://db/orders", host="db")  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as raised:
        open_engine(target, 1.0)
    assert str(raised.value) == (
        "no database engine for dialect 'oracle'; known: postgresql, mysql, sqlite"
    )


def test_redact_removes_every_spelling_of_the_password() -> None:
    t = parse("mysql://gate:p%40ss%2Fw@db/orders", "x")
    text = "auth failed for p@ss/w (p%40ss%2Fw, p%40ss/w)"
    assert t.redact(text) == "auth failed for *** (***, ***)"


@pytest.mark.parametrize(
    ("tool", "dialect", "sql"),
    [
        ("flyway", "postgresql", '"flyway_schema_history"'),
        ("liquibase", "postgresql", '"databasechangelog"'),
        ("liquibase", "mysql", "`DATABASECHANGELOG`"),
        ("alembic", "sqlite", '"alembic_version"'),
        ("golang-migrate", "mysql", "`schema_migrations`"),
        ("atlas", "postgresql", '"atlas_schema_revisions"."atlas_schema_revisions"'),
        ("atlas", "mysql", "`atlas_schema_revisions`.`atlas_schema_revisions`"),
        ("atlas", "sqlite", '"atlas_schema_revisions"'),
    ],
)
def test_default_tables_are_where_each_tool_puts_them(tool: str, dialect: Any, sql: str) -> None:
    history = gate_of(tool).history
    assert history is not None
    assert history.location(dialect).sql(dialect) == sql


def test_location_quotes_configured_names() -> None:
    assert Location("Audit", "History").sql("postgresql") == '"Audit"."History"'


def test_flyway_rows_as_flyway_reads_them() -> None:
    rows = [
        (-100, "lock-3f2a", "flyway-lock", "", ON, True),  # InsertRowLock's row
        (1, "1", "baseline", "BASELINE", ON, True),
        (2, "1.2", "add status", "SQL", ON, 1),
        (3, "1.10", "add index", "SQL", ON + timedelta(days=1), b"\x01"),
        (4, "1.11", "oops", "SQL", ON, False),
        (5, "1.11", "oops", "DELETE", ON, False),  # `flyway repair` tombstone
        (6, "1.10", "undo index", "UNDO_SQL", ON, True),
        (7, None, "views", "SQL", ON, 0),  # a failed repeatable migration
    ]
    found = flyway_history(rows)
    assert (found.latest, found.applied_at) == ("1.2", ON)
    assert found.problems == (
        "migration repeatable (views) failed at 2026-11-20T10:00:00, time zone not recorded",
    )


def test_liquibase_last_tag_wins_and_failed_changesets_are_absent() -> None:
    found = liquibase_history(
        [
            ("a", "v1", ON, "EXECUTED"),
            ("b", None, ON, "MARK_RAN"),
            ("c", "v2", ON, "RERAN"),
            ("d", None, ON, "SKIPPED"),
            ("e", None, ON, "FAILED"),
        ],
        [(b"\x00", None, None)],
    )
    assert (found.latest, found.problems) == ("v2", ())
    assert found.present == {"a", "b", "c", "v1", "v2"}


def test_atlas_resolved_revisions_count_as_applied() -> None:
    rows = [("20260101", 2 | 4, 1, 3, ON, "boom"), ("20260102", 2, 2, 2, "2026-11-20 10:00:00", "")]
    found = atlas_history(rows)
    assert (found.latest, found.applied_at, found.problems) == ("20260102", ON, ())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (0, False),
        (1, True),
        (b"\x00", False),
        (b"\x01", True),
        ("t", True),
        ("false", False),
        ("1", True),
        (None, False),
    ],
)
def test_flag_reads_every_engines_boolean(value: Any, expected: bool) -> None:
    assert flag(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ON, ON),
        ("2026-11-20 10:00:00.123", ON.replace(microsecond=123000)),
        ("2026-11-20 10:00:00.123456789+00:00", ON.replace(microsecond=123456, tzinfo=UTC)),
        (
            "2026-11-20T12:00:00+02:00",
            datetime(2026, 11, 20, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-11-20T10:00:00Z", ON.replace(tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        (1763632800, None),
    ],
)
def test_moment_reads_stored_times(value: Any, expected: datetime | None) -> None:
    assert moment(value) == expected


def test_iso_is_utc_with_a_z_only_when_the_zone_is_known() -> None:
    assert (
        iso(datetime(2026, 11, 20, 12, 0, tzinfo=timezone(timedelta(hours=2))))
        == "2026-11-20T10:00:00Z"
    )
    # A zone-less time (Liquibase's DATEEXECUTED, in the JVM's local time) is never UTC.
    assert iso(ON) == "2026-11-20T10:00:00, time zone not recorded"
    assert iso(None) == "an unrecorded time"


def test_atlas_orders_versions_as_text_like_atlas() -> None:
    # Atlas reads `ORDER BY version`: with unpadded versions its current is 9, not 10.
    rows = [(v, 2, 1, 1, ON, "") for v in ("1", "2", "10", "9")]
    assert atlas_history(rows).latest == "9"


def test_atlas_failure_superseded_by_a_later_revision_is_not_a_problem() -> None:
    # `atlas migrate set 3` after 2 failed: Atlas judges the last revision only, and says OK.
    rows = [
        ("1", 2, 1, 1, ON, ""),
        ("2", 2, 0, 1, ON, "pq: syntax error"),
        ("3", 4, 0, 0, ON, ""),
    ]
    found = atlas_history(rows)
    assert (found.latest, found.problems) == ("3", ())
    failed = atlas_history(rows[:2])
    assert (failed.latest, failed.problems) == (
        "1",
        ("revision 2 failed (0 of 1 statements applied): pq: syntax error",),
    )
