"""Sqitch: its registry's `changes` and `tags`; versions are change or tag names.

DDL: sqitchers/sqitch, lib/App/Sqitch/Engine/pg.sql, mysql.sql and sqlite.sql (tables
changes, tags, events). The registry lives in the schema `sqitch` on PostgreSQL, in the
database `sqitch` on MySQL/MariaDB (the same server), and on SQLite in a file beside the
target (`sqitch.db` for `app.db`: point the database's url at that file). `changes`
holds what is deployed now (a failed deploy is reverted and logged only in `events`),
so the last committed change is current, as `sqitch status` reports; a requirement
names changes or tags (`@v1.0` or `v1.0`) that must be deployed. Sqitch writes its
times in UTC. While it deploys on PostgreSQL it holds the advisory lock 75474063
(lib/App/Sqitch/Engine/pg.pm, `try_lock`), read from `pg_locks` as a running migration.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import (
    Dialect,
    Docs,
    Gate,
    History,
    Location,
    Row,
    Tool,
    moment,
    quoted_name,
    select,
    utc,
)
from webhook.versions import Recorded

LOCK_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = 0 AND objid = 75474063 AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def location(dialect: Dialect) -> Location:
    return Location(None if dialect == "sqlite" else "sqitch", "changes")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    change = quoted_name("change", dialect)
    changes = select(f"{change}, committed_at", where, dialect, "ORDER BY committed_at")
    tags = select("tag", where.beside("tags"), dialect)
    return (changes, tags, LOCK_HELD) if dialect == "postgresql" else (changes, tags)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    changes, tags = results[0], results[1]
    held = len(results) > 2 and any(int(row[0]) for row in results[2])
    names = {str(row[0]) for row in changes}
    names |= {str(tag) for (tag,) in tags} | {str(tag).lstrip("@") for (tag,) in tags}
    return Recorded(
        True,
        str(changes[-1][0]) if changes else None,
        utc(moment(changes[-1][1])) if changes else None,
        present=frozenset(names),
        running=("the sqitch advisory lock is held",) if held else (),
    )


TOOL = Tool(
    name="sqitch",
    # The target comes from sqitch.conf or SQITCH_TARGET (a db: URI) in the app's env.
    command=("sqitch", "deploy"),
    image="sqitch/sqitch",
    locks=True,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="change or tag",
        current="change",
        docs=Docs(
            table="`sqitch.changes`, `sqitch.tags`",
            recorded="every required change or tag (`@v1.0` or `v1.0`; a list with commas) "
            "must be deployed (`at-least`), or be the last change deployed (`exact`)",
            refused="its advisory lock held in `pg_locks` (PostgreSQL: a deploy is running)",
        ),
    ),
)
