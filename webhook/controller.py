"""`schemagate controller`: runs each `run: once` release's migration as one Job.

The edge of webhook/reconcile.py: two watches (labelled Deployments, and the Jobs it
labels) feed a queue of workloads; one worker reads a workload, its Jobs and its
release's marker, asks `reconcile.decide` what to do and does it. A watch that ends
(its timeout, an API server restart, 410 Gone) starts again without a resourceVersion,
which replays every object as ADDED: that is the resync, and what makes a restarted
controller finish what a previous one started.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import ClientError
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from webhook import contract, reconcile
from webhook.config import Config

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # each watch is re-established (and every object replayed) this often
RETRY_SECONDS = 5.0

Key = tuple[str, str]  # namespace, workload name


class Controller:
    def __init__(self, api: client.ApiClient, config: Config) -> None:
        self.config = config
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()

    async def run(self) -> None:
        await asyncio.gather(
            self._watch(
                self.apps.list_deployment_for_all_namespaces,
                f"{contract.LABEL}=inject",
                lambda meta: meta.get("name"),
            ),
            self._watch(
                self.batch.list_job_for_all_namespaces,
                reconcile.WORKLOAD,
                lambda meta: (meta.get("labels") or {}).get(reconcile.WORKLOAD),
            ),
            self._work(),
        )

    def enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _watch(
        self,
        lister: Callable[..., Awaitable[Any]],
        selector: str,
        workload_of: Callable[[Mapping[str, Any]], Any],
    ) -> None:
        while True:
            try:
                stream = watch.Watch().stream(
                    lister, label_selector=selector, timeout_seconds=WATCH_SECONDS
                )
                async for event in stream:
                    meta = (event.get("raw_object") or {}).get("metadata") or {}
                    name = workload_of(meta)
                    if isinstance(name, str) and name and meta.get("namespace"):
                        self.enqueue((meta["namespace"], name))
            except (TimeoutError, ApiException, OSError, ClientError) as exc:
                log.warning("watch %s (%s) ended: %s", lister.__name__, selector, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                await self.sync(*key)
            except Exception:
                # One workload's trouble (API errors, a bug) must not stall the others.
                log.exception("reconcile %s/%s failed, again in %.0f s", *key, RETRY_SECONDS)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self.enqueue, key)

    async def sync(self, namespace: str, name: str) -> None:
        workload = await _get(
            self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        )
        if workload is None:
            return
        release = reconcile.wanted(workload, self.config)
        if release is None:
            return
        marker = await _get(
            self.core.read_namespaced_config_map(release.marker, namespace, _preload_content=False)
        )
        listed = await _get(
            self.batch.list_namespaced_job(
                namespace, label_selector=f"{reconcile.WORKLOAD}={name}", _preload_content=False
            )
        )
        now = datetime.datetime.now(datetime.UTC)
        found = listed["items"] if listed else []
        actions = reconcile.decide(workload, found, marker, self.config, now)
        for action in actions:
            await self._do(workload, action, now)

    async def _do(
        self, workload: Mapping[str, Any], action: reconcile.Action, now: datetime.datetime
    ) -> None:
        namespace = workload["metadata"]["namespace"]
        name = workload["metadata"]["name"]
        try:
            if isinstance(action, reconcile.Event):
                event = reconcile.event_body(workload, action, now)
                await self.core.create_namespaced_event(namespace, _as_body(event))
            elif isinstance(action, reconcile.Create) and action.kind == "Job":
                await self.batch.create_namespaced_job(namespace, _as_body(action.body))
            elif isinstance(action, reconcile.Create):
                await self.core.create_namespaced_config_map(namespace, _as_body(action.body))
            elif action.kind == "Job":
                await self.batch.delete_namespaced_job(
                    action.name, namespace, propagation_policy="Background"
                )
            else:
                await self.core.delete_namespaced_config_map(action.name, namespace)
        except ApiException as exc:
            # Done already (by this controller before a restart, or a repeated decision).
            if exc.status in (404, 409):
                return
            raise
        log.info("%s/%s: %s", namespace, name, _describe(action))


def _describe(action: reconcile.Action) -> str:
    if isinstance(action, reconcile.Event):
        return f"event {action.reason}: {action.message}"
    if isinstance(action, reconcile.Create):
        return f"created {action.kind} {action.body['metadata']['name']}"
    return f"deleted {action.kind} {action.name}"


def _as_body(body: Mapping[str, Any]) -> Any:
    """The client sends a plain dict as it is; its stubs ask for its model classes."""
    return dict(body)


async def _get(request: Awaitable[Any]) -> dict[str, Any] | None:
    """The object as JSON, or None when absent. The client raises for a bad status only
    when it decodes the answer itself, so the status is checked here."""
    response = await request
    body = await response.read()
    if response.status == 404:
        return None
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=body.decode(errors="replace")[:500])
    data: dict[str, Any] = orjson.loads(body)
    return data


async def run(config: Config, kubeconfig: str | None) -> None:
    from certs.bootstrap import load_kube_client

    async with await load_kube_client(kubeconfig) as api:
        await Controller(api, config).run()
