"""Issue 6: certificates in the cluster, against a real kube-apiserver.

A webhook here gets its certificate the way it does in a pod: `certs.bootstrap` keeps
the Secret and the caBundle, and the server serves the files written from the result.
The bootstrap tests use their own Secret namespace and MutatingWebhookConfiguration, so
they never disturb the session's `webhook` fixture; the RBAC tests must use the shipped
names and put back what they found.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certs.bootstrap import BootstrapError, BootstrapResult, load_kube_client
from certs.bundle import split_pem
from certs.files import write_files
from certs.issue import KeyPair, issue_serving, service_dns_names, verify_chain
from certs.rotation import Phase
from tests import server
from tests.e2e.certs_fixtures import (
    IPS,
    SECRET,
    SERVICE,
    AdmissionLoad,
    Replica,
    ca_bundles,
    labelled_deployment,
    replace_secret_data,
    restored,
    secret_data,
    token_kubeconfig,
    wait_until_mutating,
    wait_until_served,
    webhook_configuration,
)
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import (
    OWN_NAMESPACE,
    WEBHOOK_CONFIGURATION,
    Kubectl,
    WebhookServer,
    base_rbac_objects,
    injected,
    render_local_overlay,
    unreachable_kubeconfig,
)
from tests.support.net import free_port
from tests.support.pki import served_pem

pytestmark = pytest.mark.e2e

NAMESPACE = "certs-e2e"  # where the Secret lives: stands for schemagate-system
APPS = "certs-e2e-apps"  # where labelled Deployments are created
CONFIGURATION = "schemagate-certs-e2e"
# The production default is 15 min; the server here polls its files every second.
SETTLE = timedelta(seconds=4)
ROUND_INTERVAL = 0.5
MAX_ROUNDS = 60
# The bootstrap's own identity, and the serving pods' (which must hold no such right).
CERTS_ACCOUNT = "schemagate-certs"
SERVING_ACCOUNT = "schemagate"


@dataclass
class Rig:
    replica: Replica
    webhook: WebhookServer
    first: BootstrapResult

    def admissions(self) -> float:
        """Admission requests the server has handled (its CA may have changed since start)."""
        self.webhook.served.context = server.client_context(self.replica.tls_dir / "ca.crt")
        return self.webhook.requests_total()


@pytest.fixture(scope="module")
async def rig(
    cluster: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    """An empty Secret namespace, our own webhook configuration, one bootstrap round, and
    `schemagate serve` on the files that round wrote, registered with the API server."""
    for namespace in (NAMESPACE, APPS):
        kubectl.ensure_namespace(namespace)
    work = tmp_path_factory.mktemp("certs-e2e")
    port = free_port()
    rendered = render_local_overlay(kubectl, port, b"")
    kubectl.apply_objects([webhook_configuration(rendered, CONFIGURATION)])
    replica = Replica(cluster.kubeconfig, NAMESPACE, CONFIGURATION, work / "tls")
    config = work / "config.yaml"
    config.write_text("{}\n")
    webhook = WebhookServer(config, replica.tls_dir, work / "schemagate.log", port=port)
    try:
        first = await replica.round()
        webhook.start()
        wait_until_mutating(kubectl, APPS)
        yield Rig(replica, webhook, first)
    finally:
        webhook.stop()
        kubectl("delete", "mutatingwebhookconfiguration", CONFIGURATION, "--ignore-not-found")


def test_bootstrap_from_empty(rig: Rig, kubectl: Kubectl) -> None:
    assert rig.first.phase is Phase.STEADY
    assert f"created secret {NAMESPACE}/{SECRET}" in rig.first.changes
    assert "set caBundle of 1 webhook(s)" in rig.first.changes
    data, kind, _ = secret_data(kubectl, NAMESPACE)
    assert kind == "kubernetes.io/tls"
    assert set(data) >= {"ca.crt", "ca.key", "tls.crt", "tls.key"}

    (bundle,) = ca_bundles(kubectl, CONFIGURATION)
    now = datetime.now(UTC)
    for name in (f"{SERVICE}.{NAMESPACE}.svc", *IPS):
        verify_chain(data["tls.crt"], bundle, name, now)

    before = rig.admissions()
    doc = labelled_deployment("after-bootstrap", APPS)
    created = kubectl.json("create", "-f", "-", stdin=json.dumps(doc))
    assert injected(created) is not None
    assert rig.admissions() > before  # our server, not only another webhook, admitted it


async def test_second_round_changes_nothing(rig: Rig, kubectl: Kubectl) -> None:
    secret_before, _, secret_rv = secret_data(kubectl, NAMESPACE)
    config_rv = kubectl.json("get", "mutatingwebhookconfiguration", CONFIGURATION)
    result = await rig.replica.round()
    _, _, secret_rv_after = secret_data(kubectl, NAMESPACE)
    config_rv_after = kubectl.json("get", "mutatingwebhookconfiguration", CONFIGURATION)
    assert result.changes == ()
    assert secret_rv_after == secret_rv
    assert (
        config_rv_after["metadata"]["resourceVersion"] == config_rv["metadata"]["resourceVersion"]
    )
    assert result.serving.cert_pem == secret_before["tls.crt"]


async def test_three_concurrent_bootstraps_agree(
    cluster: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    namespace, name = "certs-e2e-race", "schemagate-certs-race"
    kubectl.ensure_namespace(namespace)
    config = webhook_configuration(render_local_overlay(kubectl, 1, b""), name)
    second = json.loads(json.dumps(config["webhooks"][0])) | {"name": "second.schemagate.dev"}
    config["webhooks"].append(second)
    for hook in config["webhooks"]:  # never called: this configuration only holds a caBundle
        hook["objectSelector"] = {"matchLabels": {"schemagate.dev/never": "true"}}
    kubectl.apply_objects([config])
    try:
        replicas = [
            Replica(cluster.kubeconfig, namespace, name, tmp_path / str(i)) for i in range(3)
        ]
        results = await asyncio.gather(*(r.round() for r in replicas))
        created = [r for r in results if f"created secret {namespace}/{SECRET}" in r.changes]
        assert len(created) == 1, [r.changes for r in results]
        data, _, _ = secret_data(kubectl, namespace)
        assert {r.serving.cert_pem for r in results} == {data["tls.crt"]}
        assert {r.ca_bundle for r in results} == {data["ca.crt"]}
        assert ca_bundles(kubectl, name) == [data["ca.crt"]] * 2
        files = {(r.tls_dir / "tls.crt").read_bytes() for r in replicas}
        assert files == {data["tls.crt"]}
    finally:
        kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")


async def rounds_until(
    rig: Rig, load: AdmissionLoad, phase: Phase, **options: Any
) -> list[BootstrapResult]:
    """A replica's refresh loop, compressed: round, write files, wait; until `phase`."""
    results: list[BootstrapResult] = []
    for _ in range(MAX_ROUNDS):
        results.append(await rig.replica.round(settle=SETTLE, **options))
        options.pop("rotate_ca", None)  # asked for once, like `certs bootstrap --rotate-ca`
        load.stage = results[-1].phase.value
        if results[-1].phase is phase:
            return results
        await asyncio.sleep(ROUND_INTERVAL)
    raise AssertionError(f"not {phase} after {MAX_ROUNDS} rounds: {[r.changes for r in results]}")


async def test_renewal_and_ca_rotation_under_load(rig: Rig, kubectl: Kubectl) -> None:
    """Admissions keep flowing, and keep being mutated, through a serving-cert renewal
    and a full CA rotation: not one is refused."""
    port = rig.webhook.port
    admitted_before = rig.admissions()
    names = service_dns_names(SERVICE, NAMESPACE)
    with AdmissionLoad(kubectl, APPS) as load:
        await asyncio.sleep(2)

        # A serving cert eight months into its year: two hours in, one hour left.
        load.stage = "expiring"
        data, _, _ = secret_data(kubectl, NAMESPACE)
        ca = KeyPair(data["ca.crt"], data["ca.key"])
        now = datetime.now(UTC)
        expiring = issue_serving(
            ca, names, IPS, now=now - timedelta(hours=2), lifetime=timedelta(hours=3)
        )
        api = await load_kube_client(str(rig.replica.kubeconfig))
        async with api:
            await replace_secret_data(
                api, NAMESPACE, data | {"tls.crt": expiring.cert_pem, "tls.key": expiring.key_pem}
            )
        write_files(rig.replica.tls_dir, data["ca.crt"], expiring)
        wait_until_served(port, expiring.cert_pem)
        await asyncio.sleep(1)

        load.stage = "renewal"
        renewed = await rig.replica.round(settle=SETTLE)
        assert any("less than a third" in c for c in renewed.changes), renewed.changes
        assert renewed.serving != expiring
        wait_until_served(port, renewed.serving.cert_pem)
        await asyncio.sleep(1)

        rotation = await rounds_until(rig, load, Phase.STEADY, rotate_ca=True)
        wait_until_served(port, rotation[-1].serving.cert_pem)
        await asyncio.sleep(2)

    assert load.failures == []
    phases = [r.phase for r in rotation]
    assert phases[0] is Phase.PENDING
    assert Phase.RETIRING in phases
    stages = ("start", "expiring", "renewal", "pending", "retiring", "steady")
    assert all(load.attempts[s] > 0 for s in stages), load.attempts
    assert rig.admissions() - admitted_before >= sum(load.attempts.values())

    # Only the new CA is trusted now, and the server serves a cert it signed.
    (old_ca,) = split_pem(renewed.ca_bundle)
    (new_ca,) = split_pem(rotation[-1].ca_bundle)
    assert new_ca != old_ca
    assert ca_bundles(kubectl, CONFIGURATION) == [new_ca]
    verify_chain(served_pem(port), new_ca, "127.0.0.1", datetime.now(UTC))
    print(f"admissions per stage: {dict(load.attempts)}; rotation rounds: {len(rotation)}")


# --- RBAC: the shipped Role and ClusterRole -------------------------------------------------

NEEDED = [
    ("get", "secrets/schemagate-tls"),
    ("create", "secrets"),
    ("update", "secrets/schemagate-tls"),
    ("get", "mutatingwebhookconfigurations/schemagate"),
    ("patch", "mutatingwebhookconfigurations/schemagate"),
]
REFUSED = [
    ("get", "secrets/other"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("delete", "secrets/schemagate-tls"),
    ("get", "secrets/schemagate-tls", "--namespace=default"),
    ("create", "secrets", "--namespace=default"),
    ("get", "mutatingwebhookconfigurations/other"),
    ("patch", "mutatingwebhookconfigurations/other"),
    ("list", "mutatingwebhookconfigurations"),
    ("create", "mutatingwebhookconfigurations"),
    ("delete", "mutatingwebhookconfigurations/schemagate"),
    ("get", "validatingwebhookconfigurations/schemagate"),
]


@pytest.fixture(scope="module")
def shipped_rbac(kubectl: Kubectl) -> None:
    kubectl.apply_objects(base_rbac_objects())


def can_i(kubectl: Kubectl, *args: str, account: str = CERTS_ACCOUNT) -> bool:
    # The last --namespace given wins, so a check can name another namespace.
    user = f"system:serviceaccount:{OWN_NAMESPACE}:{account}"
    result = kubectl("auth", "can-i", f"--namespace={OWN_NAMESPACE}", *args, f"--as={user}")
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", NEEDED, ids=" ".join)
def test_rbac_allows_what_bootstrap_needs(kubectl: Kubectl, check: tuple[str, ...]) -> None:
    assert can_i(kubectl, *check)


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", REFUSED, ids=" ".join)
def test_rbac_refuses_everything_else(kubectl: Kubectl, check: tuple[str, ...]) -> None:
    assert not can_i(kubectl, *check)


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize("check", [*NEEDED, *REFUSED], ids=" ".join)
def test_serving_pods_may_do_none_of_it(kubectl: Kubectl, check: tuple[str, ...]) -> None:
    """A stolen serving token cannot rewrite the webhook (widen its rules, point it
    elsewhere, drop its objectSelector) nor read the CA's key: it mounts the Secret."""
    assert not can_i(kubectl, *check, account=SERVING_ACCOUNT)


@pytest.mark.usefixtures("shipped_rbac")
def test_serving_account_cannot_patch_the_webhook_configuration(kubectl: Kubectl) -> None:
    """The attack of the issue, as a server-side dry run: widen the rules to */*."""
    with restored(kubectl, shipped_configuration(kubectl), OWN_NAMESPACE):
        widen = json.dumps(
            [{"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["*/*"]}]
        )
        attempts = {
            account: kubectl(
                "patch",
                "mutatingwebhookconfiguration",
                WEBHOOK_CONFIGURATION,
                "--type=json",
                "-p",
                widen,
                "--dry-run=server",
                f"--as=system:serviceaccount:{OWN_NAMESPACE}:{account}",
            )
            for account in (SERVING_ACCOUNT, CERTS_ACCOUNT)
        }
    refused = attempts[SERVING_ACCOUNT]
    assert refused.returncode != 0
    # kubectl reads the object before patching it; the serving account may not even read it.
    assert (
        'mutatingwebhookconfigurations.admissionregistration.k8s.io "schemagate" is forbidden: '
        f'User "system:serviceaccount:{OWN_NAMESPACE}:{SERVING_ACCOUNT}" cannot get resource '
        '"mutatingwebhookconfigurations" in API group "admissionregistration.k8s.io" at the '
        "cluster scope"
    ) in refused.stderr
    # The bootstrap's identity may (it writes the caBundle): the RBAC is what separates them.
    assert attempts[CERTS_ACCOUNT].returncode == 0, attempts[CERTS_ACCOUNT].stderr


def shipped_configuration(kubectl: Kubectl) -> dict[str, Any]:
    # Port 1: nothing listens, and nothing labelled is created while it is registered.
    return webhook_configuration(render_local_overlay(kubectl, 1, b""), WEBHOOK_CONFIGURATION)


@pytest.mark.usefixtures("shipped_rbac")
async def test_bootstrap_with_the_service_account_token(
    cluster: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    kubeconfig = token_kubeconfig(
        cluster, kubectl, OWN_NAMESPACE, CERTS_ACCOUNT, tmp_path / "kubeconfig"
    )
    with restored(kubectl, shipped_configuration(kubectl), OWN_NAMESPACE):
        replica = Replica(kubeconfig, OWN_NAMESPACE, WEBHOOK_CONFIGURATION, tmp_path / "tls")
        first = await replica.round()  # create
        assert f"created secret {OWN_NAMESPACE}/{SECRET}" in first.changes
        assert ca_bundles(kubectl, WEBHOOK_CONFIGURATION) == [first.ca_bundle]
        assert (await replica.round()).changes == ()  # get only
        replica.service = "renamed"  # names differ: update
        renamed = await replica.round()
        assert f"updated secret {OWN_NAMESPACE}/{SECRET}" in renamed.changes


@pytest.mark.usefixtures("shipped_rbac")
@pytest.mark.parametrize(
    ("account", "cluster_role", "message"),
    [
        (
            "nobody",
            False,
            "cannot get mutatingwebhookconfiguration schemagate: 403 Forbidden: "
            'mutatingwebhookconfigurations.admissionregistration.k8s.io "schemagate" is '
            'forbidden: User "system:serviceaccount:schemagate-system:nobody" cannot get',
        ),
        (
            "half",
            True,
            f"cannot get secret {OWN_NAMESPACE}/{SECRET}: 403 Forbidden: "
            f'secrets "{SECRET}" is forbidden: User "system:serviceaccount:schemagate-system:half"',
        ),
    ],
)
async def test_bootstrap_refused_names_the_resource_and_verb(
    cluster: ControlPlane,
    kubectl: Kubectl,
    tmp_path: Path,
    account: str,
    cluster_role: bool,
    message: str,
) -> None:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": OWN_NAMESPACE},
        }
    ]
    if cluster_role:  # the configuration's ClusterRole, but not the Secret's Role
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"schemagate-{account}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": CERTS_ACCOUNT,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": account, "namespace": OWN_NAMESPACE}
                ],
            }
        )
    kubectl.apply_objects(objects)
    kubeconfig = token_kubeconfig(cluster, kubectl, OWN_NAMESPACE, account, tmp_path / "kc")
    with restored(kubectl, shipped_configuration(kubectl), OWN_NAMESPACE):
        replica = Replica(kubeconfig, OWN_NAMESPACE, WEBHOOK_CONFIGURATION, tmp_path / "tls")
        with pytest.raises(BootstrapError) as refused:
            await replica.round()
        assert kubectl.get("secret", SECRET, OWN_NAMESPACE) is None
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


async def test_unreachable_api_server_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    port = unreachable_kubeconfig(kubeconfig)
    with pytest.raises(
        BootstrapError, match=rf"^cannot reach the API server at https://127\.0\.0\.1:{port}: "
    ):
        await Replica(kubeconfig, NAMESPACE, CONFIGURATION, tmp_path / "tls").round()
