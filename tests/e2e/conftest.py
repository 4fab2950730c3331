"""Session fixtures of the e2e tier: a real control plane, kubectl, PostgreSQL, the webhook.

Reusable by later tiers (certificates, issue 6): `cluster` (a `ControlPlane`: `.kubeconfig`,
`.server`, `.ca_cert`, `.ca`, `.user_kubeconfig()`), `kubectl` (a `Kubectl` bound to the
admin kubeconfig) and `new_namespace`. `webhook` additionally runs `schemagate serve` and
registers the project's MutatingWebhookConfiguration (manifests/overlays/local).
"""

from __future__ import annotations

import datetime
import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e import controlplane
from tests.e2e.controlplane import ControlPlane
from tests.e2e.flyway import FlywayHistory
from tests.e2e.harness import (
    INJECTED,
    HarnessError,
    Kubectl,
    WebhookServer,
    base_rbac_objects,
    namespace_object,
    render_local_overlay,
    wait_for,
)
from tests.support import summary
from tests.support.servers import PostgresServer

HERE = Path(__file__).parent
# A cold build (download + compile of kube-apiserver and kube-controller-manager) takes
# 4-8 minutes on 2 cores; the first test, whose setup runs it, gets this much time.
BUILD_TIMEOUT = 1800
# What the gate scenarios find recorded when they start: versions 1, 2 and 41.
FLYWAY_START = {"1": "2026-11-01T09:00:00", "2": "2026-11-02T09:00:00", "41": "2026-11-20T10:00:00"}


def timing(what: str, seconds: float) -> None:
    summary.record("e2e timings", f"{what:<62} {seconds:7.2f} s")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if controlplane.binaries_cached():
        return
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (RBAC) + kube-controller-manager on random loopback ports."""
    session_started = time.monotonic()
    if not controlplane.binaries_cached():
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "\ne2e: building kube-apiserver and kube-controller-manager v1.20.2 from "
                "Debian's source package (first run only, 4-8 min); log: "
                f"{controlplane.BUILD_LOG}"
            )
    binaries = controlplane.ensure_binaries()  # builds once (minutes), then cached
    timing("binaries (build or cache check)", binaries.build_seconds)
    cp = ControlPlane(binaries, with_controller_manager=True)
    try:
        cp.start()
        timing("control plane start to /readyz", cp.start_seconds)
        yield cp
    finally:
        if request.session.testsfailed:
            keep = tmp_path_factory.getbasetemp() / "control-plane-logs"
            keep.mkdir(exist_ok=True)
            for name, log in cp.logs().items():
                if log.exists():
                    shutil.copy(log, keep / f"{name}.log")
            timing(f"(logs kept in {keep})", 0.0)
        cp.stop()
        timing("e2e session (fixtures + tests)", time.monotonic() - session_started)


@pytest.fixture(scope="session")
def kubectl(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    if shutil.which("kubectl") is None:
        raise HarnessError("kubectl is not on PATH (Debian/apt package `kubectl`)")
    kube = Kubectl(cluster.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))
    # API servers label every namespace with its own name from 1.21 on; v1.20 does not, and
    # the webhook's namespaceSelector excludes kube-system by that label.
    kube.apply_objects(
        [namespace_object(n) for n in ("default", "kube-system", "kube-public", "kube-node-lease")]
    )
    return kube


@pytest.fixture
def new_namespace(kubectl: Kubectl) -> Callable[[str], str]:
    """Creates a namespace named `<prefix>-<n>`, unique in the session; returns its name."""

    def make(prefix: str) -> str:
        name = f"{prefix}-{next(_NAMESPACE_IDS)}"
        kubectl.ensure_namespace(name)
        return name

    return make


_NAMESPACE_IDS = itertools.count(1)


@pytest.fixture(scope="session")
def orders_db(postgres: PostgresServer) -> FlywayHistory:
    """A real PostgreSQL database with Flyway's history table (versions 1, 2, 41)."""
    postgres.create_database("e2e_orders")
    history = FlywayHistory(postgres.url("e2e_orders"))
    history.create()
    for version, when in FLYWAY_START.items():
        history.record(version, datetime.datetime.fromisoformat(when))
    return history


@pytest.fixture(scope="session")
def webhook(
    cluster: ControlPlane,
    kubectl: Kubectl,
    orders_db: FlywayHistory,
    tls_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookServer]:
    """`schemagate serve` on loopback, registered with the API server from manifests/."""
    work = tmp_path_factory.mktemp("webhook")
    config = work / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "databases": {
                    "orders": {
                        "url_env": "ORDERS_DATABASE_URL",
                        "tool": "flyway",
                        "namespaces": ["*"],
                    }
                },
                "lookup": {"timeout_seconds": 2, "cache_ttl_seconds": 0},
                "on_unreachable": "closed",
            }
        )
    )
    server = WebhookServer(
        config, tls_dir, work / "schemagate.log", env={"ORDERS_DATABASE_URL": orders_db.dsn}
    )
    timing("webhook start to ready", server.start())
    try:
        started = time.monotonic()
        kubectl.apply_objects(base_rbac_objects())
        objects = render_local_overlay(kubectl, server.port, (tls_dir / "ca.crt").read_bytes())
        kubectl.apply_objects(objects)
        effective = _wait_until_effective(kubectl)
        timing("webhook registered and effective", time.monotonic() - started + effective)
        yield server
    finally:
        server.stop()


def _wait_until_effective(kubectl: Kubectl) -> float:
    """The API server picks up a new webhook configuration asynchronously: probe with a
    server-side dry run until a labelled Deployment comes back mutated."""
    kubectl.ensure_namespace("e2e-probe")
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "probe",
            "namespace": "e2e-probe",
            "labels": {"schemagate.dev/migrate": "inject"},
            "annotations": {"schemagate.dev/tool": "flyway"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }

    def mutated() -> bool:
        result = kubectl(
            "create", "--dry-run=server", "-o", "yaml", "-f", "-", stdin=yaml.safe_dump(probe)
        )
        if result.returncode != 0:
            return False
        out = yaml.safe_load(result.stdout)
        return any(
            c.get("name") == INJECTED
            for c in out["spec"]["template"]["spec"].get("initContainers") or []
        )

    return wait_for("the API server to call the registered webhook", mutated, timeout=30)
