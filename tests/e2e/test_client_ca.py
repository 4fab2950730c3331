"""`--client-ca` with a real kube-apiserver that presents a client certificate to the
webhook, set up exactly as docs/security.md shows (its openssl commands and its two admission
files), and the webhook registered for `make run` by `make local-webhook`.

A second control plane of its own: the admission configuration is a start-up flag of
the API server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml

from tests import server
from tests.e2e import controlplane
from tests.e2e.certs_fixtures import ca_bundles, labelled_deployment, wait_until_mutating
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import REPO, WEBHOOK_CONFIGURATION, Kubectl, injected, namespace_object
from tests.factories import deployment, review
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

APPS = "client-ca-apps"
SECURITY = (REPO / "docs" / "security.md").read_text(encoding="utf-8")


def readme_block(first_line: str) -> str:
    """The fenced block of docs/security.md whose first line is `first_line`."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", SECURITY, re.M | re.S)
    (found,) = [b for b in blocks if b.splitlines()[0] == first_line]
    return str(found)


@dataclass
class Rig:
    cluster: ControlPlane
    kubectl: Kubectl
    work: Path
    port: int


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("client-ca")
    # The docs' commands for the client CA and certificate, as written, but for the
    # ConfigMap (the webhook runs on this host, not in a pod).
    commands = readme_block(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1825 \\"
    )
    script = "\n".join(
        line for line in commands.replace("\\\n", " ").splitlines() if "kubectl" not in line
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, check=True, timeout=60)
    # The docs' two files, with this machine's paths and the webhook's address (a
    # webhook reached by URL is named host:port in the kubeconfig).
    port = free_port()
    admission = yaml.safe_load(readme_block("# --admission-control-config-file"))
    kubeconfig = yaml.safe_load(
        readme_block(
            "# /etc/kubernetes/admission/webhooks.kubeconfig: one user per webhook, named after the"
        )
    )
    (plugin,) = admission["plugins"]
    plugin["configuration"]["kubeConfigFile"] = str(work / "webhooks.kubeconfig")
    (user,) = kubeconfig["users"]
    user["name"] = f"127.0.0.1:{port}"
    user["user"] = {k: str(work / Path(v).name) for k, v in user["user"].items()}
    (work / "admission.yaml").write_text(json.dumps(admission))
    (work / "webhooks.kubeconfig").write_text(json.dumps(kubeconfig))

    cluster = ControlPlane(
        controlplane.ensure_binaries(),
        with_controller_manager=False,
        admission_config=work / "admission.yaml",
    )
    cluster.start()
    try:
        kubectl = Kubectl(cluster.kubeconfig, work / "kubectl-cache")
        kubectl.apply_objects([namespace_object(APPS)])
        yield Rig(cluster, kubectl, work, port)
    finally:
        cluster.stop()


def test_make_local_webhook_registers_make_run_with_its_ca_bundle(rig: Rig) -> None:
    run_dir = rig.work / "run"
    made = subprocess.run(
        ["make", "-s", "-C", str(REPO), "local-webhook", f"PORT={rig.port}", f"RUN_DIR={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECONFIG": str(rig.cluster.kubeconfig)},
    )
    assert made.returncode == 0, made.stderr
    assert ca_bundles(rig.kubectl, WEBHOOK_CONFIGURATION) == [
        (run_dir / "tls" / "ca.crt").read_bytes()
    ]
    config = rig.kubectl.json("get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    assert config["webhooks"][0]["clientConfig"]["url"] == f"https://127.0.0.1:{rig.port}/mutate"


def test_the_api_server_is_served_and_everyone_else_refused(rig: Rig) -> None:
    run_dir = rig.work / "run"  # registered by the test above
    config = rig.work / "config.yaml"
    config.write_text("{}\n")
    served = server.start(
        config,
        run_dir / "tls",
        rig.work / "serve.log",
        port=rig.port,
        extra=("--client-ca", str(rig.work / "client-ca.crt")),
    )
    try:
        # The API server presents the docs' client certificate: admitted and mutated.
        wait_until_mutating(rig.kubectl, APPS)
        created = rig.kubectl.json(
            "create", "-f", "-", stdin=json.dumps(labelled_deployment("api", APPS))
        )
        assert injected(created) is not None
        # Anyone else reaching the port cannot forge a review.
        status, body = served.request("POST", "/mutate", orjson.dumps(review(deployment())))
        assert (status, body) == (
            403,
            b"a client certificate signed by the --client-ca is required\n",
        )
    finally:
        assert served.stop() == 0
