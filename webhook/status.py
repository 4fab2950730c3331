"""`schemagate status`: every labelled workload in the cluster and what its database records.

Edge code: lists workloads through kubernetes-asyncio (only `list`, see
manifests/status/) and reads databases through the webhook's own lookup path. Each
workload is judged as the webhook would judge its CREATE now (`webhook.evaluate`), so
"satisfied" means: the gate would admit this release today. Exit status: 0 when every
gated workload is satisfied, 1 when one is not (or its database cannot be read), 2 when
the cluster or the configuration cannot be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from certs.bootstrap import BootstrapError, load_kube_client
from webhook import contract
from webhook.config import Config
from webhook.decide import PendingGate
from webhook.evaluate import Evaluation, evaluate, settle
from webhook.gate import Found, Unreachable
from webhook.review import AdmissionResponse

PAGE = 500
PASSES = "schemagate does not act on this kind or namespace"
REQUEST_TIMEOUT = 30


class StatusError(RuntimeError):
    """The cluster could not be read; str() says what and why."""


@dataclass(frozen=True, slots=True)
class Listed:
    """A kind of workload to list: the first of `versions` the API server serves. A kind it
    serves in none (Argo Rollouts without their CRD) has no objects to list."""

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str


# What manifests/status/clusterrole.yaml grants `list` on, and nothing more.
WORKLOADS = (
    Listed("Deployment", "apps", ("v1",), "deployments"),
    Listed("StatefulSet", "apps", ("v1",), "statefulsets"),
    Listed("DaemonSet", "apps", ("v1",), "daemonsets"),
    Listed("Job", "batch", ("v1",), "jobs"),
    # batch/v1 CronJob arrived in Kubernetes 1.21; 1.20 serves batch/v1beta1 only.
    Listed("CronJob", "batch", ("v1", "v1beta1"), "cronjobs"),
    Listed("Rollout", "argoproj.io", ("v1alpha1",), "rollouts"),
)


@dataclass(frozen=True)
class StatusOptions:
    config: Config
    excluded: frozenset[str]
    kubeconfig: str | None = None
    namespace: str | None = None  # None: every namespace
    output: str = "table"


@dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    kind: str
    api_version: str
    mode: str
    tool: str | None
    database: str | None
    needed: str | None
    recorded: str | None
    satisfied: str  # yes, no, unknown (database unreadable), or - (not gated)
    message: str | None


def run(options: StatusOptions) -> tuple[int, str]:
    """(exit status, what to print)."""
    rows = asyncio.run(_rows(options))
    failing = sum(row.satisfied in ("no", "unknown") for row in rows)
    return (1 if failing else 0), render(rows, options.output)


async def _rows(options: StatusOptions) -> list[Row]:
    try:
        api = await load_kube_client(options.kubeconfig)
    except BootstrapError as exc:
        raise StatusError(str(exc)) from None
    async with api:
        objects = await list_workloads(client.CustomObjectsApi(api), options.namespace)
    evaluations = [
        evaluate(
            obj,
            namespace=obj["metadata"].get("namespace", ""),
            config=options.config,
            excluded=options.excluded,
        )
        for obj in objects
    ]
    answers = await settle(evaluations, options.config)
    rows = [_row(e, answer, found) for e, (answer, found) in zip(evaluations, answers, strict=True)]
    return sorted(rows, key=lambda r: (r.namespace, r.name, r.kind))


async def list_workloads(api: client.CustomObjectsApi, namespace: str | None) -> list[Any]:
    """Every labelled object of every kind in WORKLOADS, each with apiVersion and kind."""
    found: list[Any] = []
    for listed in WORKLOADS:
        for version in listed.versions:
            items = await _list(api, listed, version, namespace)
            if items is not None:
                for item in items:
                    item["apiVersion"] = f"{listed.group}/{version}"
                    item["kind"] = listed.kind
                found.extend(items)
                break
    return found


async def _list(
    api: client.CustomObjectsApi, listed: Listed, version: str, namespace: str | None
) -> list[Any] | None:
    """All pages of one list call; None when the API server does not serve that version."""
    items: list[Any] = []
    token: str | None = None
    resource = f"{listed.plural}.{listed.group}/{version}"
    while True:
        kwargs: dict[str, Any] = {
            "label_selector": contract.LABEL,
            "limit": PAGE,
            "_request_timeout": REQUEST_TIMEOUT,
        }
        if token:
            kwargs["_continue"] = token
        try:
            if namespace is None:
                page = await api.list_cluster_custom_object(
                    listed.group, version, listed.plural, **kwargs
                )
            else:
                page = await api.list_namespaced_custom_object(
                    listed.group, version, namespace, listed.plural, **kwargs
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            where = f" in namespace {namespace}" if namespace else ""
            reason = _reason(exc)
            raise StatusError(f"cannot list {resource}{where}: {reason}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StatusError(f"cannot reach the API server: {exc or type(exc).__name__}") from None
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def _reason(exc: ApiException) -> str:
    try:
        message = orjson.loads(exc.body or b"{}").get("message")
    except orjson.JSONDecodeError:
        message = None
    text = f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
    if exc.status == 403:
        text += " (bind the ClusterRole schemagate-status to this user)"
    return text


def _row(evaluation: Evaluation, answer: AdmissionResponse | None, found: Found | None) -> Row:
    request, result, route = evaluation.request, evaluation.result, evaluation.route
    obj = request.object or {}
    annotations = contract.annotations_of(obj)
    declared = contract.labels_of(obj).get(contract.LABEL)
    tool = _text(annotations.get(contract.TOOL))
    database = _text(annotations.get(contract.DATABASE)) if declared == "gate" else None
    needed = _text(annotations.get(contract.SCHEMA_VERSION)) if declared == "gate" else None
    if isinstance(result, PendingGate):
        check = result.check
        tool, database = check.db.tool, check.db.name
        needed = f"{'>=' if check.match == 'at-least' else '=='} {check.required}"
    recorded = None
    if route == "pass":
        satisfied = "-"
    elif isinstance(found, Unreachable):
        recorded, satisfied = "unreachable", "unknown"
    elif found is not None:
        recorded = found.latest or "none"
        satisfied = "yes" if answer is not None and answer.allowed else "no"
    else:  # answered without a lookup: a refusal of a gate or of a bad label, or inject
        satisfied = "no" if route in ("gate", "invalid") else "-"
    message = None
    if route == "pass":
        message = PASSES
    elif answer is not None and not answer.allowed:
        message = answer.message
    elif answer is not None and satisfied == "unknown":
        message = next(iter(answer.warnings), None)  # admitted unchecked: on_unreachable open
    return Row(
        namespace=request.namespace,
        name=request.name,
        kind=request.kind,
        api_version=str(obj.get("apiVersion", "")),
        mode=str(declared),
        tool=tool,
        database=database,
        needed=needed,
        recorded=recorded,
        satisfied=satisfied,
        message=message,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


COLUMNS = ("NAMESPACE", "NAME", "KIND", "MODE", "TOOL", "DATABASE", "NEEDED", "RECORDED")


def render(rows: Sequence[Row], output: str) -> str:
    if output == "json":
        return (
            orjson.dumps(
                {"workloads": [asdict(r) for r in rows]}, option=orjson.OPT_INDENT_2
            ).decode()
            + "\n"
        )
    if output == "yaml":
        return yaml.safe_dump({"workloads": [asdict(r) for r in rows]}, sort_keys=False)
    if not rows:
        return "no labelled workloads\n"
    table: list[tuple[str, ...]] = [(*COLUMNS, "SATISFIED")]
    for r in rows:
        cells = (r.namespace, r.name, r.kind, r.mode, r.tool, r.database, r.needed, r.recorded)
        table.append((*(c or "-" for c in cells), r.satisfied))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    notes = [f"{r.namespace}/{r.name} ({r.kind}): {r.message}" for r in rows if r.message]
    return "\n".join([*lines, *([""] if notes else []), *notes]) + "\n"
