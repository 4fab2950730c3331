"""The node tier's whole cluster: pods that really run, and schemagate installed as pods.

In order: the pod network; a control plane listening on its gateway; a PostgreSQL and a
MariaDB there too (so one URL serves the host and the pods); the images; a node; then schemagate
installed with `kubectl apply -k tests/node/overlay` (manifests/base with the image
built here). Its pods bootstrap their certificate in process and patch the caBundle, and
the API server calls them through their Service's endpoints.

`python -m tests.node.stack` (what `make cluster` runs) starts it for a person to explore
and prints the shell lines to reach it; SIGINT or SIGTERM stops every process and removes
all state.
"""

from __future__ import annotations

import base64
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import yaml

from tests.e2e.controlplane import ControlPlane, ensure_binaries
from tests.e2e.harness import HarnessError, Kubectl, namespace_object, wait_for
from tests.node import images
from tests.node.node import GATEWAY, SUBNET, Node, PodNetwork
from tests.support.lifecycle import Started
from tests.support.servers import MariaDBServer, PostgresServer

OVERLAY = Path(__file__).with_name("overlay")
NAMESPACE = "schemagate-system"
# Fixed names for the images, for manifests written ahead (tests/node/overlay and
# tests/node/examples); tests that build their manifests use the images' own refs.
INSTALLED_IMAGE = "localhost/schemagate:e2e"
FIXED_NAMES = {
    "schemagate": INSTALLED_IMAGE,
    "tools": "localhost/schemagate-tools:e2e",
    "busybox": "localhost/schemagate-busybox:e2e",
}
DATABASE = "test"  # the database the overlay's config.yaml declares
INSTALL_TIMEOUT = 180.0

T = TypeVar("T")


class Stack(Started):
    """Everything of the tier; `start()` brings it up in order, `stop()` takes it down."""

    def __init__(self) -> None:
        self.network = PodNetwork()
        self.cluster: ControlPlane | None = None
        self.node: Node | None = None
        self.postgres: PostgresServer | None = None
        self.mariadb: MariaDBServer | None = None
        self.images: dict[str, images.Image] = {}
        self.timings: dict[str, float] = {}
        self._kubectl: Kubectl | None = None

    @property
    def kubectl(self) -> Kubectl:
        if self._kubectl is None:
            raise HarnessError("the stack is not started")
        return self._kubectl

    @property
    def database_url(self) -> str:
        """Database `test`: the same URL from a pod and from the host."""
        assert self.postgres is not None
        return self.postgres.url(DATABASE)

    def start(self) -> None:
        try:
            binaries = self._timed("binaries (build or cache check)", ensure_binaries)
            self.images = self._timed("images (build or cache check)", images.ensure_all)
            self.network.up()
            self.cluster = ControlPlane(binaries, address=GATEWAY)
            self._timed("control plane start", self.cluster.start)
            self.network.route_service(self.cluster.apiserver_port)
            self.postgres = PostgresServer(host=GATEWAY, clients=SUBNET)
            self.postgres.start()
            self.postgres.create_database(DATABASE)
            self.mariadb = MariaDBServer(
                Path(tempfile.mkdtemp(prefix="schemagate-maria-")), GATEWAY
            )
            self.mariadb.start()
            self.mariadb.add_user()
            # Above every `--timeout` the tier hands kubectl (rollouts of pods that run).
            self._kubectl = Kubectl(
                self.cluster.kubeconfig, self.cluster.dir / "kubectl-cache", timeout=300.0
            )
            self.node = Node(self.cluster, binaries, list(self.images.values()))
            self._timed("node start to Ready", self.node.start)
            for name, ref in FIXED_NAMES.items():
                self.node.tag(self.images[name], ref)
            self._timed("schemagate installed and effective", self.install)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.postgres is not None:
            self.postgres.close()
            self.postgres = None
        if self.mariadb is not None:
            self.mariadb.stop()
            shutil.rmtree(self.mariadb.root, ignore_errors=True)
            self.mariadb = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        self.network.down()

    def install(self) -> None:
        """`kubectl apply -k` the overlay, as a user would, and wait until it serves."""
        kube = self.kubectl
        # v1.20 does not label namespaces with their name; the webhook's
        # namespaceSelector excludes kube-system by that label.
        kube.apply_objects([namespace_object(n) for n in ("default", "kube-system")])
        kube.apply_objects([namespace_object(NAMESPACE)])
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "schemagate-test-database", "namespace": NAMESPACE},
            "data": {"url": base64.b64encode(self.database_url.encode()).decode()},
        }
        kube.apply_objects([secret])
        kube("apply", "-k", str(OVERLAY), check=True)
        kube(
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            "deployment/schemagate",
            f"--timeout={INSTALL_TIMEOUT:.0f}s",
            check=True,
        )
        kube(
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            "deployment/schemagate-controller",
            f"--timeout={INSTALL_TIMEOUT:.0f}s",
            check=True,
        )
        wait_for("the API server to call schemagate's pods", self._effective, timeout=60)

    def _effective(self) -> bool:
        probe = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "probe",
                "namespace": "default",
                "labels": {"schemagate.dev/migrate": "inject"},
                "annotations": {"schemagate.dev/tool": "alembic"},
            },
            "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
            },
        }
        done = self.kubectl(
            "create", "--dry-run=server", "-o", "yaml", "-f", "-", stdin=yaml.safe_dump(probe)
        )
        if done.returncode != 0:
            return False
        spec = yaml.safe_load(done.stdout)["spec"]["template"]["spec"]
        return any(c["name"] == "schemagate-migrate" for c in spec.get("initContainers", []))

    def check_alive(self) -> None:
        for part in (self.cluster, self.node):
            if part is not None:
                part.check_alive()

    def _timed(self, what: str, step: Callable[[], T]) -> T:
        started = time.monotonic()
        result = step()
        self.timings[what] = time.monotonic() - started
        return result


def main() -> int:
    """`make cluster`: start everything, print how to reach it, stay up until a signal."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        "starting: control plane, node, images, PostgreSQL, schemagate (first run builds "
        "the binaries and images: up to 15 min)",
        flush=True,
    )
    with Stack() as stack:
        assert stack.cluster is not None
        print(f"export KUBECONFIG={stack.cluster.kubeconfig}")
        print(f"export SCHEMAGATE_TEST_DATABASE_URL={stack.database_url}")
        print(f"export SCHEMAGATE_TEST_ALEMBIC_IMAGE={stack.images['tools'].ref}")
        print(f"export SCHEMAGATE_IMAGE={stack.images['schemagate'].ref}")
        print("cluster ready", flush=True)
        try:
            while True:
                time.sleep(1)
                stack.check_alive()
        except KeyboardInterrupt:
            print("stopping: every process, then all state", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
