"""Liquibase: `DATABASECHANGELOG` (present-or-absent tags and changeset IDs) and its lock.

DDL: liquibase/liquibase `StandardChangeLogHistoryService` and `StandardLockService`.
The names are unquoted, so PostgreSQL folds them to lower case. DATEEXECUTED and
LOCKGRANTED are zone-less (TIMESTAMP / DATETIME) in the JVM's local time, so they are
shown as recorded, without claiming a zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from webhook.tools.base import (
    Dialect,
    Docs,
    Gate,
    History,
    Location,
    Row,
    Tool,
    flag,
    iso,
    moment,
    select,
)
from webhook.versions import Recorded

# EXECTYPEs that leave a changeset applied (FAILED and SKIPPED do not).
APPLIED = frozenset(("EXECUTED", "RERAN", "MARK_RAN"))


def location(dialect: Dialect) -> Location:
    return Location(None, "databasechangelog" if dialect == "postgresql" else "DATABASECHANGELOG")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    suffix = "lock" if where.table.islower() else "LOCK"
    changes = select(
        "ID, TAG, DATEEXECUTED, EXECTYPE", where, dialect, "ORDER BY DATEEXECUTED, ORDEREXECUTED"
    )
    locks = select("LOCKED, LOCKGRANTED, LOCKEDBY", where.beside(where.table + suffix), dialect)
    return changes, locks


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return liquibase_history(results[0], results[1])


def liquibase_history(changes: Sequence[Row], locks: Sequence[Row]) -> Recorded:
    """Every applied changeset ID and tag is present; `latest` is the last tag."""
    present: set[str] = set()
    latest: str | None = None
    applied_at: datetime | None = None
    for change_id, tag, executed, exectype in changes:
        if str(exectype).upper() in APPLIED:
            present.add(str(change_id))
        if tag:
            present.add(str(tag))
            latest, applied_at = str(tag), moment(executed)
    running = tuple(
        f"the liquibase lock is held by {by or 'an unknown client'} since {iso(moment(granted))}"
        for locked, granted, by in locks
        if flag(locked)
    )
    return Recorded(True, latest, applied_at, frozenset(present), running=running)


TOOL = Tool(
    name="liquibase",
    command=("liquibase", "update"),
    image="liquibase/liquibase",
    locks=True,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="tag or changeset",
        current="tag",
        docs=Docs(
            table="`DATABASECHANGELOG`",
            recorded="the required value must be a `TAG` or changeset `ID` present "
            "(`at-least`), or the last tag (`exact`)",
            refused="a held `DATABASECHANGELOGLOCK` (a migration is running: by whom, since when)",
        ),
    ),
)
