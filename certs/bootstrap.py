"""Certificates in the cluster: the TLS Secret and the webhooks' caBundle (edge).

One round reads the MutatingWebhookConfiguration, then the Secret, asks the pure
`certs.rotation.plan` what to change, and writes the Secret, then the caBundle. Every
write carries the resourceVersion it was planned from, so replicas running rounds at
once never overwrite each other: a 409 (AlreadyExists or Conflict) restarts the round
from fresh reads, where the winner's Secret is simply used. Reading the configuration
first and writing it last means a round that planned from a Secret another replica has
since replaced always finds the configuration changed too, and starts over.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from certs.errors import BootstrapError as BootstrapError
from certs.issue import KeyPair, service_dns_names
from certs.rotation import SETTLE, Phase, plan

ATTEMPTS = 5
# Seconds per API call: a round is a handful of small requests.
TIMEOUT = 10

T = TypeVar("T")


class _Conflict(Exception):
    """Someone else wrote first (409): plan again from fresh reads."""


@dataclass(frozen=True)
class BootstrapResult:
    serving: KeyPair  # what the server serves: tls.crt, tls.key
    ca_bundle: bytes  # every CA the webhooks trust now: ca.crt for clients
    phase: Phase
    changes: tuple[str, ...]  # what this round changed and why; empty when nothing


async def bootstrap(
    api: client.ApiClient,
    *,
    namespace: str,
    service: str,
    secret: str,
    webhook_configuration: str,
    ips: Sequence[str] = (),
    now: datetime | None = None,
    rotate_ca: bool = False,
    settle: timedelta = SETTLE,
) -> BootstrapResult:
    """Make the Secret hold a valid CA and serving cert for the Service, and every webhook
    of the configuration trust that CA. `ips` adds IP SANs (a webhook reached by URL)."""
    now = now or datetime.now(UTC)
    core, admission = client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
    dns_names = service_dns_names(service, namespace)
    secret_name = f"secret {namespace}/{secret}"
    config_name = f"mutatingwebhookconfiguration {webhook_configuration}"
    try:
        for _ in range(ATTEMPTS):
            configuration = await _call(
                "get",
                config_name,
                admission.read_mutating_webhook_configuration(
                    webhook_configuration, _request_timeout=TIMEOUT
                ),
            )
            stored = await _read_secret(core, namespace, secret)
            webhooks = configuration.webhooks or []
            step = plan(
                _decode(stored.data or {}) if stored else None,
                [base64.b64decode(w.client_config.ca_bundle or "") for w in webhooks],
                now=now,
                dns_names=dns_names,
                ips=ips,
                rotate_ca=rotate_ca,
                settle=settle,
            )
            changes = list(step.reasons)
            try:
                if step.secret_data is not None:
                    verb = await _write_secret(core, stored, namespace, secret, step.secret_data)
                    changes.append(f"{verb} {secret_name}")
                if step.patch_webhooks:
                    await _patch_bundle(admission, configuration, step.patch_webhooks, step.bundle)
                    changes.append(f"set caBundle of {len(step.patch_webhooks)} webhook(s)")
            except _Conflict:
                continue
            return BootstrapResult(
                step.certs.serving, step.bundle, step.certs.phase, tuple(changes)
            )
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        reason = str(e) or type(e).__name__
        raise BootstrapError(f"cannot reach the API server at {_host(api)}: {reason}") from None
    raise BootstrapError(
        f"{secret_name} and {config_name} kept changing during {ATTEMPTS} attempts (409 Conflict)"
    )


async def load_kube_client(kubeconfig: str | None) -> client.ApiClient:
    """The pod's service account when running in a pod, else the kubeconfig (or $KUBECONFIG,
    ~/.kube/config when None)."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
    except (ConfigException, OSError) as e:
        raise BootstrapError(f"cannot load Kubernetes credentials: {e}") from None
    return client.ApiClient(configuration)


async def _call(verb: str, resource: str, request: Awaitable[T]) -> T:
    try:
        return await request
    except ApiException as e:
        if e.status == 409:
            raise _Conflict from None
        raise _refused(verb, resource, e) from None


async def _read_secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return await core.read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        raise _refused("get", f"secret {namespace}/{name}", e) from None


async def _write_secret(
    core: client.CoreV1Api,
    stored: client.V1Secret | None,
    namespace: str,
    name: str,
    data: Mapping[str, bytes],
) -> str:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    resource = f"secret {namespace}/{name}"
    if stored is None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            type="kubernetes.io/tls",
            data=encoded,
        )
        request = core.create_namespaced_secret(namespace, body, _request_timeout=TIMEOUT)
        await _call("create", resource, request)
        return "created"
    # The object as read, so labels and annotations stay, and its resourceVersion makes
    # the API server refuse the update if anyone wrote in between.
    stored.data = encoded
    request = core.replace_namespaced_secret(name, namespace, stored, _request_timeout=TIMEOUT)
    await _call("update", resource, request)
    return "updated"


async def _patch_bundle(
    admission: client.AdmissionregistrationV1Api,
    configuration: client.V1MutatingWebhookConfiguration,
    indexes: Sequence[int],
    bundle: bytes,
) -> None:
    """Set caBundle on the given webhooks only, with a JSON patch that touches nothing else.

    Replacing metadata.resourceVersion with the value read makes it a precondition: the
    API server answers 409 Conflict if the configuration changed since (a failed JSON
    patch `test` op would be a 422, indistinguishable from a real error).
    """
    value = base64.b64encode(bundle).decode()
    ops: list[dict[str, str]] = [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": configuration.metadata.resource_version,
        }
    ]
    ops += [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": value}
        for i in indexes
    ]
    name = configuration.metadata.name
    await _call(
        "patch",
        f"mutatingwebhookconfiguration {name}",
        admission.patch_mutating_webhook_configuration(name, ops, _request_timeout=TIMEOUT),
    )


def _decode(data: Mapping[str, str]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in data.items()}


def _refused(verb: str, resource: str, e: ApiException) -> BootstrapError:
    """One line naming the verb, the resource and the API server's own reason."""
    try:
        message = json.loads(e.body or b"")["message"]
    except (TypeError, ValueError, KeyError):
        message = e.reason
    detail = " ".join(str(message).split())
    return BootstrapError(f"cannot {verb} {resource}: {e.status} {e.reason}: {detail}")


def _host(api: client.ApiClient) -> str:
    return str(api.configuration.host)
