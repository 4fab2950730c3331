"""goose: `goose_db_version (id, version_id, is_applied, tstamp)`, rows that toggle.

DDL: pressly/goose, internal/dialect/dialectquery/postgres.go, mysql.go and sqlite3.go
(`CreateTable`). goose appends a row per up (`is_applied` true) and, in older releases,
per down (false); newer releases delete the row on down. The current version is goose's
`GetDBVersion`: newest row first (`ORDER BY id DESC`), the first version whose latest
row is applied; the initial row, version 0, means nothing applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, flag, moment, one_table, rows_of, utc
from webhook.versions import Recorded


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
        history=one_table("goose_db_version", "version_id, is_applied, tstamp", "ORDER BY id DESC"),
        parse=rows_of(goose_history),
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
