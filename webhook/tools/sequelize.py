"""Sequelize (sequelize-cli, through umzug): `SequelizeMeta (name VARCHAR(255) PRIMARY KEY)`.

DDL: sequelize/umzug 2.x (what sequelize-cli uses), lib/storages/SequelizeStorage.js
lines 52-55 (model `SequelizeMeta`, column `name`) and 82 (a string primary key); the
table name is case-sensitive, quoted on PostgreSQL. Names are the migration file
names, applied in name order; a requirement names the files that must be applied, with
or without the extension, as `sequelize db:migrate:status` lists them. A failed
migration is not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, one_table, rows_of, without_extension
from webhook.versions import Recorded


def sequelize_history(rows: Sequence[Row]) -> Recorded:
    names = sorted(str(row[0]) for row in rows)
    return Recorded(
        True,
        without_extension(names[-1]) if names else None,
        present=frozenset({*names, *map(without_extension, names)}),
    )


TOOL = Tool(
    name="sequelize",
    command=("npx", "sequelize-cli", "db:migrate"),
    image=None,
    locks=False,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=one_table("SequelizeMeta", "name"),
        parse=rows_of(sequelize_history),
        wanted="migration",
        current="",
        docs=Docs(
            table="`SequelizeMeta`",
            recorded="every required migration name (a list with commas; the extension "
            "optional) must be applied (`at-least`), or be the last by name, named "
            "without its extension (`exact`)",
            refused="nothing: Sequelize records only what it applied",
        ),
    ),
)
