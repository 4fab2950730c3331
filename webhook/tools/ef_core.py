"""EF Core: `__EFMigrationsHistory (MigrationId, ProductVersion)`, present-or-absent names.

DDL: dotnet/efcore, src/EFCore.Relational/Migrations/HistoryRepository.cs
(`GetCreateScript`: MigrationId nvarchar(150) primary key, ProductVersion nvarchar(32)),
as the Npgsql, Pomelo MySQL and SQLite providers render it. A MigrationId is
`<timestamp>_<Name>`; EF applies them in id order, so the last id is current, and
`dotnet ef database update <Name>` accepts either form: so does the gate.
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
    quoted_name,
    select,
)
from webhook.versions import Recorded


def location(dialect: Dialect) -> Location:
    return Location(None, "__EFMigrationsHistory")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    return (select(quoted_name("MigrationId", dialect), where, dialect),)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return ef_core_history(results[0])


def ef_core_history(rows: Sequence[Row]) -> Recorded:
    ids = sorted(str(row[0]) for row in rows)
    names = {mid.partition("_")[2] for mid in ids if "_" in mid}
    return Recorded(True, ids[-1] if ids else None, present=frozenset({*ids, *names}))


TOOL = Tool(
    name="ef-core",
    # A migration bundle (`dotnet ef migrations bundle`), as EF Core deploys them.
    command=("./efbundle",),
    image=None,
    locks=True,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="migration",
        current="",
        docs=Docs(
            table="`__EFMigrationsHistory`",
            recorded="the required `MigrationId` (or its name after the timestamp) must "
            "be present (`at-least`), or be the last id (`exact`)",
            refused="nothing: EF Core records only what it applied",
        ),
    ),
)
