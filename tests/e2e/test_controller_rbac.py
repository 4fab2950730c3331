"""What the `run: once` controller's identity may do, asked of a real API server.

manifests/base/controller/rbac.yaml as shipped, applied as a plain manifest; every
answer comes from `kubectl auth can-i --as=` the controller's ServiceAccount.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Kubectl, base_rbac_objects

ACCOUNT = "system:serviceaccount:schemagate-system:schemagate-controller"
WEBHOOK = "system:serviceaccount:schemagate-system:schemagate"

# (verb, resource, namespace): in any namespace, since labelled workloads live anywhere.
ALLOWED = [
    ("list", "deployments.apps", "shop"),
    ("watch", "deployments.apps", "shop"),
    ("get", "deployments.apps", "shop"),
    ("create", "jobs.batch", "shop"),
    ("delete", "jobs.batch", "shop"),
    ("watch", "jobs.batch", "shop"),
    ("get", "configmaps", "shop"),
    ("create", "configmaps", "shop"),
    ("delete", "configmaps", "shop"),
    ("create", "events", "shop"),
]
REFUSED = [
    ("get", "secrets", "shop"),
    ("list", "secrets", "shop"),
    ("create", "secrets", "shop"),
    ("create", "pods", "shop"),
    ("create", "pods/exec", "shop"),
    ("list", "pods", "shop"),
    ("list", "configmaps", "shop"),
    ("watch", "configmaps", "shop"),
    ("update", "configmaps", "shop"),
    ("update", "deployments.apps", "shop"),
    ("patch", "deployments.apps", "shop"),
    ("delete", "deployments.apps", "shop"),
    ("update", "jobs.batch", "shop"),
    ("create", "serviceaccounts/token", "shop"),
    ("get", "mutatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", "shop"),
    ("get", "secrets", "schemagate-system"),
]
# The serving webhook's pods got nothing of this.
WEBHOOK_REFUSED = [
    ("create", "jobs.batch", "shop"),
    ("list", "deployments.apps", "shop"),
    ("create", "configmaps", "shop"),
]


@pytest.fixture(scope="module")
def shipped_rbac(kubectl: Kubectl) -> None:
    kubectl.apply_objects(base_rbac_objects())


def can_i(kubectl: Kubectl, account: str, verb: str, resource: str, namespace: str) -> bool:
    scope = [f"--namespace={namespace}"] if namespace else []
    result = kubectl("auth", "can-i", verb, resource, *scope, f"--as={account}")
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", ALLOWED, ids=" ".join)
def test_the_controller_may_do_what_run_once_needs(
    kubectl: Kubectl, check: tuple[str, str, str]
) -> None:
    assert can_i(kubectl, ACCOUNT, *check)


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", REFUSED, ids=" ".join)
def test_the_controller_may_do_nothing_else(kubectl: Kubectl, check: tuple[str, str, str]) -> None:
    assert not can_i(kubectl, ACCOUNT, *check)


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", WEBHOOK_REFUSED, ids=" ".join)
def test_the_webhook_got_no_new_rights(kubectl: Kubectl, check: tuple[str, str, str]) -> None:
    assert not can_i(kubectl, WEBHOOK, *check)
