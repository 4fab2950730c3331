"""What the e2e tests drive: kubectl, the `schemagate serve` process, the webhook registration.

Kept apart from conftest.py so that tests (and the certificates tier) can import the
types; conftest.py only wires them into fixtures.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from tests import server
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
LOCAL_OVERLAY = REPO / "manifests" / "overlays" / "local"
BASE = REPO / "manifests" / "base"
WEBHOOK_CONFIGURATION = "schemagate"
WEBHOOK_NAME = "migrate.schemagate.dev"
LABEL = "schemagate.dev/migrate"
INJECTED = "schemagate-migrate"
# What issue 3 says the injected container inherits from the app container, written out
# here rather than imported from webhook.inject, so the tests check the code against it.
INHERITED = (
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "resources",
    "imagePullPolicy",
    "workingDir",
)
OWN_NAMESPACE = "schemagate-system"
REQUESTS_METRIC = "schemagate_admission_requests_total"


class HarnessError(RuntimeError):
    """Setting up the tier failed; str() says what and carries the relevant output."""


# --- kubectl ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against one cluster; every call returns the CompletedProcess."""

    kubeconfig: Path
    cache_dir: Path
    binary: str = "kubectl"
    timeout: float = 90.0

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *args,
        ]
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}"
            )
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        """Run with `-o json` (must succeed) and return the parsed output."""
        return json.loads(self(*args, "-o", "json", stdin=stdin, check=True).stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The stored object, or None when the API server says NotFound."""
        result = self("get", kind, name, "-n", namespace, "-o", "json")
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise HarnessError(f"kubectl get {kind}/{name} -n {namespace}: {result.stderr}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def apply_objects(self, objects: Iterable[Mapping[str, Any]], *args: str) -> None:
        """`kubectl apply -f -` a list of objects; must succeed."""
        items = list(objects)
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        self("apply", "-f", "-", *args, stdin=json.dumps(doc), check=True)

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace (idempotent) with the `kubernetes.io/metadata.name` label
        that API servers set themselves from 1.21 on: the webhook's namespaceSelector
        relies on it, and v1.20 does not set it."""
        self.apply_objects([namespace_object(name)])


def namespace_object(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
    }


# --- the webhook process ---------------------------------------------------------------


class WebhookServer:
    """`schemagate serve` on 127.0.0.1 (via tests/server.py); stop() and start() keep the port.

    `tls_dir` holds ca.crt, tls.crt and tls.key as `schemagate certs issue` writes them.
    """

    def __init__(
        self,
        config: Path,
        tls_dir: Path,
        log: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.tls_dir = tls_dir
        self.ca = tls_dir / "ca.crt"
        self.log = log
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = dict(env or {})
        self._served: server.Served | None = None

    def start(self) -> float:
        """Start and wait until it answers; returns the seconds it took."""
        started = time.monotonic()
        try:
            self._served = server.start(
                self.config,
                self.tls_dir,
                self.log,
                port=self.port,
                env=self.env,
                extra=("--namespace", OWN_NAMESPACE),
            )
        except (RuntimeError, OSError) as exc:
            raise HarnessError(f"schemagate serve did not start: {exc}") from None
        return time.monotonic() - started

    def stop(self) -> None:
        served, self._served = self._served, None
        if served is not None:
            served.stop()

    @property
    def served(self) -> server.Served:
        if self._served is None:
            raise HarnessError("the webhook is stopped")
        return self._served

    def requests_total(self, **labels: str) -> float:
        """`schemagate_admission_requests_total` summed over the series matching `labels`."""
        return self.served.metric(REQUESTS_METRIC, **labels)


# --- the MutatingWebhookConfiguration from manifests/ ----------------------------------


def render_local_overlay(kubectl: Kubectl, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """`kubectl kustomize manifests/overlays/local`, with our port and caBundle filled in."""
    result = kubectl("kustomize", str(LOCAL_OVERLAY))
    if result.returncode != 0:
        raise HarnessError(f"kubectl kustomize {LOCAL_OVERLAY} failed:\n{result.stderr}")
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    configs = [
        d
        for d in docs
        if d.get("kind") == "MutatingWebhookConfiguration"
        and d.get("metadata", {}).get("name") == WEBHOOK_CONFIGURATION
    ]
    if len(configs) != 1:
        raise HarnessError(
            f"{LOCAL_OVERLAY} renders {len(configs)} MutatingWebhookConfiguration "
            f"named {WEBHOOK_CONFIGURATION!r}, expected 1"
        )
    hooks = [w for w in configs[0].get("webhooks", []) if w.get("name") == WEBHOOK_NAME]
    if len(hooks) != 1:
        raise HarnessError(f"{LOCAL_OVERLAY}: no webhook named {WEBHOOK_NAME!r}")
    client = hooks[0].setdefault("clientConfig", {})
    url = urlsplit(str(client.get("url", "")))
    if url.scheme != "https" or url.hostname != "127.0.0.1":
        raise HarnessError(
            f"{LOCAL_OVERLAY}: clientConfig.url is {client.get('url')!r}, "
            "expected https://127.0.0.1:PORT/..."
        )
    client["url"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{port}"))
    client["caBundle"] = base64.b64encode(ca_pem).decode()
    return docs


def base_rbac_objects() -> list[dict[str, Any]]:
    """The webhook's own namespace, its and the controller's service accounts and RBAC,
    as plain manifests."""
    objects: list[dict[str, Any]] = []
    for name in (
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "controller/serviceaccount.yaml",
        "controller/rbac.yaml",
    ):
        path = BASE / name
        if not path.is_file():
            raise HarnessError(f"{path} is missing")
        objects += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    for obj in objects:
        if obj.get("kind") == "Namespace":  # what API servers >= 1.21 add themselves
            meta = obj["metadata"]
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    return objects


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float = 30.0, interval: float = 0.2
) -> float:
    """Poll `probe` until it is true; returns the seconds waited, or raises naming `what`."""
    started = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload (spec.template.spec, a CronJob's
    spec.jobTemplate.spec.template.spec) or of a Pod (spec)."""
    spec: dict[str, Any] = obj["spec"]
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"] if "template" in spec else spec


def init_container_names(obj: Mapping[str, Any]) -> list[str]:
    """Names of the init containers of a workload's pod template, or of a Pod."""
    return [c.get("name") for c in pod_spec(obj).get("initContainers") or []]


def injected(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored `schemagate-migrate` init container of a workload or Pod, if any."""
    for container in pod_spec(obj).get("initContainers") or []:
        if container.get("name") == INJECTED:
            found: dict[str, Any] = container
            return found
    return None


def warnings(stderr: str) -> list[str]:
    """The admission warnings kubectl printed (`Warning: ...` lines)."""
    return [
        line.removeprefix("Warning: ")
        for line in stderr.splitlines()
        if line.startswith("Warning: ")
    ]


def unreachable_kubeconfig(path: Path) -> int:
    """Write a kubeconfig pointing at a loopback port nothing listens on; return the port."""
    port = free_port()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "x", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "x", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                "current-context": "x",
            }
        )
    )
    return port


def injection_problem(plain: dict[str, Any] | None, stored: dict[str, Any] | None) -> str | None:
    """Why `stored` is not `plain` + a correctly inherited schemagate-migrate, or None."""
    if plain is None or stored is None:
        return "not returned by the dry run" if plain is None else "not stored"
    if stored["metadata"]["labels"].get(LABEL) != "inject":
        return "label missing"
    want_pod, got_pod = pod_spec(plain), pod_spec(stored)
    names = [c["name"] for c in got_pod.get("initContainers", [])]
    before = [c["name"] for c in want_pod.get("initContainers", [])]
    if names != [*before, INJECTED]:
        return f"init containers {names}, expected {[*before, INJECTED]}"
    *kept, migrate = got_pod["initContainers"]
    if kept != want_pod.get("initContainers", []):
        return "existing init containers changed"
    rest = {k: v for k, v in got_pod.items() if k != "initContainers"}
    if rest != {k: v for k, v in want_pod.items() if k != "initContainers"}:
        return "pod template changed outside initContainers"
    app = got_pod["containers"][0]
    if migrate.get("image") != app.get("image"):
        return f"image {migrate.get('image')!r}, app has {app.get('image')!r}"
    if migrate.get("command") != ["flyway", "migrate"]:
        return f"command {migrate.get('command')}"
    for key in INHERITED:
        if migrate.get(key) != app.get(key):
            return f"{key}: {migrate.get(key)!r} != app's {app.get(key)!r}"
    return None
