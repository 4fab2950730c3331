"""Gate mode: does the recorded schema satisfy what a Deployment declares? Pure.

`needs_check` and `plan_gate` decide from the request alone whether a lookup is needed
(and refuse bad annotations, unknown databases and foreign namespaces without any I/O);
`decide_gate` turns what the lookup layer fetched into the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.config import GATE_TOOLS, Config, DatabaseConfig
from webhook.contract import (
    DATABASE,
    LABEL,
    SCHEMA_VERSION,
    VERSION_MATCH,
    Declared,
    GateSpec,
    Invalid,
    Match,
    labels_of,
)
from webhook.review import AdmissionRequest, AdmissionResponse, allowed, denied
from webhook.versions import Recorded, is_version, version_key

ORDERED_TOOLS = frozenset(("flyway", "golang-migrate", "atlas"))
NEXT_STEP = "Run the migrations first, then re-apply."


@dataclass(frozen=True, slots=True)
class GateCheck:
    """A lookup the request needs: which database, and what it must record."""

    ref: str
    db: DatabaseConfig
    required: str
    match: Match


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The database could not be read within the deadline; `reason` is the kind of
    failure (authentication failed, timed out, ...), safe to show to any tenant."""

    reason: str


def needs_check(request: AdmissionRequest, stored: Mapping[str, Any]) -> bool:
    """CREATE always; UPDATE when the Deployment enters gate mode, or when the pod template
    as it will be stored (`stored`: the object after schemagate's own patch) or the
    declared requirement changed.

    Scaling, label and other metadata edits never wait on (or get blocked by) the database.
    """
    old = request.old_object
    if request.operation == "CREATE" or old is None:
        return True
    if labels_of(old).get(LABEL) != "gate":
        return True  # a change of mode into gate is a release: e.g. inject -> gate
    if _template(stored) != _template(old):
        return True
    keys = (DATABASE, SCHEMA_VERSION, VERSION_MATCH)
    return any(_annotation(stored, key) != _annotation(old, key) for key in keys)


def plan_gate(request: AdmissionRequest, spec: GateSpec, config: Config) -> GateCheck:
    db = _database(request.namespace, spec.database, config)
    match: Match = spec.match or _default_match(db.tool)
    _check_version(db.tool, spec.required, match)
    return GateCheck(request.ref, db, spec.required, match)


def check_declared(request: AdmissionRequest, declared: Declared, config: Config) -> None:
    """Gate annotations on a Deployment in another mode must still be valid: the same
    database and version checks as in gate mode, for what is present."""
    tool = declared.tool
    if declared.database is not None:
        tool = _database(request.namespace, declared.database, config).tool
    if declared.required is not None and tool is not None and tool in GATE_TOOLS:
        _check_version(tool, declared.required, declared.match or _default_match(tool))


def _default_match(tool: str) -> Match:
    return "at-least" if tool in ORDERED_TOOLS or tool == "liquibase" else "exact"


def _database(namespace: str, name: str, config: Config) -> DatabaseConfig:
    db = config.databases.get(name)
    if db is None:
        # Only the databases this namespace may use: other tenants' names stay private.
        usable = sorted(n for n, d in config.databases.items() if d.allows(namespace))
        raise Invalid(
            f"annotation {DATABASE}: unknown database {name!r}; namespace {namespace!r} "
            f"may use: {', '.join(usable) or 'none'}"
        )
    if not db.allows(namespace):
        raise Invalid(
            f"namespace {namespace!r} may not gate on database {db.name!r}; "
            "ask the webhook's operators to add it to the database's namespaces"
        )
    return db


def _check_version(tool: str, required: str, match: Match) -> None:
    if tool == "alembic" and match != "exact":
        raise Invalid(
            f"annotation {VERSION_MATCH}: alembic revisions are not ordered, so only "
            "exact is possible (the single head must equal the revision)"
        )
    if tool in ORDERED_TOOLS and not is_version(required):
        raise Invalid(
            f"annotation {SCHEMA_VERSION}: {required!r} is not a {tool} version; "
            "expected dotted numbers such as 42 or 1.10"
        )


def decide_gate(
    check: GateCheck, found: Recorded | Unreachable, config: Config
) -> AdmissionResponse:
    need = f"{check.ref} needs {_requirement(check)}"
    name = check.db.name
    if isinstance(found, Unreachable):
        reason = (
            f"{need}, but {name} could not be read: {found.reason} (details in the webhook log)."
        )
        if config.on_unreachable == "open":
            return allowed([f"schemagate: {reason} Admitted unchecked (on_unreachable: open)."])
        return denied(
            f"{reason} The gate fails closed (on_unreachable: closed); "
            "retry when the database is reachable.",
            503,
        )
    if not found.table_present:
        return denied(f"{need}; no migrations recorded in {name}. {NEXT_STEP}")
    if found.problems:
        return denied(
            f"{need}; {name} records a problem: {'; '.join(found.problems)}. "
            "Repair the migration history, then re-apply."
        )
    if satisfied(check, found):
        return allowed()
    return denied(f"{need}; {name} records {_recorded(check, found)}. {NEXT_STEP}")


def satisfied(check: GateCheck, found: Recorded) -> bool:
    tool, required = check.db.tool, check.required
    if tool == "liquibase" and check.match == "at-least":
        return required in found.present
    if found.latest is None:
        return False
    if tool in ORDERED_TOOLS:
        have, need = version_key(found.latest), version_key(required)
        return have >= need if check.match == "at-least" else have == need
    return found.latest == required


def _requirement(check: GateCheck) -> str:
    tool, name = check.db.tool, check.db.name
    if tool == "liquibase" and check.match == "at-least":
        return f"tag or changeset {check.required} in {name} ({tool})"
    op = ">=" if check.match == "at-least" else "=="
    return f"schema {name} {op} {check.required} ({tool})"


def _recorded(check: GateCheck, found: Recorded) -> str:
    if check.db.tool == "alembic" and found.heads:
        what = f"head {found.heads[0]}"
    elif found.latest is None:
        what = "no tag" if check.db.tool == "liquibase" else "no applied version"
    elif check.db.tool == "liquibase":
        what = f"tag {found.latest}"
    else:
        what = found.latest
    if found.applied_at is not None:
        what += f" (applied {_iso(found.applied_at)})"
    return what


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _template(obj: Mapping[str, Any]) -> Any:
    spec = obj.get("spec")
    return spec.get("template") if isinstance(spec, dict) else None


def _annotation(obj: Mapping[str, Any], key: str) -> Any:
    meta = obj.get("metadata")
    annots = meta.get("annotations") if isinstance(meta, dict) else None
    return annots.get(key) if isinstance(annots, dict) else None
