"""Gate mode: does the recorded schema satisfy what a workload declares? Pure.

`needs_check` and `plan_gate` decide from the request alone whether a lookup is needed
(and refuse bad annotations, unknown databases and foreign namespaces without any I/O);
`decide_gate` turns what the lookup layer fetched into the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.config import Config, DatabaseConfig
from webhook.contract import (
    DATABASE,
    LABEL,
    SCHEMA_VERSION,
    TOOL,
    VERSION_MATCH,
    Declared,
    GateSpec,
    Invalid,
    Match,
    labels_of,
)
from webhook.review import AdmissionRequest, AdmissionResponse, allowed, denied
from webhook.tools import GATE_TOOLS, gate_of
from webhook.tools.base import iso
from webhook.versions import Recorded, is_version, version_key
from webhook.workloads import Workload

NEXT_STEP = "Run the migrations first, then re-apply."


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
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


# What a gate is decided on: the database's record, or why it could not be read.
Found = Recorded | Unreachable


def needs_check(request: AdmissionRequest, stored: Mapping[str, Any], workload: Workload) -> bool:
    """CREATE always; UPDATE when the workload enters gate mode, or when the pod template
    as it will be stored (`stored`: the object after schemagate's own patch) or the
    declared requirement changed.

    Scaling, label and other metadata edits never wait on (or get blocked by) the database.
    """
    old = request.old_object
    if request.operation == "CREATE" or old is None:
        return True
    if labels_of(old).get(LABEL) != "gate":
        return True  # a change of mode into gate is a release: e.g. inject -> gate
    if workload.template_of(stored) != workload.template_of(old):
        return True
    keys = (DATABASE, SCHEMA_VERSION, VERSION_MATCH)
    return any(_annotation(stored, key) != _annotation(old, key) for key in keys)


def plan_gate(request: AdmissionRequest, spec: GateSpec, config: Config) -> GateCheck:
    db = _database(request.namespace, spec.database, config)
    if spec.tool is not None and spec.tool != db.tool:
        raise Invalid(
            f"annotation {TOOL}: {spec.tool!r} does not match database {db.name!r}, which "
            f"the webhook reads as {db.tool}; fix the annotation or remove it"
        )
    match = _check_version(db.tool, spec.required, spec.match)
    return GateCheck(request.ref, db, spec.required, match)


def check_declared(request: AdmissionRequest, declared: Declared, config: Config) -> None:
    """Gate annotations on a Deployment in another mode must still be valid: the same
    database and version checks as in gate mode, for what is present."""
    tool = declared.tool
    if declared.database is not None:
        tool = _database(request.namespace, declared.database, config).tool
    if declared.required is not None and tool is not None and tool in GATE_TOOLS:
        _check_version(tool, declared.required, declared.match)


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


def _check_version(name: str, required: str, declared: Match | None) -> Match:
    """The match to use (the declared one, else the tool's default), after refusing one
    the tool cannot do and a requirement it cannot read."""
    tool = gate_of(name)
    match = declared or tool.matches[0]
    if match not in tool.matches:
        raise Invalid(_only_match(name, tool.compare, tool.matches[0]))
    if tool.compare != "ordered" and not required_names(required):
        raise Invalid(
            f"annotation {SCHEMA_VERSION}: {required!r} names nothing; expected one "
            "name, or several separated by commas"
        )
    if tool.compare == "ordered" and not is_version(required):
        raise Invalid(
            f"annotation {SCHEMA_VERSION}: {required!r} is not a {name} version; "
            "expected dotted numbers such as 42 or 1.10"
        )
    return match


def _only_match(tool: str, compare: str, match: Match) -> str:
    if compare == "graph":
        return (
            f"annotation {VERSION_MATCH}: {tool} revisions are not ordered, so only "
            "exact is possible (each revision required must be a head)"
        )
    return (
        f"annotation {VERSION_MATCH}: {tool} records no single version, so only {match} "
        "is possible (every name required must be applied)"
    )


def decide_gate(check: GateCheck, found: Found, config: Config) -> AdmissionResponse:
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
    if found.running:
        return denied(
            f"{need}; a migration is running on {name}: {'; '.join(found.running)}. "
            "Retry when it finishes (a lock left behind by a migration that died must be "
            "released with the tool)."
        )
    if satisfied(check, found):
        return allowed()
    note = gate_of(check.db.tool).unmet_note
    recorded = f"{need}; {name} records {_recorded(check, found)}."
    return denied(" ".join(part for part in (recorded, note, NEXT_STEP) if part))


def required_names(required: str) -> tuple[str, ...]:
    """The names a requirement lists (`a,b`), for tools that are not ordered."""
    return tuple(part.strip() for part in required.split(",") if part.strip())


def satisfied(check: GateCheck, found: Recorded) -> bool:
    tool, required = gate_of(check.db.tool), check.required
    if tool.compare == "graph":
        return set(required_names(required)) <= set(found.heads)
    if tool.compare == "names" and check.match == "at-least":
        return set(required_names(required)) <= found.present
    if found.latest is None:
        return False
    if tool.compare == "ordered":
        have, need = version_key(found.latest), version_key(required)
        return have >= need if check.match == "at-least" else have == need
    return found.latest == required


def _requirement(check: GateCheck) -> str:
    tool, name = gate_of(check.db.tool), check.db.name
    if tool.compare == "names" and check.match == "at-least":
        return f"{tool.wanted} {check.required} in {name} ({check.db.tool})"
    op = ">=" if check.match == "at-least" else "=="
    return f"schema {name} {op} {check.required} ({check.db.tool})"


def _recorded(check: GateCheck, found: Recorded) -> str:
    tool = gate_of(check.db.tool)
    if tool.compare == "graph":
        heads = ", ".join(found.heads)
        what = f"{tool.current}s {heads}" if len(found.heads) > 1 else f"{tool.current} {heads}"
        if not found.heads:
            what = "no applied version"
    elif found.latest is None:
        what = f"no {tool.current}" if tool.current else "no applied version"
    else:
        what = f"{tool.current} {found.latest}" if tool.current else found.latest
    if found.applied_at is not None:
        what += f" (applied {iso(found.applied_at)})"
    return what


def _annotation(obj: Mapping[str, Any], key: str) -> Any:
    meta = obj.get("metadata")
    annots = meta.get("annotations") if isinstance(meta, dict) else None
    return annots.get(key) if isinstance(annots, dict) else None
