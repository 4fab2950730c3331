"""The registry of tools: every tool complete, the docs' tables in step with it, and
the operator's `custom` query validated at load."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.server import ROOT
from webhook.config import ConfigError, parse_config
from webhook.tools import GATE_TOOLS, INJECT_TOOLS, TOOLS
from webhook.tools.base import DIALECTS
from webhook.tools.custom import custom_history


def _readme_rows(heading: str) -> dict[str, list[str]]:
    """The table under `heading` in docs/contract.md, keyed by its first cell (backticks off)."""
    text = (ROOT / "docs" / "contract.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and not set(cells[0]) <= {"-", "|"} and cells[0] != "tool":
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_readme_table_of_recorded_versions_is_the_registry() -> None:
    rows = _readme_rows("## Gate mode")
    assert list(rows) == list(GATE_TOOLS)
    for name, (table, recorded, refused) in rows.items():
        docs = TOOLS[name].gate.docs  # type: ignore[union-attr]
        assert (table, recorded, refused) == (docs.table, docs.recorded, docs.refused), name


def test_readme_table_of_presets_is_the_registry() -> None:
    rows = _readme_rows("## Inject mode")
    assert list(rows) == list(INJECT_TOOLS)
    for name, (preset, image) in rows.items():
        tool = TOOLS[name]
        none = "none: `schemagate.dev/command` is required"
        assert preset == (f"`{' '.join(tool.command)}`" if tool.command else none), name
        assert image == (f"`{tool.image}`" if tool.image else "none"), name


def test_readme_lists_every_tool_where_a_tool_is_named() -> None:
    readme = (ROOT / "README.md").read_text()
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    assert f"schemagate.dev/tool: flyway             # {' | '.join(INJECT_TOOLS)}" in readme
    assert f"tool: flyway                   # {' | '.join(GATE_TOOLS)}" in configuration


@pytest.mark.parametrize("name", GATE_TOOLS)
def test_every_gate_tool_reads_its_history_on_every_engine(name: str) -> None:
    gate = TOOLS[name].gate
    assert gate is not None and gate.matches
    if gate.history is None:
        assert name == "custom"
        return
    for dialect in DIALECTS:
        queries = gate.history.queries(gate.history.location(dialect), dialect)
        assert queries and all(q.startswith("SELECT ") for q in queries), (name, dialect)


def _custom(**entry: Any) -> dict[str, Any]:
    base = {"url": "sqlite:///x.db", "tool": "custom", "namespaces": ["shop"]}
    return {"databases": {"orders": {**base, **entry}}}


def test_custom_takes_one_select_from_the_config() -> None:
    config = parse_config(_custom(query="SELECT version, state FROM releases;"))
    assert config.databases["orders"].query == "SELECT version, state FROM releases"
    with_cte = "WITH r AS (SELECT v, s FROM t) SELECT v, s FROM r"
    assert parse_config(_custom(query=with_cte)).databases["orders"].query == with_cte


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {},
            "databases.orders.query: required for tool custom (a SELECT returning version, state)",
        ),
        (
            {"query": "DELETE FROM releases"},
            "databases.orders.query: must be one SELECT (or WITH ... SELECT) statement",
        ),
        (
            {"query": "SELECT 1, 'applied'; DROP TABLE releases"},
            "databases.orders.query: must be a single statement (no ';' inside)",
        ),
        ({"query": 42}, "databases.orders.query: must be a non-empty string"),
        (
            {"query": "SELECT " + "x" * 5000},
            "databases.orders.query: 5007 characters exceeds 4096",
        ),
        (
            {"query": "SELECT v, s FROM t", "table": "t"},
            "databases.orders: schema and table do not apply to tool custom; the query names "
            "its own tables",
        ),
        (
            {"tool": "flyway", "query": "SELECT 1"},
            "databases.orders.query: only tool custom takes a query; flyway has its own",
        ),
    ],
)
def test_custom_query_is_validated_at_load(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_custom(**entry))
    assert str(caught.value) == message


def test_custom_is_not_an_inject_tool() -> None:
    assert "custom" in GATE_TOOLS and "custom" not in INJECT_TOOLS
    with pytest.raises(ConfigError, match=re.escape("inject.tools.custom: unknown tool")):
        parse_config({"inject": {"tools": {"custom": {"image": "x"}}}})


def test_custom_rows_are_version_and_state() -> None:
    found = custom_history([("1.9", "applied"), ("1.10", None), ("2", "pending"), ("3", "x")])
    assert (found.latest, found.problems) == ("1.10", ("version 3 is x",))
    running = custom_history([("4", "RUNNING"), ("3", "applied")])
    assert (running.latest, running.running, running.problems) == (
        "3",
        ("version 4 is running",),
        (),
    )
    assert custom_history([("1",)]).problems == (
        "the custom query returned 1 columns, not (version, state)",
    )


def test_the_registry_names_exactly_these_tools() -> None:
    # Messages list the tools in this order (tests elsewhere build them from the registry).
    assert INJECT_TOOLS == (
        "flyway", "liquibase", "alembic", "golang-migrate", "atlas", "dbmate", "sqitch",
        "sql-migrate", "django", "rails", "prisma", "knex", "node-pg-migrate", "sequelize",
        "typeorm", "goose", "ef-core", "command",
    )  # fmt: skip
    assert (*INJECT_TOOLS[:-1], "custom") == GATE_TOOLS


def test_readme_names_the_tools_that_take_no_lock() -> None:
    names = [name for name, tool in TOOLS.items() if not tool.locks]
    text = " ".join((ROOT / "docs" / "contract.md").read_text().split())
    assert f"Some tools take no lock ({', '.join(names[:-1])} and {names[-1]})" in text


def test_readme_configuration_example_loads() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("\n## The configuration file\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(example))
    assert config.databases["orders"].tool == "flyway"
    assert config.databases["releases"].query == "SELECT version, state FROM deploy.releases"
