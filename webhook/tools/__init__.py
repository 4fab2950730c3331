"""The registry of migration tools: one module each, listed here.

Adding a tool means one module with its `TOOL`, its tests, and its rows in the tables of
docs/contract.md (a test compares those tables with this registry); docs/architecture.md
walks through it.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.tools import (
    alembic,
    atlas,
    command,
    custom,
    dbmate,
    django,
    ef_core,
    flyway,
    golang_migrate,
    goose,
    knex,
    liquibase,
    node_pg_migrate,
    prisma,
    rails,
    sequelize,
    sqitch,
    sql_migrate,
    typeorm,
)
from webhook.tools.base import Gate, Tool

TOOLS: Mapping[str, Tool] = {
    tool.name: tool
    for tool in (
        flyway.TOOL,
        liquibase.TOOL,
        alembic.TOOL,
        golang_migrate.TOOL,
        atlas.TOOL,
        dbmate.TOOL,
        sqitch.TOOL,
        sql_migrate.TOOL,
        django.TOOL,
        rails.TOOL,
        prisma.TOOL,
        knex.TOOL,
        node_pg_migrate.TOOL,
        sequelize.TOOL,
        typeorm.TOOL,
        goose.TOOL,
        ef_core.TOOL,
        command.TOOL,
        custom.TOOL,
    )
}
# Inject mode runs a command: a preset, or the Deployment's own (`command`). `custom`
# is read with the operator's query and has no command to run.
INJECT_TOOLS = tuple(name for name, tool in TOOLS.items() if tool.command or not tool.gate)
GATE_TOOLS = tuple(name for name, tool in TOOLS.items() if tool.gate is not None)


def gate_of(name: str) -> Gate:
    """The gate part of a tool the config accepted for gate mode."""
    gate = TOOLS[name].gate
    if gate is None:
        raise ValueError(f"{name} has no gate")
    return gate
