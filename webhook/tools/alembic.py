"""Alembic: `alembic_version (version_num VARCHAR(32) PRIMARY KEY)`, a graph of revisions.

DDL: sqlalchemy/alembic, alembic/runtime/migration.py (`_version` table). The table holds
one row per head; several rows are branches (labelled, or joined by `depends_on`), which
`alembic current` lists as heads, not a fault. Alembic records no time.

A revision that another branch's head `depends_on` has no row: `alembic current` derives
it from the script directory as an "effective head", which the database alone cannot
show. Requiring it fails closed, and the denial says to require the dependent head.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, one_table, rows_of
from webhook.versions import Recorded


def alembic_history(rows: Sequence[Row]) -> Recorded:
    heads = tuple(sorted(str(row[0]) for row in rows))
    latest = heads[0] if len(heads) == 1 else None
    return Recorded(True, latest, present=frozenset(heads), heads=heads)


TOOL = Tool(
    name="alembic",
    command=("alembic", "upgrade", "head"),
    image=None,
    locks=False,
    gate=Gate(
        compare="graph",
        matches=("exact",),
        history=one_table("alembic_version", "version_num"),
        parse=rows_of(alembic_history),
        wanted="",
        current="head",
        unmet_note=(
            "Alembic records heads only, not the effective heads `alembic current` derives "
            "through depends_on: require the head that depends on such a revision."
        ),
        docs=Docs(
            table="`alembic_version`",
            recorded="the heads; revisions are a graph, so only `exact`: each revision "
            "required (`a1f,b2e` for branches) must be a head",
            refused="nothing: several heads are branches, as `alembic current` lists them",
        ),
    ),
)
