"""goose: `goose_db_version (id, version_id, is_applied, tstamp)`, rows that toggle.

DDL: pressly/goose, internal/dialect/dialectquery/postgres.go, mysql.go and sqlite3.go
(`CreateTable`). goose appends a row per up (`is_applied` true) and, in older releases,
per down (false); newer releases delete the row on down. The current version is goose's
`GetDBVersion`: newest row first (`ORDER BY id DESC`), the first version whose latest
row is applied; the initial row, version 0, means nothing applied.
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
    flag,
    moment,
    select,
    utc,
)
from webhook.versions import Recorded


def location(dialect: Dialect) -> Location:
    return Location(None, "goose_db_version")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    return (select("version_id, is_applied, tstamp", where, dialect, "ORDER BY id DESC"),)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return goose_history(results[0])


def goose_history(rows: Sequence[Row]) -> Recorded:
    undone: set[int] = set()
    for version, applied, tstamp in rows:
        if int(version) in undone:
            continue
        if not flag(applied):
            undone.add(int(version))
        elif int(version) == 0:
            break
        else:
            # SQLite's default is datetime('now'): UTC text. PostgreSQL's `timestamp
            # DEFAULT now()` is the goose session's local time: zone unknown.
            when = utc(moment(tstamp)) if isinstance(tstamp, str) else moment(tstamp)
            return Recorded(True, str(int(version)), when)
    return Recorded(True)


TOOL = Tool(
    name="goose",
    # goose reads GOOSE_DRIVER, GOOSE_DBSTRING and GOOSE_MIGRATION_DIR from the env.
    command=("goose", "up"),
    image=None,
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="",
        current="",
        docs=Docs(
            table="`goose_db_version`",
            recorded="the newest `version_id` whose latest row `is_applied`, as "
            "`goose version` reports",
            refused="nothing: goose records only what it applied",
        ),
    ),
)
