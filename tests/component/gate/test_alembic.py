"""Real Alembic migrations write `alembic_version`; the gate reads its head(s).

The script directory has a fork: 1f0e2a7c9b31 (base) is the parent of both 5b8d3e1a0c42
and 9c4a7f2e6d13, so `upgrade heads` leaves two heads, as branches do (labelled ones, or joined by
`depends_on`): `alembic current` lists both as heads, and so does the gate.
"""

from __future__ import annotations

import io
from pathlib import Path
from textwrap import dedent
from urllib.parse import quote

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig

from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch
from tests.support.servers import PASSWORD

pytestmark = pytest.mark.component

BASE, LEFT, RIGHT = "1f0e2a7c9b31", "5b8d3e1a0c42", "9c4a7f2e6d13"

ENV = """\
from alembic import context
from sqlalchemy import create_engine

with create_engine(context.config.get_main_option("sqlalchemy.url")).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def revision(
    rev: str, down: str | None, table: str, *, label: str | None = None, after: str | None = None
) -> str:
    return dedent(f'''\
        from alembic import op
        import sqlalchemy as sa

        revision = "{rev}"
        down_revision = {down!r}
        branch_labels = {(label,) if label else None!r}
        depends_on = {after!r}


        def upgrade():
            op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))


        def downgrade():
            op.drop_table("{table}")
    ''')


def alembic(
    scratch: Scratch, tmp_path: Path, scripts: dict[str, str] | None = None
) -> AlembicConfig:
    """An Alembic project over `scratch`: the fork below, or the given `scripts` (file
    name to revision source)."""
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV)
    if scripts is None:
        scripts = {
            f"{rev}_{table}.py": revision(rev, down, table)
            for rev, down, table in (
                (BASE, None, "orders"),
                (LEFT, BASE, "invoices"),
                (RIGHT, BASE, "refunds"),
            )
        }
    for name, source in scripts.items():
        (folder / "versions" / name).write_text(source)
    url = {
        "postgresql": scratch.url.replace("postgresql://", "postgresql+psycopg://"),
        "mysql": scratch.url.replace("mysql://", "mysql+pymysql://"),
        # SQLAlchemy spells an absolute path with four slashes; schemagate accepts both.
        "sqlite": scratch.url.replace("sqlite://", "sqlite:///"),
    }[scratch.dialect]
    config = AlembicConfig()
    config.set_main_option("script_location", str(folder))
    # ConfigParser interpolates %, and the URL carries a percent-encoded password.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def test_single_head_matches_exactly(scratch: Scratch, tmp_path: Path) -> None:
    config = alembic(scratch, tmp_path)
    command.upgrade(config, LEFT)
    found = await read(scratch.url, "alembic")
    assert (found.latest, found.heads, found.problems) == (LEFT, (LEFT,), ())
    assert verdict("alembic", LEFT, found, "exact") == (True, "")
    assert verdict("alembic", BASE, found, "exact") == (
        False,
        wording.behind(
            "shop/api",
            f"schema orders == {BASE} (alembic)",
            "orders",
            f"head {LEFT}",
            note=wording.ALEMBIC_HEADS_ONLY,
        ),
    )
    command.downgrade(config, "base")
    found = await read(scratch.url, "alembic")
    assert (found.table_present, found.latest, found.heads) == (True, None, ())


def current_lines(config: AlembicConfig) -> list[str]:
    """What `alembic current` prints, as Alembic itself computes it."""
    out = io.StringIO()
    config.stdout = out
    command.current(config)
    return [line.strip() for line in out.getvalue().splitlines() if line.strip()]


def current(config: AlembicConfig) -> set[str]:
    return {line.split()[0] for line in current_lines(config)}


async def test_branch_heads_are_the_heads_alembic_current_lists(
    scratch: Scratch, tmp_path: Path
) -> None:
    config = alembic(scratch, tmp_path)
    command.upgrade(config, "heads")
    found = await read(scratch.url, "alembic")
    assert set(found.heads) == current(config) == {LEFT, RIGHT}
    assert found.problems == ()
    assert verdict("alembic", LEFT, found, "exact") == (True, "")
    assert verdict("alembic", f"{RIGHT},{LEFT}", found, "exact") == (True, "")
    allowed, message = verdict("alembic", BASE, found, "exact")
    assert (allowed, message) == (
        False,
        wording.behind(
            "shop/api",
            f"schema orders == {BASE} (alembic)",
            "orders",
            f"heads {LEFT}, {RIGHT}",
            note=wording.ALEMBIC_HEADS_ONLY,
        ),
    )
    assert quote(PASSWORD, safe="") not in message


DEPENDED, DEPENDENT = "3d7b1c9e0a55", "8e2f6a4b7c10"


async def test_an_effective_head_through_depends_on_fails_closed_and_says_why(
    scratch: Scratch, tmp_path: Path
) -> None:
    """Branch y's head depends on branch x's: Alembic stores only the dependent head, and
    `alembic current` derives the other as an "effective head" from the scripts, which
    the database does not hold. The gate follows the record and its denial says what to
    require instead."""
    config = alembic(
        scratch,
        tmp_path,
        {
            "x1.py": revision(BASE, None, "orders", label="x"),
            "x2.py": revision(DEPENDED, BASE, "invoices"),
            "y1.py": revision(DEPENDENT, None, "refunds", label="y", after=DEPENDED),
        },
    )
    command.upgrade(config, "heads")
    assert set(current_lines(config)) == {f"{DEPENDENT} (head)", f"{DEPENDED} (effective head)"}
    found = await read(scratch.url, "alembic")
    assert found.heads == (DEPENDENT,)
    assert verdict("alembic", DEPENDENT, found, "exact") == (True, "")
    assert verdict("alembic", DEPENDED, found, "exact") == (
        False,
        wording.behind(
            "shop/api",
            f"schema orders == {DEPENDED} (alembic)",
            "orders",
            f"head {DEPENDENT}",
            note=wording.ALEMBIC_HEADS_ONLY,
        ),
    )
