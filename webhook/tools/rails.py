"""Rails (Active Record): `schema_migrations (version varchar PRIMARY KEY)`, ordered.

DDL: rails/rails, activerecord/lib/active_record/schema_migration.rb (`create_table`:
`t.string :version` as the primary key); `current_version` is the highest version. A
failed migration is rolled back where DDL is transactional and is not recorded.
"""

from __future__ import annotations

from webhook.tools.base import Docs, Gate, Tool, highest_version, one_table

TOOL = Tool(
    name="rails",
    command=("bin/rails", "db:migrate"),
    image=None,
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=one_table("schema_migrations"),
        parse=highest_version,
        wanted="",
        current="",
        docs=Docs(
            table="`schema_migrations`",
            recorded="highest `version` (timestamps, compared as numbers), as "
            "`rails db:version` reports",
            refused="nothing: Rails records only what it applied",
        ),
    ),
)
