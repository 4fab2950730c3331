"""Atlas: `atlas_schema_revisions`, ordered as Atlas orders them: as text.

DDL: ariga/atlas, cmd/atlas/internal/migrate/ent/schema/revision.go. The table lives in
the schema `atlas_schema_revisions` unless the migration URL is bound to a schema (then
configure `schema`), in `main` on SQLite. Atlas reads revisions `ORDER BY version` and
judges the database by the last one alone, so with unpadded versions 1, 2, 9, 10 its
current is 9, and a failure that a later revision (or `atlas migrate set`) superseded is
no longer a fault: schemagate follows the tool.
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
    quoted,
    select,
)
from webhook.versions import Recorded

# RevisionType bits (ariga/atlas sql/migrate/migrate.go): baseline 1, execute 2,
# resolved 4. Baseline and resolved ("migrate set") revisions count as applied.
BASELINE, RESOLVED = 1, 4


def location(dialect: Dialect) -> Location:
    return Location(
        None if dialect == "sqlite" else "atlas_schema_revisions", "atlas_schema_revisions"
    )


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    columns = "version, type, applied, total, executed_at, error"
    # Dot-prefixed versions (.atlas_cloud_identifier) are bookkeeping, not revisions.
    return (select(columns, where, dialect, "WHERE version NOT LIKE '.%'"),)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return atlas_history(results[0])


def atlas_history(rows: Sequence[Row]) -> Recorded:
    """The last revision in text order is current; it is a problem when partial or failed."""
    ordered = sorted(rows, key=lambda row: str(row[0]))
    done = [
        row
        for row in ordered
        if int(row[1]) & (BASELINE | RESOLVED) or (not row[5] and row[2] >= row[3])
    ]
    problems: tuple[str, ...] = ()
    if ordered and (not done or ordered[-1] is not done[-1]):
        version, _, applied, total, _, error = ordered[-1]
        counted = f"{applied} of {total} statements applied"
        if error:
            problems = (f"revision {version} failed ({counted}): {quoted(error)}",)
        else:
            problems = (f"revision {version} is partially applied ({counted})",)
    last = done[-1] if done else None
    return Recorded(
        table_present=True,
        latest=str(last[0]) if last else None,
        applied_at=moment(last[4]) if last else None,
        problems=problems,
    )


TOOL = Tool(
    name="atlas",
    command=(
        "atlas",
        "migrate",
        "apply",
        "--dir",
        "file:///migrations",
        "--url",
        "$(DATABASE_URL)",
    ),
    image="arigaio/atlas",
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="",
        current="",
        docs=Docs(
            table="`atlas_schema_revisions`",
            recorded="the last fully applied `version` in Atlas's own (text) order",
            refused="a last revision that is partial or errored",
        ),
    ),
)
