"""The install, as a user applies it, running as pods: `kubectl apply -k tests/node/overlay`.

The stack has applied it and waited for `rollout status` and for the API server to call
the pods. These tests read what really runs: the processes' identity and file system in
the pods, the caBundle the pods wrote, the budget and the preStop pause at work.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from tests.e2e.harness import Kubectl
from tests.node.stack import INSTALLED_IMAGE, NAMESPACE, Stack
from tests.node.workloads import WEBHOOK, wait_serving, webhook_pods

CERTS = "app.kubernetes.io/name=schemagate-certs"


def python_in(kube: Kubectl, pod: dict[str, Any], code: str) -> list[str]:
    """The output lines of `code` run by the image's own interpreter in a serving pod."""
    name = pod["metadata"]["name"]
    done = kube("exec", "-n", NAMESPACE, name, "--", "/opt/venv/bin/python", "-c", code, check=True)
    return done.stdout.splitlines()


def test_runs_as_pods_from_the_image_built_here(stack: Stack, kube: Kubectl) -> None:
    built = stack.images["schemagate"].ref
    pods = webhook_pods(kube)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["containers"][0]["image"] == INSTALLED_IMAGE
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        # The runtime names the image by either of its two tags: the same image.
        assert status["image"] in (INSTALLED_IMAGE, built)
        assert pod["spec"]["nodeName"] == "node-1"


def test_the_processes_are_non_root_on_a_read_only_root(kube: Kubectl) -> None:
    probe = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n"
        "    open('/probe', 'w')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    for pod in webhook_pods(kube):
        assert python_in(kube, pod, probe) == ["65532 65532", "Read-only file system"]


def test_the_pods_run_the_core_compiled(kube: Kubectl) -> None:
    """The Dockerfile's builder compiled the pure core with mypyc (setup.py): the serving
    process has the extensions loaded, and the edges are Python."""
    probe = (
        "import sys\n"
        "for name in ('webhook.decide', 'webhook.review', 'webhook.tools.flyway', 'webhook.app'):\n"
        "    print(name, sys.modules[name].__file__.rsplit('.', 1)[-1])\n"
    )
    for pod in webhook_pods(kube):
        # The running server (PID 1) has the extension mapped; a second interpreter from
        # the same image then names the file behind each module.
        maps = python_in(kube, pod, "print(open('/proc/1/maps').read())")
        name = pod["metadata"]["name"]
        assert any("/site-packages/webhook/decide.cpython-311" in line for line in maps), name
        assert python_in(kube, pod, "import webhook.app, webhook.tools.flyway\n" + probe) == [
            "webhook.decide so",
            "webhook.review so",
            "webhook.tools.flyway so",
            "webhook.app py",
        ]


def test_the_bootstrap_pod_made_the_certificate_and_the_ca_bundle(kube: Kubectl) -> None:
    # The schemagate-certs Deployment, under its own account, did it at install.
    certs_logs = kube("logs", "-n", NAMESPACE, "-l", CERTS, "--tail=-1", check=True).stdout
    assert f"certificates: created secret {NAMESPACE}/schemagate-tls" in certs_logs, certs_logs
    assert "certificates: set caBundle of 1 webhook(s)" in certs_logs, certs_logs
    secret = kube.json("get", "secret", "schemagate-tls", "-n", NAMESPACE)
    config = kube.json("get", "mutatingwebhookconfiguration", "schemagate")
    ca_bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    ca = base64.b64decode(secret["data"]["ca.crt"])
    assert ca_bundle == ca
    # The API server reached the pods through the Service (its endpoints): each labelled
    # review is logged by the pod that answered it.
    logs = kube("logs", "-n", NAMESPACE, "-l", WEBHOOK, "--tail=-1", check=True).stdout
    reviews = [json.loads(line) for line in logs.splitlines() if '"uid"' in line]
    assert reviews, "no admission was logged by the webhook's pods"


def test_the_serving_pods_hold_no_token_and_no_ca_key(kube: Kubectl) -> None:
    """Least privilege as it runs: no service-account token to steal, and of the TLS
    Secret only the serving pair (never ca.key), mounted read-only."""
    probe = (
        "import os\n"
        "print(sorted(n for n in os.listdir('/run/schemagate/tls') if not n.startswith('.')))\n"
        "print(os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount'))\n"
    )
    pods = webhook_pods(kube)
    assert pods
    for pod in pods:
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert python_in(kube, pod, probe) == ["['tls.crt', 'tls.key']", "False"]


def test_the_disruption_budget_keeps_one_replica(kube: Kubectl) -> None:
    wait_serving(kube)
    budget = kube.json("get", "pdb", "schemagate", "-n", NAMESPACE)
    assert budget["status"]["currentHealthy"] == 2
    assert budget["status"]["disruptionsAllowed"] == 1
    first, second = (p["metadata"]["name"] for p in webhook_pods(kube))
    assert _evict(kube, first).returncode == 0
    refused = _evict(kube, second)
    assert refused.returncode != 0
    assert "disruption budget" in refused.stderr
    wait_serving(kube)


def test_pre_stop_keeps_a_deleted_pod_serving_for_five_seconds(kube: Kubectl) -> None:
    wait_serving(kube)
    name = webhook_pods(kube)[0]["metadata"]["name"]
    started = time.monotonic()
    kube("delete", "pod", "-n", NAMESPACE, name, "--wait=true", check=True)
    # Without the preStop pause the server exits within a second of SIGTERM.
    assert time.monotonic() - started >= 5.0
    wait_serving(kube)


def _evict(kube: Kubectl, pod: str) -> Any:
    eviction = {
        "apiVersion": "policy/v1beta1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": NAMESPACE},
    }
    return kube(
        "create",
        "--raw",
        f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
    )
