"""Admission of an object at rest: what the webhook would answer if it were created now.

`evaluate` is the one seam between the `check` and `status` commands and the pure core.
It builds the AdmissionRequest the API server sends for a CREATE of the object and runs
it through `decide.mode` and `decide.admit`, as `webhook.admission` does for a review; which
kinds the webhook acts on is the core's business, so apiVersion and kind pass through.
A `PendingGate` result is then answered by `Lookups.answer`, the webhook's own lookup
path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook import decide
from webhook.config import Config
from webhook.gate import Found
from webhook.lookup import Lookups
from webhook.review import AdmissionRequest, AdmissionResponse
from webhook.sources import open_source

# Who the requests are from, in the webhook's log and in `userInfo` terms.
USERNAME = "schemagate-cli"


@dataclass(frozen=True, slots=True)
class Evaluation:
    request: AdmissionRequest
    route: str  # decide.mode's answer: pass, invalid, inject, gate or removed
    result: AdmissionResponse | decide.PendingGate


def evaluate(
    obj: Mapping[str, Any], *, namespace: str, config: Config, excluded: Collection[str]
) -> Evaluation:
    """`namespace` is the object's own, or where it would be created when it names none."""
    api_version = obj.get("apiVersion")
    group, _, version = str(api_version or "").rpartition("/")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") or meta.get("generateName") or ""
    if not meta.get("namespace"):
        # The API server fills in the namespace it creates the object in.
        obj = {**obj, "metadata": {**meta, "namespace": namespace}}
    request = AdmissionRequest(
        uid="schemagate-cli",
        group=group,
        version=version,
        kind=str(obj.get("kind") or ""),
        operation="CREATE",
        namespace=namespace,
        name=str(name),
        object=obj,
        old_object=None,
        dry_run=True,
        username=USERNAME,
    )
    route = decide.mode(request, excluded)
    return Evaluation(request, route, decide.admit(request, config, route))


async def settle(
    evaluations: Sequence[Evaluation], config: Config, *, lookup: bool = True
) -> list[tuple[AdmissionResponse | None, Found | None]]:
    """Each evaluation's final answer and what a gate was decided on; (None, None) for a
    gate left unread when `lookup` is off. The gates are answered concurrently, as the
    webhook answers concurrent reviews: `Lookups` reads each database once for all."""
    needed = {e.result.check.db for e in evaluations if isinstance(e.result, decide.PendingGate)}
    sources = {db.name: open_source(db, config.lookup_timeout) for db in needed} if lookup else {}
    lookups = Lookups(sources)

    async def answer(evaluation: Evaluation) -> tuple[AdmissionResponse | None, Found | None]:
        if isinstance(evaluation.result, AdmissionResponse):
            return evaluation.result, None
        if not lookup:
            return None, None
        return await lookups.answer(evaluation.result, config)

    try:
        return list(await asyncio.gather(*map(answer, evaluations)))
    finally:
        lookups.close()
