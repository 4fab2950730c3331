"""The manifest tree under manifests/: every kustomization renders, every rendered object
validates against a recent Kubernetes OpenAPI schema, and the settings users rely on
(webhook configuration, pod security, availability, least-privilege RBAC, overlays and
GitOps examples) hold on the parsed objects.

`kubectl` (with its built-in kustomize) is required: a missing binary fails the tests.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from tests.support.manifests import kubectl, rendered
from webhook import workloads
from webhook.cli import build_parser
from webhook.config import parse_config
from webhook.status import WORKLOADS

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"

Doc = dict[str, Any]

NAMESPACE = "schemagate-system"
NAME = "schemagate"
CERTS = "schemagate-certs"  # the certificate bootstrap's Deployment and identity
TLS_NAME = "schemagate-tls"  # the kubernetes.io/tls Secret with ca.crt, tls.crt, tls.key
MIGRATE_LABEL = "schemagate.dev/migrate"

# Every kustomization in the tree, found on disk, so a new overlay or example is tested
# without editing this file; EXPECTED_KUSTOMIZATIONS pins the ones that must exist.
KUSTOMIZATIONS = sorted(
    path.parent.relative_to(ROOT).as_posix()
    for path in MANIFESTS.rglob("kustomization.yaml")
    if yaml.safe_load(path.read_text())["kind"] == "Kustomization"
)
# Kustomize components (kind: Component) render only as part of an overlay; tested below.
COMPONENTS = sorted(
    path.parent.relative_to(ROOT).as_posix()
    for path in MANIFESTS.rglob("kustomization.yaml")
    if yaml.safe_load(path.read_text())["kind"] == "Component"
)
EXPECTED_KUSTOMIZATIONS = {
    "manifests/base",
    "manifests/base/webhook",
    "manifests/overlays/local",
    "manifests/overlays/cert-manager",
    "manifests/overlays/in-process-certs",
    "manifests/examples/argocd-presync",
    "manifests/examples/sync-waves",
    "manifests/examples/init-container",
    "manifests/examples/argocd-install",
}
# Argo CD Applications that point at their own folder live beside its kustomization but
# outside it (an Application must not contain itself); they are checked separately.
STANDALONE_APPLICATIONS = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (MANIFESTS / "examples").glob("*/application.yaml")
    if path.name
    not in yaml.safe_load((path.parent / "kustomization.yaml").read_text()).get("resources", [])
)

# Custom resources the Kubernetes OpenAPI schema cannot know. Skipped by (apiVersion,
# kind) explicitly; anything else that has no schema is a failure.
NOT_IN_KUBERNETES_SCHEMA = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("argoproj.io/v1alpha1", "Application"),
}

# Validate against the newest Kubernetes the installed kubernetes-validate knows.
KUBERNETES_VERSION = kubernetes_validate.utils.latest_version()
# The oldest schema it ships (1.25 today; none for 1.20). Used, together with the explicit
# v1.20 field lists below, for what the e2e tier applies to its real v1.20 API server.
OLDEST_SCHEMA = kubernetes_validate.utils.all_versions()[0]

DEPRECATED_KUSTOMIZE_FIELDS = {
    "bases",
    "patchesStrategicMerge",
    "patchesJson6902",
    "commonLabels",
    "vars",
    "imageTags",
}

# The fields of an admissionregistration.k8s.io/v1 MutatingWebhook that a v1.20 API
# server knows (matchConditions came in 1.27); the end-to-end tier runs v1.20.
V1_20_WEBHOOK_FIELDS = {
    "name",
    "clientConfig",
    "rules",
    "failurePolicy",
    "matchPolicy",
    "namespaceSelector",
    "objectSelector",
    "sideEffects",
    "timeoutSeconds",
    "admissionReviewVersions",
    "reinvocationPolicy",
}
V1_20_CLIENT_CONFIG_FIELDS = {"url", "service", "caBundle"}


# --- rendering -----------------------------------------------------------------------


@functools.cache
def render_raw(directory: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def render(directory: str) -> list[Doc]:
    result = render_raw(directory)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_file(path: str | Path) -> list[Doc]:
    with open(ROOT / path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def schema_validate(doc: Doc, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at /{path}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)


def containers(deployment: Doc) -> list[Doc]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def server(deployment: Doc) -> Doc:
    return only_container(deployment, NAME)


def only_container(deployment: Doc, name: str) -> Doc:
    found: list[Doc] = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    assert len(found) == 1, f"no container {name} in Deployment {deployment['metadata']['name']}"
    return found[0]


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def volume_for(deployment: Doc, mount_path: str) -> Doc:
    """The volume mounted at `mount_path` in the server container."""
    mounts = {m["mountPath"]: m["name"] for m in server(deployment)["volumeMounts"]}
    assert mount_path in mounts, f"nothing mounted at {mount_path}"
    volumes: dict[str, Doc] = {
        v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]
    }
    return volumes[mounts[mount_path]]


def container_port(deployment: Doc, port: int | str) -> int:
    """Resolve a named or numbered port of the server container to its number."""
    ports = server(deployment)["ports"]
    if isinstance(port, int):
        assert port in {p["containerPort"] for p in ports}, f"container has no port {port}"
        return port
    by_name = {p["name"]: p["containerPort"] for p in ports}
    assert port in by_name, f"container has no port named {port}"
    return int(by_name[port])


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are expected here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def webhooks(docs: list[Doc]) -> list[Doc]:
    config = only(of_kind(docs, "MutatingWebhookConfiguration"), "MutatingWebhookConfiguration")
    hooks: list[Doc] = config["webhooks"]
    return hooks


# --- every render validates -----------------------------------------------------------


def test_every_expected_kustomization_exists() -> None:
    assert set(KUSTOMIZATIONS) >= EXPECTED_KUSTOMIZATIONS
    assert len(STANDALONE_APPLICATIONS) == 3  # one per GitOps pattern


def test_schema_version_is_recent() -> None:
    assert Version(KUBERNETES_VERSION) >= Version("1.31"), (
        f"kubernetes-validate ships schemas only up to {KUBERNETES_VERSION}; upgrade it"
    )


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_renders_and_validates(directory: str) -> None:
    docs = render(directory)
    assert docs, f"{directory} renders nothing"
    assert "deprecated" not in render_raw(directory).stderr.lower()
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in NOT_IN_KUBERNETES_SCHEMA:
            # No OpenAPI schema: check the shape every object has.
            assert doc["metadata"]["name"]
            assert isinstance(doc.get("spec"), dict)
            continue
        schema_validate(doc, KUBERNETES_VERSION)


@pytest.mark.parametrize("path", STANDALONE_APPLICATIONS)
def test_standalone_application_points_at_its_folder(path: str) -> None:
    application = only(load_file(path), "Application")
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    source = application["spec"]["source"]
    assert source["path"] == PurePosixPath(path).parent.as_posix()
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    kustomization = load_file(Path(source["path"]) / "kustomization.yaml")[0]
    assert application["spec"]["destination"]["namespace"] == kustomization["namespace"]
    # The folder's kustomization must not include the Application itself.
    assert not of_kind(render(source["path"]), "Application")


def test_skip_list_is_used() -> None:
    """Each custom kind skipped from schema validation really occurs (no stale entries)."""
    seen = {
        (d["apiVersion"], d["kind"]) for path in STANDALONE_APPLICATIONS for d in load_file(path)
    }
    for directory in KUSTOMIZATIONS:
        seen |= {(d["apiVersion"], d["kind"]) for d in render(directory)}
    assert seen >= NOT_IN_KUBERNETES_SCHEMA


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_no_deprecated_kustomize_fields(directory: str) -> None:
    kustomization = load_file(Path(directory) / "kustomization.yaml")[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert not set(kustomization) & DEPRECATED_KUSTOMIZE_FIELDS


def test_api_versions_are_current() -> None:
    """Only API versions the newest Kubernetes serves; no beta leftovers."""
    current = {
        "Deployment": "apps/v1",
        "PodDisruptionBudget": "policy/v1",
        "MutatingWebhookConfiguration": "admissionregistration.k8s.io/v1",
        "NetworkPolicy": "networking.k8s.io/v1",
        "PriorityClass": "scheduling.k8s.io/v1",
        "Role": "rbac.authorization.k8s.io/v1",
        "ClusterRole": "rbac.authorization.k8s.io/v1",
        "Job": "batch/v1",
    }
    for directory in KUSTOMIZATIONS:
        for doc in render(directory):
            if doc["kind"] in current:
                assert doc["apiVersion"] == current[doc["kind"]], (directory, doc["kind"])


# --- the webhook configuration --------------------------------------------------------


def test_webhook_configuration_fields() -> None:
    (hook,) = webhooks(render("manifests/base"))
    assert hook["name"] == "migrate.schemagate.dev"
    for rule in hook["rules"]:
        assert rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["scope"] == "Namespaced"
    assert intercepted(hook) == {(w.group, w.version, w.resource) for w in workloads.KINDS}
    resources = [r for rule in hook["rules"] for r in rule["resources"]]
    assert not [r for r in resources if "/" in r or r == "*"], "no subresources, no wildcards"
    assert hook["objectSelector"] == {
        "matchExpressions": [{"key": MIGRATE_LABEL, "operator": "Exists"}]
    }
    (expression,) = hook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "NotIn"
    assert set(expression["values"]) == {"kube-system", NAMESPACE}
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 2 < hook["timeoutSeconds"] <= 30
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["matchPolicy"] == "Equivalent"
    # Fail: gate mode must not silently let Deployments through (justified in the file).
    assert hook["failurePolicy"] == "Fail"


def intercepted(hook: Doc) -> set[tuple[str, str, str]]:
    """(group, version, resource) for everything the webhook's rules send to schemagate."""
    return {
        (group, version, resource)
        for rule in hook["rules"]
        for group in rule["apiGroups"]
        for version in rule["apiVersions"]
        for resource in rule["resources"]
    }


@pytest.mark.parametrize("base", ["manifests/base", "manifests/overlays/cert-manager"])
def test_without_rollouts_component_drops_only_rollouts(base: str, tmp_path: Path) -> None:
    assert COMPONENTS == ["manifests/components/without-rollouts"]
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / base, overlay)],
                "components": [os.path.relpath(ROOT / COMPONENTS[0], overlay)],
            }
        )
    )
    docs = rendered(overlay)
    (hook,) = webhooks(docs)
    (full,) = webhooks(render(base))
    assert intercepted(full) - intercepted(hook) == {("argoproj.io", "v1alpha1", "rollouts")}
    assert intercepted(hook) <= intercepted(full)
    assert {**hook, "rules": None} == {**full, "rules": None}
    assert len(docs) == len(render(base))
    schema_validate(only(docs, "MutatingWebhookConfiguration"), KUBERNETES_VERSION)


def test_webhook_timeout_exceeds_lookup_deadline() -> None:
    docs = render("manifests/base")
    (hook,) = webhooks(docs)
    config = parse_config(yaml.safe_load(only(docs, "ConfigMap")["data"]["config.yaml"]))
    assert config.lookup_timeout * 2 < hook["timeoutSeconds"]


def test_webhook_calls_the_service() -> None:
    docs = render("manifests/base")
    (hook,) = webhooks(docs)
    service_ref = hook["clientConfig"]["service"]
    assert service_ref["path"] == "/mutate"
    service = only(docs, "Service", service_ref["name"])
    assert service["metadata"]["namespace"] == service_ref["namespace"] == NAMESPACE
    (port,) = service["spec"]["ports"]
    assert port["port"] == service_ref["port"] == 443
    deployment = only(docs, "Deployment", NAME)
    assert container_port(deployment, port["targetPort"]) == 8443
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_no_manifest_sets_ca_bundle(directory: str) -> None:
    """caBundle is written at run time; a manifest value would be re-applied over it."""
    for doc in of_kind(render(directory), "MutatingWebhookConfiguration"):
        for hook in doc["webhooks"]:
            assert "caBundle" not in hook["clientConfig"]


def test_webhook_settings_are_the_same_in_every_overlay() -> None:
    """One place for the webhook's settings: overlays change only the endpoint/annotation."""

    def settings(directory: str) -> list[Doc]:
        return [
            {k: v for k, v in h.items() if k != "clientConfig"} for h in webhooks(render(directory))
        ]

    base = settings("manifests/base")
    assert settings("manifests/overlays/local") == base
    assert settings("manifests/overlays/cert-manager") == base
    assert settings("manifests/overlays/in-process-certs") == base


# --- the server's pods ----------------------------------------------------------------


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


SERVER_DIRECTORIES = [
    "manifests/base",
    "manifests/overlays/cert-manager",
    "manifests/overlays/in-process-certs",
]


@pytest.mark.parametrize(
    ("directory", "name"), [*((d, NAME) for d in SERVER_DIRECTORIES), ("manifests/base", CERTS)]
)
def test_pod_security(directory: str, name: str) -> None:
    deployment = only(render(directory), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in containers(deployment):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert context.get("runAsNonRoot", True) is True
        assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {
            "type": "RuntimeDefault"
        }
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) >= {"cpu", "memory"}, kind


@pytest.mark.parametrize("directory", SERVER_DIRECTORIES)
def test_probes_are_https(directory: str) -> None:
    deployment = only(render(directory), "Deployment", NAME)
    container = server(deployment)
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe_name, path in expected.items():
        probe = container[probe_name]["httpGet"]
        assert probe["scheme"] == "HTTPS"
        assert probe["path"] == path
        assert container_port(deployment, probe["port"]) == 8443
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_availability() -> None:
    docs = render("manifests/base")
    deployment = only(docs, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    spread = [
        c
        for c in pod.get("topologySpreadConstraints", [])
        if c["topologyKey"] == "kubernetes.io/hostname"
        and selects(c["labelSelector"], pod_labels(deployment))
    ]
    anti_affinity = pod.get("affinity", {}).get("podAntiAffinity")
    assert spread or anti_affinity, "replicas must be spread across nodes"

    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"], pod_labels(deployment))

    priority = only(docs, "PriorityClass", pod["priorityClassName"])
    # system-cluster-critical is confined to kube-system on many clusters; our own class
    # must stay within the range of user-defined classes.
    assert 0 < priority["value"] <= 1_000_000_000
    assert priority["globalDefault"] is False


def test_server_environment_matches_the_objects() -> None:
    docs = render("manifests/base")
    deployment = only(docs, "Deployment", NAME)
    container = server(deployment)
    env = env_of(container)
    # Serving pods never bootstrap: that is the schemagate-certs Deployment's job.
    assert not {"SCHEMAGATE_CERT_SECRET", "SCHEMAGATE_SERVICE"} & set(env)
    assert env["SCHEMAGATE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SCHEMAGATE_PORT"]["value"] == "8443"
    assert container_port(deployment, 8443) == 8443

    # Certificate and key come from the TLS Secret, mounted read-only, optional so that
    # the pod starts before the bootstrap has created it; the server waits for them
    # within its startup probe's budget.
    cert = PurePosixPath(env["SCHEMAGATE_TLS_CERT"]["value"])
    key = PurePosixPath(env["SCHEMAGATE_TLS_KEY"]["value"])
    assert cert.parent == key.parent == PurePosixPath("/run/schemagate/tls")
    volume = volume_for(deployment, str(cert.parent))["secret"]
    assert (volume["secretName"], volume["optional"]) == (TLS_NAME, True)
    # Only the serving pair: the CA's key never reaches a serving pod.
    assert {item["key"]: item["path"] for item in volume["items"]} == {
        "tls.crt": cert.name,
        "tls.key": key.name,
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(cert.parent)]["readOnly"] is True
    startup = container["startupProbe"]
    wait = float(env["SCHEMAGATE_TLS_WAIT"]["value"])
    assert 120 <= wait < startup["periodSeconds"] * startup["failureThreshold"]
    assert "emptyDir" in volume_for(deployment, "/tmp")

    # The config file is the ConfigMap's config.yaml, and the server accepts it.
    config_path = PurePosixPath(env["SCHEMAGATE_CONFIG"]["value"])
    volume = volume_for(deployment, str(config_path.parent))
    config_map = only(docs, "ConfigMap", volume["configMap"]["name"])
    parse_config(yaml.safe_load(config_map["data"][config_path.name]))


def test_certificate_bootstrap_deployment() -> None:
    """The bootstrap runs under its own identity, as `schemagate certs bootstrap --every`,
    on the server's image, for the Service, Secret and webhook configuration installed."""
    docs = render("manifests/base")
    certs, serving = only(docs, "Deployment", CERTS), only(docs, "Deployment", NAME)
    pod = certs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == server(serving)["image"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.certs_command) == ("certs", "bootstrap")
    assert args.namespace == "$(POD_NAMESPACE)"
    assert env_of(container)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )
    assert args.service == only(docs, "Service")["metadata"]["name"]
    assert args.secret == TLS_NAME
    assert (
        args.webhook_configuration == only(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    )
    # Renewal rounds more often than certs.rotation.SETTLE (15 min), like the replicas did.
    assert 0 < args.every <= 600
    assert "ports" not in container
    assert pod["serviceAccountName"] == CERTS
    assert certs["spec"]["replicas"] == 1
    # Its pods are no serving pods: neither the Service, the PDB nor the server's policy
    # selects them.
    labels = pod_labels(certs)
    assert not selects({"matchLabels": only(docs, "Service")["spec"]["selector"]}, labels)
    assert not selects(only(docs, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert not selects(only(docs, "NetworkPolicy", NAME)["spec"]["podSelector"], labels)


def serve_environment_variables() -> set[str]:
    """SCHEMAGATE_* variables `schemagate serve` reads: one per flag, named after it."""
    subparsers = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    serve = subparsers[0].choices["serve"]
    return {
        "SCHEMAGATE_" + action.dest.upper()
        for action in serve._actions
        if action.option_strings and action.dest != "help"
    }


@pytest.mark.parametrize("directory", SERVER_DIRECTORIES)
def test_server_environment_variables_exist(directory: str) -> None:
    """A misspelt variable would be ignored silently; every one must name a serve flag."""
    deployment = only(render(directory), "Deployment", NAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    names = {name for name in env_of(container) if name.startswith("SCHEMAGATE_")}
    unknown = names - serve_environment_variables()
    assert not unknown, f"`schemagate serve` has no flag for {sorted(unknown)}"


def test_base_objects_live_in_the_webhook_namespace() -> None:
    docs = render("manifests/base")
    cluster_scoped = {
        "Namespace",
        "PriorityClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
    }
    for doc in docs:
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert only(docs, "Namespace")["metadata"]["name"] == NAMESPACE


def _egress_ports(policy: Doc) -> set[tuple[int, str]]:
    return {
        (port["port"], port.get("protocol", "TCP"))
        for rule in policy["spec"]["egress"]
        for port in rule["ports"]
    }


def test_network_policy() -> None:
    docs = render("manifests/base")
    policy = only(docs, "NetworkPolicy", NAME)
    assert selects(policy["spec"]["podSelector"], pod_labels(only(docs, "Deployment", NAME)))
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["spec"]["ingress"]
    assert "from" not in ingress, "the API server's source address varies: allow any"
    assert ingress["ports"] == [{"port": 8443, "protocol": "TCP"}]
    # DNS and the databases; not the API server, which the serving pods never call.
    assert _egress_ports(policy) == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (3306, "TCP")}

    certs = only(docs, "NetworkPolicy", CERTS)
    assert selects(certs["spec"]["podSelector"], pod_labels(only(docs, "Deployment", CERTS)))
    assert set(certs["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in certs["spec"], "the bootstrap takes no connection"
    assert _egress_ports(certs) == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}


# --- RBAC -----------------------------------------------------------------------------


CONTROLLER = "schemagate-controller"


def webhook_rbac(docs: list[Doc], *kinds: str) -> list[Doc]:
    """The webhook's own roles and bindings (the controller has its own, tested below)."""
    return [d for d in of_kind(docs, *kinds) if d["metadata"]["name"] != CONTROLLER]


def test_rbac_least_privilege() -> None:
    docs = render("manifests/base")
    rules = [
        (doc["kind"], rule)
        for doc in webhook_rbac(docs, "Role", "ClusterRole")
        for rule in doc["rules"]
    ]
    assert rules
    secret_verbs: set[str] = set()
    for kind, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"wildcard in {kind} {field}"
        if "secrets" in rule["resources"]:
            assert kind == "Role", "Secrets only in the webhook's own namespace"
            assert not {"list", "watch", "deletecollection", "delete"} & set(rule["verbs"])
            secret_verbs |= set(rule["verbs"])
            if rule["verbs"] != ["create"]:
                # create cannot be limited by resourceNames; everything else must be.
                assert rule["resourceNames"] == [TLS_NAME]
        else:
            assert rule == {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [NAME],
                "verbs": ["get", "update", "patch"],
            }
    assert secret_verbs == {"get", "update", "patch", "create"}
    assert only(docs, "Role")["metadata"]["namespace"] == NAMESPACE

    roles = {(d["kind"], d["metadata"]["name"]) for d in of_kind(docs, "Role", "ClusterRole")}
    for binding in webhook_rbac(docs, "RoleBinding", "ClusterRoleBinding"):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
        # Only the bootstrap's identity: the serving account is bound to nothing.
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": CERTS, "namespace": NAMESPACE}
        ]
    serving = only(docs, "Deployment", NAME)["spec"]["template"]["spec"]
    assert serving["serviceAccountName"] == NAME
    assert serving["automountServiceAccountToken"] is False
    assert only(docs, "ServiceAccount", NAME)["automountServiceAccountToken"] is False
    certs = only(docs, "Deployment", CERTS)["spec"]["template"]["spec"]
    assert certs["serviceAccountName"] == CERTS


def test_controller_rbac_is_exactly_what_run_once_needs() -> None:
    """Nothing on Secrets, no Pods, nothing on the webhook configuration; ConfigMaps by
    name only (no list or watch)."""
    docs = render("manifests/base")
    role = only(docs, "ClusterRole", CONTROLLER)
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["get", "list", "watch", "create", "delete"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert not of_kind(
        [d for d in docs if d["metadata"]["name"] == CONTROLLER], "Role", "RoleBinding"
    )
    binding = only(docs, "ClusterRoleBinding", CONTROLLER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": CONTROLLER,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE}
    ]
    deployment = only(docs, "Deployment", CONTROLLER)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == CONTROLLER
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = pod["containers"]
    assert container["args"] == ["controller"]
    # The same image and the same configuration as the webhook.
    webhook = server(only(docs, "Deployment", NAME))
    assert container["image"] == webhook["image"]
    config = only(docs, "ConfigMap")["metadata"]["name"]
    assert {v["configMap"]["name"] for v in pod["volumes"]} == {config}


def test_the_wait_image_is_the_serving_image() -> None:
    for tree in ("manifests/base", "tests/node/overlay"):
        webhook = server(only(render(tree), "Deployment", NAME))
        assert env_of(webhook)["SCHEMAGATE_WAIT_IMAGE"]["value"] == webhook["image"], tree


def test_plain_files_apply_on_kubernetes_1_20() -> None:
    """The e2e tier applies these files with `kubectl apply -f` to a v1.20 API server."""
    plain_files = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
    for path in (f"manifests/base/{name}" for name in plain_files):
        docs = load_file(path)
        assert docs
        for doc in docs:
            assert doc["apiVersion"] in {"v1", "rbac.authorization.k8s.io/v1"}
            schema_validate(doc, OLDEST_SCHEMA)
            if doc["kind"] in {"Role", "RoleBinding", "ServiceAccount"}:
                assert doc["metadata"]["namespace"] == NAMESPACE
    rendered = {(d["kind"], d["metadata"]["name"]) for d in render("manifests/base")}
    plain = {(d["kind"], d["metadata"]["name"]) for d in load_file("manifests/base/rbac.yaml")}
    assert plain == {
        ("Role", CERTS),
        ("RoleBinding", CERTS),
        ("ClusterRole", CERTS),
        ("ClusterRoleBinding", CERTS),
    }
    assert plain <= rendered


def test_status_role_is_read_only_and_covers_what_status_lists() -> None:
    """`schemagate status` gets its own ClusterRole, apart from the webhook's: list only."""
    (role,) = render("manifests/status")
    assert (role["kind"], role["metadata"]["name"]) == ("ClusterRole", "schemagate-status")
    granted = set()
    for rule in role["rules"]:
        assert rule["verbs"] == ["list"]
        assert "resourceNames" not in rule
        granted |= {
            (group, resource) for group in rule["apiGroups"] for resource in rule["resources"]
        }
    assert granted == {(listed.group, listed.plural) for listed in WORKLOADS}
    assert not {role["metadata"]["name"]} & {
        d["metadata"]["name"] for d in render("manifests/base")
    }
    schema_validate(role, OLDEST_SCHEMA)


# --- overlays -------------------------------------------------------------------------


def test_local_overlay_calls_the_host() -> None:
    docs = render("manifests/overlays/local")
    assert [d["kind"] for d in docs] == ["MutatingWebhookConfiguration"]
    (hook,) = webhooks(docs)
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:8443/mutate"}
    # Applicable to the v1.20 API server of the end-to-end tier.
    assert docs[0]["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert set(hook) <= V1_20_WEBHOOK_FIELDS
    assert set(hook["clientConfig"]) <= V1_20_CLIENT_CONFIG_FIELDS
    schema_validate(docs[0], OLDEST_SCHEMA)


def test_cert_manager_overlay() -> None:
    docs = render("manifests/overlays/cert-manager")
    webhook_config = only(docs, "MutatingWebhookConfiguration")
    namespace, name = webhook_config["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ].split("/")
    serving = only(docs, "Certificate", name)
    assert serving["metadata"]["namespace"] == namespace == NAMESPACE
    assert serving["spec"]["secretName"] == TLS_NAME
    assert set(serving["spec"]["dnsNames"]) >= {
        f"{NAME}.{NAMESPACE}.svc",
        f"{NAME}.{NAMESPACE}.svc.cluster.local",
    }
    assert "server auth" in serving["spec"]["usages"]

    # Serving certificate <- CA Issuer <- CA Certificate <- self-signed Issuer.
    ca_issuer = only(docs, "Issuer", serving["spec"]["issuerRef"]["name"])
    ca_cert = [
        c
        for c in of_kind(docs, "Certificate")
        if c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]
    ]
    assert len(ca_cert) == 1 and ca_cert[0]["spec"]["isCA"] is True
    assert "selfSigned" in only(docs, "Issuer", ca_cert[0]["spec"]["issuerRef"]["name"])["spec"]

    # The serving Deployment is the base's, mounting the Secret cert-manager writes; the
    # bootstrap, its identity, RBAC and policy are not installed.
    assert only(docs, "Deployment", NAME) == only(render("manifests/base"), "Deployment", NAME)
    assert [d["metadata"]["name"] for d in of_kind(docs, "Deployment")] == [NAME, CONTROLLER]
    assert [d["metadata"]["name"] for d in of_kind(docs, "ServiceAccount")] == [NAME, CONTROLLER]
    assert [d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")] == [NAME, CONTROLLER]
    assert not webhook_rbac(docs, "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def test_in_process_certs_overlay() -> None:
    """The documented option: serving pods bootstrap themselves with the bootstrap's
    identity (and its risk); there is then no separate bootstrap Deployment."""
    docs = render("manifests/overlays/in-process-certs")
    assert [d["metadata"]["name"] for d in of_kind(docs, "Deployment")] == [NAME, CONTROLLER]
    deployment = only(docs, "Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (CERTS, True)
    env = env_of(server(deployment))
    assert env["SCHEMAGATE_CERT_SECRET"]["value"] == TLS_NAME
    assert env["SCHEMAGATE_SERVICE"]["value"] == only(docs, "Service")["metadata"]["name"]
    assert (
        env["SCHEMAGATE_WEBHOOK_CONFIGURATION"]["value"]
        == only(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    )
    assert "SCHEMAGATE_TLS_WAIT" not in env
    tls_dir = PurePosixPath(env["SCHEMAGATE_TLS_CERT"]["value"]).parent
    volume = volume_for(deployment, str(tls_dir))
    assert volume == {"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    assert (443, "TCP") in _egress_ports(only(docs, "NetworkPolicy", NAME))


# --- GitOps examples ------------------------------------------------------------------


def gated_or_injected(docs: list[Doc], mode: str) -> Doc:
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["labels"][MIGRATE_LABEL] == mode
    assert deployment["metadata"]["namespace"].startswith("shop-")
    return deployment


def test_gitops_examples_can_be_tried_one_after_another() -> None:
    """No two examples create the same object (or Argo CD Application)."""
    seen: dict[tuple[str, str, str], str] = {}
    for path in STANDALONE_APPLICATIONS:
        folder = PurePosixPath(path).parent.as_posix()
        objects = [*render(folder), *load_file(path)]
        for doc in objects:
            key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
            assert key not in seen, f"{folder} and {seen[key]} both create {key}"
            seen[key] = folder
    namespaces = {ns for kind, ns, _ in seen if kind == "Deployment"}
    assert len(namespaces) == len(STANDALONE_APPLICATIONS)


def test_presync_example() -> None:
    docs = render("manifests/examples/argocd-presync")
    job = only(docs, "Job")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert (
        job["metadata"]["annotations"]["argocd.argoproj.io/hook-delete-policy"]
        == "BeforeHookCreation"
    )
    assert only_container_of_job(job)["args"] == ["migrate"]
    annotations = gated_or_injected(docs, "gate")["metadata"]["annotations"]
    assert annotations["schemagate.dev/tool"] == "flyway"
    assert annotations["schemagate.dev/database"] == "orders"
    assert annotations["schemagate.dev/schema-version"] == "42"


def only_container_of_job(job: Doc) -> Doc:
    job_containers: list[Doc] = job["spec"]["template"]["spec"]["containers"]
    assert len(job_containers) == 1
    return job_containers[0]


def test_sync_waves_example() -> None:
    docs = render("manifests/examples/sync-waves")
    job = only(docs, "Job")
    deployment = gated_or_injected(docs, "gate")
    assert "argocd.argoproj.io/hook" not in job["metadata"].get("annotations", {})

    def wave(doc: Doc) -> int:
        return int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    assert wave(job) == 1
    assert wave(deployment) == 2
    application = only(load_file("manifests/examples/sync-waves/application.yaml"), "Application")
    retry = application["spec"]["syncPolicy"]["retry"]
    assert retry["limit"] > 0
    assert set(retry["backoff"]) == {"duration", "factor", "maxDuration"}
    assert retry["backoff"]["factor"] > 1


def test_init_container_example() -> None:
    docs = render("manifests/examples/init-container")
    deployment = gated_or_injected(docs, "inject")
    annotations = deployment["metadata"]["annotations"]
    assert annotations["schemagate.dev/tool"] in {"flyway", "liquibase"}
    only_container(deployment, annotations["schemagate.dev/container"])
    assert "initContainers" not in deployment["spec"]["template"]["spec"], "injected, not written"
    application = only(
        load_file("manifests/examples/init-container/application.yaml"), "Application"
    )
    (ignore,) = application["spec"]["ignoreDifferences"]
    assert (ignore["group"], ignore["kind"]) == ("apps", "Deployment")
    (expression,) = ignore["jqPathExpressions"]
    assert expression.startswith(".spec.template.spec.initContainers[]")
    assert 'select(.name == "schemagate-migrate")' in expression


def test_install_application() -> None:
    application = only(render("manifests/examples/argocd-install"), "Application")
    assert int(application["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0
    source = application["spec"]["source"]
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    assert application["spec"]["destination"]["namespace"] == NAMESPACE
    (ignore,) = application["spec"]["ignoreDifferences"]
    assert ignore["group"] == "admissionregistration.k8s.io"
    assert ignore["kind"] == "MutatingWebhookConfiguration"
    assert ignore["name"] == NAME
    assert ignore["jqPathExpressions"] == [".webhooks[]?.clientConfig.caBundle"]


def test_pods_drain_before_they_stop_listening() -> None:
    """Endpoints lag a terminating pod: it keeps serving through preStop, then has the
    server's 15 s grace for requests in flight within terminationGracePeriodSeconds."""
    deployment = only(render("manifests/base"), "Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/opt/venv/bin/python"
    assert "time.sleep(5)" in command[-1]
    assert pod["terminationGracePeriodSeconds"] >= 5 + 15


def test_readme_overlay_example_renders_from_a_folder_at_the_repository_root() -> None:
    readme = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(# my-overlay/kustomization.yaml\n.*?)```", readme, re.S)
    folder = Path(tempfile.mkdtemp(prefix="my-overlay-", dir=ROOT))
    try:
        (folder / "kustomization.yaml").write_text(block)
        (folder / "config.yaml").write_text(
            "databases: {orders: {url_env: ORDERS_DATABASE_URL, tool: flyway, "
            "namespaces: [shop]}}\n"
        )
        docs = rendered(folder)
    finally:
        shutil.rmtree(folder)
    env = env_of(server(only(docs, "Deployment", NAME)))
    assert env["ORDERS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "orders-db",
        "key": "url",
    }
    config = parse_config(yaml.safe_load(only(docs, "ConfigMap")["data"]["config.yaml"]))
    assert set(config.databases) == {"orders"}
