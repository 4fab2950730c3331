"""Gate mode: does the recorded schema satisfy what a workload declares? Pure.

`plan_gate` decides from the request alone whether a lookup is needed (and refuses
bad annotations, unknown databases and foreign namespaces without any I/O);
`decide_gate` turns what the lookup layer fetched into the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.config import Config, DatabaseConfig
from webhook.contract import DATABASE, SCHEMA_VERSION, VERSION_MATCH, GateSpec, Invalid, Match
from webhook.review import AdmissionRequest, AdmissionResponse, allowed, denied
from webhook.versions import Recorded, is_version, version_key
from webhook.workloads import Workload

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
    """The database could not be read within the deadline; `reason` is safe to show."""

    reason: str


def needs_check(request: AdmissionRequest, workload: Workload) -> bool:
    """CREATE always; UPDATE only when the pod template or the declared version changed.

    Scaling, label and other metadata edits never wait on (or get blocked by) the database.
    """
    if request.operation == "CREATE" or request.old_object is None:
        return True
    new, old = request.object or {}, request.old_object
    if workload.template_of(new) != workload.template_of(old):
        return True
    keys = (DATABASE, SCHEMA_VERSION, VERSION_MATCH)
    return any(_annotation(new, key) != _annotation(old, key) for key in keys)


def plan_gate(request: AdmissionRequest, spec: GateSpec, config: Config) -> GateCheck:
    db = config.databases.get(spec.database)
    if db is None:
        known = ", ".join(sorted(config.databases)) or "none configured"
        raise Invalid(
            f"annotation {DATABASE}: unknown database {spec.database!r}; the webhook knows: {known}"
        )
    if not db.allows(request.namespace):
        raise Invalid(
            f"namespace {request.namespace!r} may not gate on database {db.name!r}; "
            "ask the webhook's operators to add it to the database's namespaces"
        )
    ordered = db.tool in ORDERED_TOOLS
    match: Match = spec.match or ("at-least" if ordered or db.tool == "liquibase" else "exact")
    if db.tool == "alembic" and match != "exact":
        raise Invalid(
            f"annotation {VERSION_MATCH}: alembic revisions are not ordered, so only "
            "exact is possible (the single head must equal the revision)"
        )
    if ordered and not is_version(spec.required):
        raise Invalid(
            f"annotation {SCHEMA_VERSION}: {spec.required!r} is not a {db.tool} version; "
            "expected dotted numbers such as 42 or 1.10"
        )
    return GateCheck(request.ref, db, spec.required, match)


def decide_gate(
    check: GateCheck, found: Recorded | Unreachable, config: Config
) -> AdmissionResponse:
    need = f"{check.ref} needs {_requirement(check)}"
    name = check.db.name
    if isinstance(found, Unreachable):
        reason = f"{need}, but {name} could not be read: {found.reason}."
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


def _annotation(obj: Mapping[str, Any], key: str) -> Any:
    meta = obj.get("metadata")
    annots = meta.get("annotations") if isinstance(meta, dict) else None
    return annots.get(key) if isinstance(annots, dict) else None
