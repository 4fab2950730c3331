"""Helpers of the certificates tier (test_certs_bootstrap.py): a webhook whose certificates
come from `certs.bootstrap`, a steady stream of admissions, service-account clients.

Everything talks to the real API server of the session's `cluster`; nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from certs.bootstrap import BootstrapResult, bootstrap, load_kube_client
from certs.files import write_files
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import INJECTED, Kubectl, injected, wait_for
from tests.support.pki import served_pem

SERVICE = "schemagate"
SECRET = "schemagate-tls"
IPS = ("127.0.0.1",)  # the API server reaches the webhook by URL on loopback


def labelled_deployment(name: str, namespace: str) -> dict[str, Any]:
    """A Deployment in inject mode; 0 replicas, so no Pods are made for it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name, "schemagate.dev/migrate": "inject"},
            "annotations": {"schemagate.dev/tool": "flyway"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }


def webhook_configuration(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The project's MutatingWebhookConfiguration (local overlay), renamed, without caBundle:
    the bootstrap under test is what fills it in."""
    (config,) = [d for d in rendered if d["kind"] == "MutatingWebhookConfiguration"]
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        hook["clientConfig"].pop("caBundle", None)
    return config


def ca_bundles(kubectl: Kubectl, configuration: str) -> list[bytes]:
    config = kubectl.json("get", "mutatingwebhookconfiguration", configuration)
    return [base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in config["webhooks"]]


def wait_until_served(port: int, cert_pem: bytes, timeout: float = 10) -> float:
    """Seconds until the server presents `cert_pem` (it polls its files every second)."""
    return wait_for(
        "the webhook to serve the new certificate",
        lambda: served_pem(port) == cert_pem,
        timeout=timeout,
        interval=0.1,
    )


@dataclass
class Replica:
    """What the server does in a pod: a bootstrap round, then write the files it serves."""

    kubeconfig: Path
    namespace: str
    configuration: str
    tls_dir: Path
    service: str = SERVICE

    async def round(self, **options: Any) -> BootstrapResult:
        api = await load_kube_client(str(self.kubeconfig))
        async with api:
            result = await bootstrap(
                api,
                namespace=self.namespace,
                service=self.service,
                secret=SECRET,
                webhook_configuration=self.configuration,
                ips=IPS,
                **options,
            )
        write_files(self.tls_dir, result.ca_bundle, result.serving)
        return result


@dataclass
class AdmissionLoad:
    """Creates labelled Deployments one after another in a thread, until stopped.

    Each attempt is counted under the current `stage`; a failure is a refused create or
    a Deployment stored without the injected init container.
    """

    kubectl: Kubectl
    namespace: str
    stage: str = "start"
    attempts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> AdmissionLoad:
        self._thread = threading.Thread(target=self._run, name="admission-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        for i in range(100_000):
            if self._stop.is_set():
                return
            stage = self.stage
            self.attempts[stage] += 1
            doc = labelled_deployment(f"load-{i}", self.namespace)
            result = self.kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(doc))
            if result.returncode != 0:
                self.failures.append(f"{stage} load-{i}: {result.stderr.strip()}")
            elif injected(json.loads(result.stdout)) is None:
                self.failures.append(f"{stage} load-{i}: stored without {INJECTED}")


def token_kubeconfig(
    cluster: ControlPlane, kubectl: Kubectl, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig holding a real token of the service account (TokenRequest API): the
    credential a pod has, so RBAC is evaluated exactly as in the cluster."""
    token = kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h", check=True
    ).stdout.strip()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(cluster.ca_cert),
                        },
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": account}}],
                "current-context": "e2e",
            }
        )
    )
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def restored(kubectl: Kubectl, configuration: dict[str, Any], namespace: str) -> Iterator[None]:
    """Use the shipped names (Secret schemagate-tls, configuration schemagate) for a while,
    then put back what the session had: other e2e tests serve behind that configuration."""
    name = configuration["metadata"]["name"]
    found = kubectl("get", "mutatingwebhookconfiguration", name, "-o", "json")
    before = json.loads(found.stdout) if found.returncode == 0 else None
    had_secret = kubectl.get("secret", SECRET, namespace) is not None
    if before is None:
        kubectl.apply_objects([configuration])
    try:
        yield
    finally:
        if not had_secret:
            kubectl("delete", "secret", SECRET, "-n", namespace, "--ignore-not-found")
        if before is None:
            kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
        else:
            ops = [
                {
                    "op": "add",
                    "path": f"/webhooks/{i}/clientConfig/caBundle",
                    "value": w["clientConfig"].get("caBundle", ""),
                }
                for i, w in enumerate(before["webhooks"])
            ]
            kubectl(
                "patch",
                "mutatingwebhookconfiguration",
                name,
                "--type=json",
                "-p",
                json.dumps(ops),
                check=True,
            )


def secret_data(kubectl: Kubectl, namespace: str) -> tuple[dict[str, bytes], str, str]:
    """(data, type, resourceVersion) of the Secret."""
    found = kubectl.get("secret", SECRET, namespace)
    assert found is not None, f"secret {namespace}/{SECRET} was not created"
    data = {k: base64.b64decode(v) for k, v in found["data"].items()}
    return data, found["type"], found["metadata"]["resourceVersion"]


async def replace_secret_data(
    api: client.ApiClient, namespace: str, data: dict[str, bytes]
) -> None:
    core = client.CoreV1Api(api)
    stored = await core.read_namespaced_secret(SECRET, namespace)
    stored.data = {k: base64.b64encode(v).decode() for k, v in data.items()}
    await core.replace_namespaced_secret(SECRET, namespace, stored)


def wait_until_mutating(kubectl: Kubectl, namespace: str) -> float:
    """The API server loads a new webhook configuration asynchronously: dry-run a labelled
    Deployment until it comes back mutated."""
    probe = json.dumps(labelled_deployment("probe", namespace))

    def mutated() -> bool:
        result = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=probe)
        return result.returncode == 0 and injected(json.loads(result.stdout)) is not None

    return wait_for("the API server to call the webhook", mutated, timeout=30)
