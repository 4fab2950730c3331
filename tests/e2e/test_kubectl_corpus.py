"""Issue 5, scenario 9: every real Deployment of the corpus, through the real API server.

Each corpus file goes into a namespace of its own (`corpus-NN`, made here). Unlabelled,
it is applied with a server-side dry run (all admission and validation, nothing stored);
labelled for inject (tool flyway), it is applied for real, and the stored Deployment is
compared with the unlabelled dry run: the same pod template plus `schemagate-migrate`,
last among the init containers, inheriting from the first app container.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from tests.e2e.harness import LABEL, Kubectl, injection_problem, namespace_object
from tests.factories import corpus, labelled

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhook")]

# Files the API server refuses whether or not they are labelled, with the reason;
# file -> a fragment of the API server's refusal of the unlabelled file.
PLACEHOLDER = 'metadata.name: Invalid value: "<YOUR-'
GRPC_PROBE = "livenessProbe: Required value: must specify a handler type"
REJECTED_EITHER_WAY: dict[str, str] = {
    # Published with <...> placeholders (name, labels) and an app container without an
    # image; the webhook still receives them (mutation runs before validation).
    "cloud-sql-proxy__YOUR-DEPLOYMENT-NAME.proxy_with_http_health_check.yaml": PLACEHOLDER,
    "cloud-sql-proxy__YOUR-DEPLOYMENT-NAME.proxy_with_sa_key.yaml": PLACEHOLDER,
    "cloud-sql-proxy__YOUR-DEPLOYMENT-NAME.proxy_with_workload_identity.yaml": PLACEHOLDER,
    "cloud-sql-proxy__YOUR-PGBOUNCER-DEPLOYMENT-NAME.pgbouncer_deployment.yaml": PLACEHOLDER,
    # gRPC probes are Kubernetes 1.24+: v1.20 drops the unknown `grpc` handler and then
    # finds a probe without any handler. Valid on a current cluster.
    "boutique__cartservice.yaml": GRPC_PROBE,
    "boutique__checkoutservice.yaml": GRPC_PROBE,
}
MIN_ACCEPTED = 74  # of 80 files


def placed(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["metadata"]["namespace"] = namespace
    return out


def apply(
    kubectl: Kubectl, docs: list[dict[str, Any]], *args: str
) -> subprocess.CompletedProcess[str]:
    """One `kubectl apply` of a stream of JSON documents (each handled on its own).

    `--validate=false`: kubectl 1.2x validates client-side against the server's OpenAPI
    when the server (v1.20) has no field validation of its own, and refuses fields newer
    than v1.20 (gRPC probes, a native sidecar's restartPolicy) before the API server sees
    them. Without it the API server decides, as it does for Argo CD or Flux: v1.20 drops
    unknown fields.
    """
    return kubectl(
        "apply",
        "--validate=false",
        *args,
        "-f",
        "-",
        stdin="\n".join(json.dumps(doc) for doc in docs),
    )


def test_every_corpus_deployment_accepted_unlabelled_is_accepted_labelled_and_injected(
    kubectl: Kubectl,
) -> None:
    files = dict(corpus())
    assert set(REJECTED_EITHER_WAY) <= set(files)
    namespaces = {name: f"corpus-{index:02d}" for index, name in enumerate(files)}
    kubectl.apply_objects([namespace_object(ns) for ns in namespaces.values()])
    plain = {name: placed(doc, namespaces[name]) for name, doc in files.items()}
    marked = {
        name: labelled(doc, "inject", {"schemagate.dev/tool": "flyway"})
        for name, doc in plain.items()
    }
    accepted = [name for name in files if name not in REJECTED_EITHER_WAY]

    # Unlabelled, server-side dry run: everything but the listed files is accepted.
    dry = apply(kubectl, [plain[n] for n in accepted], "--dry-run=server", "-o", "json")
    if dry.returncode != 0:
        refused = {
            n: apply(kubectl, [plain[n]], "--dry-run=server").stderr.strip() for n in accepted
        }
        unlisted = json.dumps({n: e for n, e in refused.items() if e}, indent=1)
        pytest.fail(f"unlabelled corpus files refused, not in REJECTED_EITHER_WAY: {unlisted}")
    returned = items(dry.stdout)
    # The listed files are refused unlabelled, for the reason given, and labelled too.
    for name, reason in REJECTED_EITHER_WAY.items():
        unlabelled = apply(kubectl, [plain[name]], "--dry-run=server")
        assert unlabelled.returncode != 0, f"{name} is now accepted: drop it from the list"
        assert reason in unlabelled.stderr, (name, unlabelled.stderr)
        assert apply(kubectl, [marked[name]]).returncode != 0, f"{name} accepted labelled"
        assert kubectl.json("get", "deployments", "-n", namespaces[name])["items"] == []

    # Labelled for inject, applied for real: every accepted file is stored, injected.
    result = apply(kubectl, [marked[n] for n in accepted])
    assert result.returncode == 0, result.stderr
    stored = items(
        kubectl(
            "get", "deployments", "--all-namespaces", "-l", LABEL, "-o", "json", check=True
        ).stdout
    )
    problems = {}
    for name in accepted:
        ns = namespaces[name]
        problem = injection_problem(returned.get(ns), stored.get(ns))
        if problem:
            problems[name] = problem
    assert problems == {}
    assert len(accepted) >= MIN_ACCEPTED


def items(output: str) -> dict[str, dict[str, Any]]:
    """Objects printed by kubectl -o json (one object, or a List), by namespace."""
    out = json.loads(output)
    found = out["items"] if out.get("kind") == "List" else [out]
    return {obj["metadata"]["namespace"]: obj for obj in found}
