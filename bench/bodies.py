"""The AdmissionReview bodies the benchmark posts: corpus Deployments and synthetic ones.

Every body is a complete CREATE review in namespace `shop`, written once to a file that
wrk, hey and the spot checks all read, so every tool sends the same bytes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.factories import corpus, labelled, review
from webhook.review import API_SERVER_BODY_BYTES, MAX_BODY_BYTES

NAMESPACE = "shop"
DATABASE = "orders"
RECORDED_VERSION = "42"  # what the benchmark's PostgreSQL records; gate bodies ask for it

INJECT = {"schemagate.dev/tool": "flyway"}
GATE = {
    "schemagate.dev/tool": "flyway",
    "schemagate.dev/database": DATABASE,
    "schemagate.dev/schema-version": RECORDED_VERSION,
}

# The API server refuses requests over 3 MiB; the synthetic Deployment stays just under,
# leaving room for what the API server itself would add around it.
NEAR_LIMIT = API_SERVER_BODY_BYTES - 64 * 1024
GROWTH_SIZES = (1_000, 10_000, 100_000, 1_000_000, 3_000_000)


@dataclass(frozen=True)
class Body:
    label: str  # what it is, for the table
    mode: str  # inject | gate: what a correct answer carries
    uid: str
    path: Path
    size: int


def _write(out: Path, name: str, label: str, mode: str, obj: dict[str, Any]) -> Body:
    uid = f"bench-{name}-0000-4000-8000-000000000000"
    data = orjson.dumps(review(obj, namespace=NAMESPACE, uid=uid))
    if len(data) > MAX_BODY_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes exceeds the {MAX_BODY_BYTES} byte limit")
    path = out / f"{name}.json"
    path.write_bytes(data)
    return Body(label, mode, uid, path, len(data))


def _in_namespace(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {})["namespace"] = NAMESPACE
    return out


def typical_and_largest() -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """The corpus Deployment of median JSON size, and the largest one."""
    ranked = sorted(corpus(), key=lambda item: (len(orjson.dumps(item[1])), item[0]))
    return ranked[len(ranked) // 2], ranked[-1]


def synthetic(target: int) -> dict[str, Any]:
    """A Deployment whose review body is close to `target` bytes: one container, with as
    many env entries as it takes (the way a large generated config map ends up inline)."""

    def build(entries: int) -> dict[str, Any]:
        env = [
            {"name": f"SETTING_{i:06d}", "value": f"value-{i:06d}-" + "x" * 48}
            for i in range(entries)
        ]
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "big", "namespace": NAMESPACE, "labels": {"app": "big"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "big"}},
                "template": {
                    "metadata": {"labels": {"app": "big"}},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "ghcr.io/example/big:1", "env": env}
                        ]
                    },
                },
            },
        }

    def size(entries: int) -> int:
        obj = labelled(build(entries), "inject", INJECT)
        return len(orjson.dumps(review(obj, namespace=NAMESPACE, uid="x" * 48)))

    base = size(0)
    per_entry = max(1, size(10) - base) / 10
    entries = max(0, round((target - base) / per_entry))
    while entries > 0 and size(entries) > target:
        entries -= 1
    return build(entries)


@dataclass(frozen=True)
class Bodies:
    typical: Body
    typical_name: str
    gate: Body
    largest: Body
    largest_name: str
    near_limit: Body
    growth: tuple[Body, ...]


def write_all(out: Path) -> Bodies:
    out.mkdir(parents=True, exist_ok=True)
    (typical_name, typical), (largest_name, largest) = typical_and_largest()
    growth = tuple(
        _write(
            out,
            f"growth-{size}",
            _human(size),
            "inject",
            labelled(synthetic(size), "inject", INJECT),
        )
        for size in GROWTH_SIZES
    )
    return Bodies(
        typical=_write(
            out,
            "inject",
            "inject, typical",
            "inject",
            labelled(_in_namespace(typical), "inject", INJECT),
        ),
        typical_name=typical_name.removesuffix(".yaml"),
        gate=_write(out, "gate", "gate", "gate", labelled(_in_namespace(typical), "gate", GATE)),
        largest=_write(
            out,
            "largest",
            "inject, largest",
            "inject",
            labelled(_in_namespace(largest), "inject", INJECT),
        ),
        largest_name=largest_name.removesuffix(".yaml"),
        near_limit=_write(
            out,
            "near-limit",
            "inject, ~3 MiB",
            "inject",
            labelled(synthetic(NEAR_LIMIT), "inject", INJECT),
        ),
        growth=growth,
    )


def _human(size: int) -> str:
    return f"{size // 1_000_000} MB" if size >= 1_000_000 else f"{size // 1000} KB"
