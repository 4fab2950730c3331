"""The certificate commands as an operator runs them, against the real API server:
`schemagate certs bootstrap`, and `schemagate serve --cert-secret` bootstrapping in-process."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import server
from tests.e2e.certs_fixtures import secret_data, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Kubectl, render_local_overlay, unreachable_kubeconfig
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

NAMESPACE = "certs-commands"
SECRET = "schemagate-tls"


@pytest.fixture
def configuration(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A MutatingWebhookConfiguration of our own with no caBundle, deleted afterwards."""
    name = f"schemagate-{request.node.name.replace('_', '-')[:40]}"
    kubectl.ensure_namespace(NAMESPACE)
    kubectl("delete", "secret", SECRET, "-n", NAMESPACE, "--ignore-not-found")
    rendered = render_local_overlay(kubectl, free_port(), b"")
    kubectl.apply_objects([webhook_configuration(rendered, name)])
    yield name
    kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
    kubectl("delete", "secret", SECRET, "-n", NAMESPACE, "--ignore-not-found")


def _bootstrap(
    cluster: ControlPlane, configuration: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(server.SCHEMAGATE),
            "certs",
            "bootstrap",
            "--namespace",
            NAMESPACE,
            "--service",
            "schemagate",
            "--secret",
            SECRET,
            "--webhook-configuration",
            configuration,
            "--kubeconfig",
            str(kubeconfig or cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bundle(kubectl: Kubectl, configuration: str) -> bytes:
    config = kubectl.json("get", "mutatingwebhookconfiguration", configuration)
    return base64.b64decode(config["webhooks"][0]["clientConfig"].get("caBundle", ""))


def test_certs_bootstrap_command(
    cluster: ControlPlane, kubectl: Kubectl, configuration: str, tmp_path: Path
) -> None:
    first = _bootstrap(cluster, configuration)
    assert first.returncode == 0, first.stderr
    assert f"created secret {NAMESPACE}/{SECRET}" in first.stdout.splitlines()
    data, kind, _ = secret_data(kubectl, NAMESPACE)
    assert kind == "kubernetes.io/tls"
    assert _bundle(kubectl, configuration) == data["ca.crt"]

    again = _bootstrap(cluster, configuration)
    assert (again.returncode, again.stdout) == (
        0,
        "nothing to do: the Secret and caBundle are valid\n",
    )

    nowhere = tmp_path / "kubeconfig"
    port = unreachable_kubeconfig(nowhere)
    refused = _bootstrap(cluster, configuration, nowhere)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"schemagate: cannot reach the API server at https://127.0.0.1:{port}"
    )
    assert len(refused.stderr.strip().splitlines()) == 1


def test_serve_bootstraps_its_certificate_before_listening(
    cluster: ControlPlane, kubectl: Kubectl, configuration: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    tls = tmp_path / "tls"  # an emptyDir in the pod: nothing there yet
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [
            str(server.SCHEMAGATE),
            "serve",
            "--config",
            str(config),
            "--tls-cert",
            str(tls / "tls.crt"),
            "--tls-key",
            str(tls / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--cert-secret",
            SECRET,
            "--namespace",
            NAMESPACE,
            "--service",
            "schemagate",
            "--webhook-configuration",
            configuration,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tls / "tls.crt").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no certificate files written in 30 s"
            time.sleep(0.1)
        data, _, _ = secret_data(kubectl, NAMESPACE)
        assert (tls / "tls.crt").read_bytes() == data["tls.crt"]
        bundle = _bundle(kubectl, configuration)
        assert (tls / "ca.crt").read_bytes() == bundle

        # A client trusting only the caBundle verifies the server as the Service's name.
        context = ssl.create_default_context(cadata=bundle.decode())
        while True:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
                    context.wrap_socket(
                        sock, server_hostname=f"schemagate.{NAMESPACE}.svc"
                    ) as conn,
                ):
                    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert conn.recv(4096).startswith(b"HTTP/1.1 200")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, log.read_text()


def test_certs_bootstrap_every_keeps_running_until_sigterm(
    cluster: ControlPlane, kubectl: Kubectl, configuration: str, tmp_path: Path
) -> None:
    """What the schemagate-certs Deployment runs: a round at once, more every interval,
    a clean exit on SIGTERM (the pod being stopped)."""
    log = tmp_path / "certs.log"
    proc = subprocess.Popen(
        [
            str(server.SCHEMAGATE),
            "certs",
            "bootstrap",
            f"--namespace={NAMESPACE}",
            "--service=schemagate",
            f"--secret={SECRET}",
            f"--webhook-configuration={configuration}",
            "--every=1",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count("nothing to do: the Secret and caBundle are valid") < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        data, _, _ = secret_data(kubectl, NAMESPACE)
        assert _bundle(kubectl, configuration) == data["ca.crt"]
        assert f"certificates: created secret {NAMESPACE}/{SECRET}" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, log.read_text()
