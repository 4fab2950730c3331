"""`schemagate check`: what admission would do to rendered manifests, before they merge.

Only labelled objects reach the webhook (its objectSelector), so only they are reported.
Each is answered by `webhook.evaluate` with the webhook's own decision and, for a gate
with `--config` and a reachable database, the webhook's own lookup. Exit status: 0 when
everything would be admitted, 1 when something would be denied, 2 for bad input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import jsonpatch
import orjson
import yaml

from webhook import contract, inject
from webhook.config import Config
from webhook.decide import PendingGate
from webhook.documents import Document, read_all
from webhook.evaluate import Evaluation, evaluate, settle
from webhook.gate import Found, Unreachable
from webhook.review import AdmissionResponse

ADMITTED, DENIED, UNCHECKED = "admitted", "denied", "unchecked"


@dataclass(frozen=True)
class CheckOptions:
    paths: Sequence[str]
    config: Config
    excluded: frozenset[str]
    namespace: str = "default"  # for objects that name none, as `kubectl apply` would
    lookup: bool = True
    show_patch: bool = False
    output: str = "text"


@dataclass(frozen=True)
class Outcome:
    document: Document
    evaluation: Evaluation
    answer: AdmissionResponse | None  # None: a gate whose database was not read
    found: Found | None

    @property
    def verdict(self) -> str:
        if self.answer is None:
            return UNCHECKED
        return ADMITTED if self.answer.allowed else DENIED

    def result(self) -> Mapping[str, Any] | None:
        """The object as admission leaves it, the patch applied with jsonpatch."""
        obj = self.evaluation.request.object
        if obj is None or self.answer is None:
            return None
        return jsonpatch.apply_patch(obj, self.answer.patch or [])  # type: ignore[no-any-return]


def run(options: CheckOptions, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    documents, errors = read_all(options.paths, stdin)
    if errors:
        for error in errors:
            print(f"schemagate: {error}", file=stderr)
        return 2
    labelled = [d for d in documents if contract.LABEL in contract.labels_of(d.body)]
    evaluations = [
        evaluate(
            d.body,
            namespace=_namespace(d.body) or options.namespace,
            config=options.config,
            excluded=options.excluded,
        )
        for d in labelled
    ]
    answers = asyncio.run(settle(evaluations, options.config, lookup=options.lookup))
    outcomes = [
        Outcome(d, e, answer, found)
        for d, e, (answer, found) in zip(labelled, evaluations, answers, strict=True)
    ]
    if options.output == "json":
        stdout.write(_json(outcomes, len(documents), options.show_patch))
    else:
        for outcome in outcomes:
            stdout.writelines(line + "\n" for line in _text(outcome, options.show_patch))
        stdout.write(_summary(outcomes, len(documents)) + "\n")
    return 1 if any(o.verdict == DENIED for o in outcomes) else 0


def _namespace(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


# --- what the webhook changes and needs ------------------------------------------------


def injected(outcome: Outcome) -> dict[str, Any] | None:
    """The init container the patch adds or replaces, if it does."""
    for op in (outcome.answer.patch if outcome.answer else None) or []:
        values = op.get("value")
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, dict) and value.get("name") == inject.NAME:
                return value
    return None


def removes(outcome: Outcome) -> bool:
    patch = (outcome.answer.patch if outcome.answer else None) or []
    return any(op["op"] == "remove" for op in patch)


def requirement(outcome: Outcome) -> dict[str, Any] | None:
    """Which database a gate reads, what it needs and what it found there."""
    result = outcome.evaluation.result
    if not isinstance(result, PendingGate):
        return None
    check, found = result.check, outcome.found
    return {
        "database": check.db.name,
        "tool": check.db.tool,
        "match": check.match,
        "required": check.required,
        "read": found is not None,
        "reachable": None if found is None else not isinstance(found, Unreachable),
        "recorded": None if found is None or isinstance(found, Unreachable) else found.latest,
    }


# --- text ------------------------------------------------------------------------------


def _text(outcome: Outcome, show_patch: bool) -> Iterator[str]:
    request, answer = outcome.evaluation.request, outcome.answer
    head = f"{outcome.document.where}: {request.kind} {request.ref} ({outcome.evaluation.route})"
    if outcome.evaluation.route == "pass":
        yield f"{head}: passes, schemagate does not act on it here"
        return
    if answer is None:
        yield f"{head}: gate not checked (--no-lookup)"
    elif not answer.allowed:
        yield f"{head}: denied ({answer.code}): {answer.message}"
    else:
        yield f"{head}: admitted" + (" with changes" if answer.patch else "")
    container = injected(outcome)
    if container is not None:
        yield f"  init container {inject.NAME}: image {container['image']}"
        yield f"    command: {' '.join(container['command'])}"
        borrowed = [key for key in inject.INHERITED if key in container]
        if borrowed:
            yield f"    from the app container: {', '.join(borrowed)}"
    elif removes(outcome):
        yield f"  removes init container {inject.NAME}"
    need = requirement(outcome)
    if need is not None:
        op = ">=" if need["match"] == "at-least" else "=="
        line = f"  gate: {need['database']} ({need['tool']}) needs {op} {need['required']}"
        if need["reachable"]:
            line += f", records {need['recorded'] or 'no version'}"
        elif need["read"]:
            line += ", could not be read"
        yield line
    for warning in answer.warnings if answer else ():
        yield f"  warning: {warning}"
    if show_patch and answer is not None and answer.patch:
        yield "  patch:"
        yield from _indented(orjson.dumps(answer.patch, option=orjson.OPT_INDENT_2).decode())
        yield "  result:"
        yield from _indented(yaml.safe_dump(outcome.result(), sort_keys=False).rstrip("\n"))


def _indented(text: str) -> Iterator[str]:
    return ("    " + line for line in text.splitlines())


def _summary(outcomes: Sequence[Outcome], documents: int) -> str:
    counts = _counts(outcomes)
    parts = [f"{counts[ADMITTED]} admitted", f"{counts[DENIED]} denied"]
    if counts[UNCHECKED]:
        parts.append(f"{counts[UNCHECKED]} not checked")
    return (
        f"{len(outcomes)} labelled of {documents} document{'s' if documents != 1 else ''}: "
        + ", ".join(parts)
    )


def _counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = dict.fromkeys((ADMITTED, DENIED, UNCHECKED), 0)
    for outcome in outcomes:
        counts[outcome.verdict] += 1
    return counts


# --- JSON ------------------------------------------------------------------------------


def _json(outcomes: Sequence[Outcome], documents: int, show_patch: bool) -> str:
    body = {
        "documents": documents,
        **_counts(outcomes),
        "workloads": [_entry(o, show_patch) for o in outcomes],
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"


def _entry(outcome: Outcome, show_patch: bool) -> dict[str, Any]:
    request, answer, document = outcome.evaluation.request, outcome.answer, outcome.document
    entry: dict[str, Any] = {
        "source": document.source,
        "document": document.index,
        "item": document.item,
        "apiVersion": document.body["apiVersion"],
        "kind": request.kind,
        "namespace": request.namespace,
        "name": request.name,
        "mode": outcome.evaluation.route,
        "verdict": outcome.verdict,
        "code": answer.code if answer else None,
        "message": answer.message if answer else None,
        "warnings": list(answer.warnings) if answer else [],
        "patch": answer.patch if answer else None,
        "injected": injected(outcome),
        "gate": requirement(outcome),
    }
    if show_patch:
        entry["result"] = outcome.result()
    return entry
