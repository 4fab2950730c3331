"""dbmate: `schema_migrations (version varchar(128) PRIMARY KEY)`, ordered versions.

The same table name as golang-migrate's, with no `dirty` column: a failed migration is
rolled back (or, where DDL is not transactional, simply not recorded), so there is no
unhealthy state to read. DDL: amacneil/dbmate, pkg/driver/postgres/postgres.go,
pkg/driver/mysql/mysql.go and pkg/driver/sqlite/sqlite.go (`CreateMigrationsTable`).
dbmate takes no lock.
"""

from __future__ import annotations

from webhook.tools.base import Docs, Gate, Tool, highest_version, one_table

TOOL = Tool(
    name="dbmate",
    # dbmate reads DATABASE_URL and ./db/migrations (under the container's workingDir).
    command=("dbmate", "--no-dump-schema", "migrate"),
    image="ghcr.io/amacneil/dbmate",
    locks=False,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=one_table("schema_migrations"),
        parse=highest_version,
        wanted="",
        current="",
        docs=Docs(
            table="`schema_migrations`",
            recorded="highest `version` (dbmate's timestamps, compared as numbers)",
            refused="nothing: dbmate records only what it applied",
        ),
    ),
)
