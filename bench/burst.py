"""The burst step: a large GitOps sync through a real API server, without and with schemagate.

A throwaway control plane (etcd + kube-apiserver v1.20.2, the e2e tier's `ControlPlane`,
no controller manager) is started once. 16 clients, each its own HTTPS connection with
the admin's client certificate, server-side apply (`PATCH` as
`application/apply-patch+yaml` with a fieldManager, as Flux applies) 500 Deployments
labelled `schemagate.dev/migrate: inject`, spread over 10 fresh namespaces: every apply a
CREATE. Then the same 500 again with a new image tag: every apply an UPDATE. First with
no webhook registered, then with schemagate's MutatingWebhookConfiguration from
manifests/ (failurePolicy Fail) pointing at a local `schemagate serve` over HTTPS, in
fresh namespaces again.

Measured per round: each apply's end-to-end time at the client; the webhook's own time
per admission (`duration_ms` of schemagate's JSON log line, one per admission); the API
server's mean time per call to the webhook (its own histogram, TLS and JSON included);
CPU per apply of every process involved; the share of the machine other processes took.
A failure is an apply not answered 2xx, or — read back from the API server afterwards —
a Deployment not stored, stored without `schemagate-migrate` (with the webhook), or with
it (without the webhook), or with an image other than the one applied.

Placement (2 cores): schemagate on CPU 0 as in every other step (`procs`), this process
(the 16 clients) on CPU 1, etcd and kube-apiserver on both: they do most of the work, and
pinning them to either core would only move the contention.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs
from bench.report import _table, percentile
from certs.files import issue_to_dir
from tests.e2e import controlplane
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import (
    INJECTED,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_NAME,
    Kubectl,
    injected,
    namespace_object,
    pod_spec,
    render_local_overlay,
)
from tests.factories import deployment
from webhook import accesslog

CLIENTS = 16
REPETITIONS = 3  # of each round, alternating without / with (1 with --quick)
NAMESPACES = 10  # per round
FIELD_MANAGER = "schemagate-bench"
IMAGES = {"CREATE": "ghcr.io/example/api:1.0", "UPDATE": "ghcr.io/example/api:1.1"}
INJECT = {"schemagate.dev/tool": "flyway"}
MIGRATE_COMMAND = ["flyway", "migrate"]
APPLY = {"Content-Type": "application/apply-patch+yaml"}
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
WEBHOOK_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
TIMEOUT = aiohttp.ClientTimeout(total=60)
CONFIG = "databases: {}\nlookup:\n  timeout_seconds: 2\n  cache_ttl_seconds: 5\n"


def count(quick: bool) -> int:
    return 100 if quick else 500


# --- the Deployments ----------------------------------------------------------------------


def app(name: str, namespace: str, image: str) -> dict[str, Any]:
    """A valid inject-mode Deployment (flyway), ~1.2 KB of JSON: the e2e tier's
    `tests.factories.deployment` plus the volume its container mounts."""
    doc = deployment(name, namespace, mode="inject", annotations=INJECT)
    spec = pod_spec(doc)
    spec["containers"][0]["image"] = image
    spec["volumes"] = [{"name": "migrations", "configMap": {"name": "migrations"}}]
    return doc


def batch(prefix: str, n: int, image: str) -> list[dict[str, Any]]:
    """`n` Deployments over NAMESPACES namespaces `<prefix>-<k>`, interleaved so that
    concurrent applies land in different namespaces, as a sync of many apps does."""
    return [app(f"app-{i:03d}", f"{prefix}-{i % NAMESPACES}", image) for i in range(n)]


def namespaces(docs: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({d["metadata"]["namespace"] for d in docs})


# --- CPU accounting -------------------------------------------------------------------


def _pid_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # it exited: check_alive() after the burst says so
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / procs.CLOCK_TICKS


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU seconds of each process of the step and busy seconds of every core."""

    pids: dict[str, int]

    def sample(self) -> dict[str, float]:
        out = {name: _pid_cpu(pid) for name, pid in self.pids.items()}
        out["clients"] = _self_cpu()
        out["cores"] = sum(procs.core_busy_seconds(cpu) for cpu in procs.CPUS)
        return out


# --- the clients ----------------------------------------------------------------------


class Clients:
    """CLIENTS sessions of one keep-alive connection each, as CLIENTS sync workers hold."""

    def __init__(self, cp: ControlPlane) -> None:
        self.server = cp.server
        self.ssl = cp.ssl_context()
        self.sessions: list[aiohttp.ClientSession] = []

    async def __aenter__(self) -> Clients:
        for _ in range(CLIENTS):
            connector = aiohttp.TCPConnector(limit=1, ssl=self.ssl, keepalive_timeout=600)
            self.sessions.append(aiohttp.ClientSession(connector=connector, timeout=TIMEOUT))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self.sessions:
            await session.close()

    @property
    def one(self) -> aiohttp.ClientSession:
        return self.sessions[0]

    async def warm(self) -> None:
        """Every connection open (TCP + TLS done) before a timed round: a sync controller
        keeps its connections alive, so the handshakes are not part of an apply."""

        async def get(session: aiohttp.ClientSession) -> None:
            async with session.get(f"{self.server}/version") as resp:
                resp.raise_for_status()
                await resp.read()

        await asyncio.gather(*(get(s) for s in self.sessions))

    async def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.one.request(method, self.server + path, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw.startswith(b"{") else raw

    async def text(self, path: str) -> str:
        async with self.one.get(self.server + path) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def create_namespaces(self, names: Iterable[str]) -> None:
        for name in names:
            status, body = await self.json("POST", "/api/v1/namespaces", namespace_object(name))
            if status != 201:
                raise RuntimeError(f"namespace {name}: HTTP {status}: {body}")


async def apply(
    session: aiohttp.ClientSession, server: str, doc: dict[str, Any], dry_run: bool = False
) -> tuple[int, bytes]:
    meta = doc["metadata"]
    url = f"{server}/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}"
    params = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    async with session.patch(url, params=params, data=orjson.dumps(doc), headers=APPLY) as resp:
        return resp.status, await resp.read()


# --- one round ------------------------------------------------------------------------


@dataclass
class Burst:
    latencies: list[float]  # seconds, every answered apply
    failures: list[str]
    wall: float


async def burst(clients: Clients, docs: Sequence[dict[str, Any]]) -> Burst:
    """Apply `docs` with CLIENTS workers taking the next Deployment as each finishes."""
    todo = iter(docs)
    latencies: list[float] = []
    failures: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for doc in todo:  # shared: the loop is single-threaded, next() never interleaves
            ref = f"{doc['metadata']['namespace']}/{doc['metadata']['name']}"
            started = time.perf_counter()
            try:
                status, body = await apply(session, clients.server, doc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(f"{ref}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)
            if status not in (200, 201):
                failures.append(f"{ref}: HTTP {status}: {body[:300].decode(errors='replace')}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in clients.sessions))
    return Burst(latencies, failures, time.perf_counter() - started)


async def verify(
    clients: Clients, docs: Sequence[dict[str, Any]], with_webhook: bool
) -> tuple[list[str], int]:
    """What the API server stored, against what was applied: (problems, injected count)."""
    want = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): pod_spec(d)["containers"][0]["image"]
        for d in docs
    }
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    found = 0
    for ns in namespaces(docs):
        status, listed = await clients.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")
        if status != 200:
            problems.append(f"round: list {ns}: HTTP {status}")
            continue
        for item in listed["items"]:
            key = (ns, item["metadata"]["name"])
            if key not in want:
                continue
            seen.add(key)
            ref = "/".join(key)
            image = pod_spec(item)["containers"][0]["image"]
            if image != want[key]:
                problems.append(f"{ref}: stored image {image}, applied {want[key]}")
            migrate = injected(item)
            if migrate is not None:
                found += 1
            if not with_webhook:
                if migrate is not None:
                    problems.append(f"{ref}: {INJECTED} stored with no webhook registered")
            elif migrate is None:
                problems.append(f"{ref}: stored without {INJECTED}")
            elif migrate.get("image") != image or migrate.get("command") != MIGRATE_COMMAND:
                problems.append(
                    f"{ref}: {INJECTED} runs {migrate.get('image')} {migrate.get('command')}"
                )
    problems += [f"{'/'.join(key)}: not stored" for key in sorted(want.keys() - seen)]
    return problems, found


def failed(failures: Iterable[str]) -> int:
    """Deployments with any problem (lines `<namespace>/<name>: ...`), and 1 for a round
    whose own checks failed (lines `round: ...`)."""
    return len({line.split(": ", 1)[0] for line in failures})


# --- what schemagate and the API server say -------------------------------------------


def admissions(log: Path, offset: int, spaces: Sequence[str]) -> list[dict[str, Any]]:
    """schemagate's `admission` log lines written after `offset` for objects in `spaces`."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if not line.startswith(b"{"):
            continue
        entry = orjson.loads(line)
        ns = str(entry.get("object", "")).split("/", 1)[0]
        if entry.get("msg") == "admission" and ns in spaces:
            out.append(entry)
    return out


def webhook_calls(metrics: str) -> dict[str, float]:
    """The API server's calls to schemagate so far, from its histogram
    `apiserver_admission_webhook_admission_duration_seconds` (TLS and JSON included),
    summed over operations: `sum` (seconds), `count`, and `le=<bound>` per bucket."""
    total: dict[str, float] = {"sum": 0.0, "count": 0.0}
    for line in metrics.splitlines():
        if not line.startswith(WEBHOOK_METRIC) or f'name="{WEBHOOK_NAME}"' not in line:
            continue
        series, value = line.rsplit(" ", 1)
        kind = series[len(WEBHOOK_METRIC) :].split("{", 1)[0]
        if kind == "_bucket":
            key = "le=" + series.split('le="', 1)[1].split('"', 1)[0]
        elif kind in ("_sum", "_count"):
            key = kind[1:]
        else:
            continue
        total[key] = total.get(key, 0.0) + float(value)
    return total


# --- the step -------------------------------------------------------------------------


@contextlib.contextmanager
def _all_cpus() -> Iterator[None]:
    """Children started inside inherit every CPU (this process stays on the load CPU)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(procs.CPUS))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Sample:
    """One timed burst: `docs` applied, read back, schemagate's log and the CPU read."""

    rep: int
    operation: str  # CREATE | UPDATE
    webhook: bool
    applies: int
    latencies: list[float]  # seconds, every answered apply
    durations: list[float]  # ms, schemagate's duration_ms per admission
    failures: list[str]
    wall: float
    spent: dict[str, float]  # CPU seconds per process, "cores": busy seconds of all cores
    calls: dict[str, float]  # the API server's calls to the webhook (webhook_calls)
    injected: int  # Deployments stored with schemagate-migrate


def pooled(samples: Sequence[Sample]) -> dict[str, Any]:
    """The figures of one (operation, webhook) over its repetitions: percentiles of every
    apply and admission together; CPU, wall time and foreign share summed."""
    lat = [x for s in samples for x in s.latencies]
    ms = [x for s in samples for x in s.durations]
    n = sum(s.applies for s in samples)
    wall = sum(s.wall for s in samples)
    spent = {k: sum(s.spent[k] for s in samples) for k in samples[0].spent}
    ours = sum(v for k, v in spent.items() if k != "cores")
    capacity = wall * len(procs.CPUS)
    keys = sorted({k for s in samples for k in s.calls})
    hist = {k: sum(s.calls.get(k, 0.0) for s in samples) for k in keys}
    calls = hist["count"]
    failures = [f for s in samples for f in s.failures]
    return {
        "label": "with schemagate" if samples[0].webhook else "without",
        "operation": samples[0].operation,
        "webhook": samples[0].webhook,
        "repetitions": len(samples),
        "applies": n,
        "answered": len(lat),
        "failed": sum(failed(s.failures) for s in samples),
        "failures": failures[:20],
        "stored_with_init_container": sum(s.injected for s in samples),
        "wall_s": wall,
        "applies_per_s": n / wall,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat, default=math.nan),
        "p50_per_rep": [percentile(s.latencies, 50) for s in samples],
        "p99_per_rep": [percentile(s.latencies, 99) for s in samples],
        "admissions_logged": len(ms),
        "webhook_ms": {
            "p50": percentile(ms, 50),
            "p99": percentile(ms, 99),
            "max": max(ms, default=math.nan),
        },
        "apiserver_webhook_calls": calls,
        "apiserver_webhook_mean_ms": hist["sum"] / calls * 1000 if calls else math.nan,
        # The histogram's buckets, as shares of the calls: "le=0.025": 0.9 is 90% <= 25 ms.
        "apiserver_webhook_buckets": {
            k: v / calls for k, v in hist.items() if k.startswith("le=") and calls
        },
        "cpu_ms_per_apply": {k: v / n * 1000 for k, v in spent.items() if k != "cores"},
        "machine_busy_share": spent["cores"] / capacity,
        "foreign_cpu_share": max(0.0, spent["cores"] - ours) / capacity,
        "foreign_cpu_share_per_rep": [
            max(0.0, s.spent["cores"] - sum(v for k, v in s.spent.items() if k != "cores"))
            / (s.wall * len(procs.CPUS))
            for s in samples
        ],
    }


class Step:
    def __init__(self, cp: ControlPlane, schemagate: procs.Server, kubectl: Kubectl) -> None:
        self.cp = cp
        self.schemagate = schemagate
        self.kubectl = kubectl
        pids = {p.name: p.popen.pid for p in cp.processes if p.popen is not None}
        self.meter = Meter({"schemagate": schemagate.proc.pid, **pids})
        self.samples: list[Sample] = []
        self.switches: list[float] = []  # seconds until each (de)registration took effect
        self.registered = False

    async def round(
        self, clients: Clients, rep: int, operation: str, with_webhook: bool, n: int
    ) -> None:
        label = "with schemagate" if with_webhook else "without"
        docs = batch(f"burst-{rep}-{'with' if with_webhook else 'without'}", n, IMAGES[operation])
        spaces = namespaces(docs)
        if operation == "CREATE":
            await clients.create_namespaces(spaces)
        await clients.warm()
        log_offset = self.schemagate.log.stat().st_size
        calls_before = webhook_calls(await clients.text("/metrics"))
        cpu_before = self.meter.sample()
        result = await burst(clients, docs)
        cpu_after = self.meter.sample()
        calls_after = webhook_calls(await clients.text("/metrics"))
        self.schemagate.check_alive()
        self.cp.check_alive()
        stored, found = await verify(clients, docs, with_webhook)
        await asyncio.sleep(2 * accesslog.FLUSH_SECONDS)  # the last lines reach the log
        lines = admissions(self.schemagate.log, log_offset, spaces)
        ops = sorted({str(e.get("operation")) for e in lines})
        failures = result.failures + stored
        if with_webhook and (len(lines) < n or ops != [operation]):
            failures.append(f"round: {len(lines)} admissions logged for {n} applies, {ops}")
        if not with_webhook and lines:
            failures.append(f"round: {len(lines)} admissions logged with no webhook registered")
        sample = Sample(
            rep=rep,
            operation=operation,
            webhook=with_webhook,
            applies=n,
            latencies=result.latencies,
            durations=[float(e["duration_ms"]) for e in lines],
            failures=failures,
            wall=result.wall,
            spent={k: cpu_after[k] - cpu_before[k] for k in cpu_before},
            calls={k: v - calls_before.get(k, 0.0) for k, v in calls_after.items()},
            injected=found,
        )
        self.samples.append(sample)
        f = pooled([sample])
        wh = f["webhook_ms"]
        print(
            f"   {rep} {label:15} {operation:6} {n} in {result.wall:5.2f} s "
            f"({f['applies_per_s']:5.1f}/s)  p50 {f['p50'] * 1000:6.1f} ms  "
            f"p99 {f['p99'] * 1000:6.1f} ms"
            + (f"  webhook p50 {wh['p50']:.2f} p99 {wh['p99']:.2f} ms" if with_webhook else "")
            + f"  foreign {f['foreign_cpu_share']:4.0%}  failed {failed(failures)}",
            flush=True,
        )
        for failure in failures[:5]:
            print(f"      {failure}", flush=True)

    async def _called(self, clients: Clients) -> bool:
        probe = app("probe", "burst-probe", IMAGES["CREATE"])
        status, body = await apply(clients.one, clients.server, probe, dry_run=True)
        if status not in (200, 201):
            raise RuntimeError(f"dry-run probe: HTTP {status}: {body[:300]!r}")
        return injected(orjson.loads(body)) is not None

    async def switch(self, clients: Clients, register: bool) -> None:
        """Register schemagate's MutatingWebhookConfiguration (manifests/overlays/local,
        its url and caBundle set) or delete it; wait until the API server acts on it,
        then warm up (the API server's new connection to the webhook, and the rest)."""
        started = time.monotonic()
        if register:
            objects = render_local_overlay(
                self.kubectl, self.schemagate.port, self.schemagate.ca.read_bytes()
            )
            for obj in objects:
                for hook in obj.get("webhooks", []):
                    if hook.get("failurePolicy") != "Fail":
                        raise RuntimeError(f"{hook['name']}: failurePolicy is not Fail")
            await asyncio.to_thread(self.kubectl.apply_objects, objects)
        else:
            path = f"{ADMISSION}/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}"
            status, body = await clients.json("DELETE", path)
            if status != 200:
                raise RuntimeError(f"DELETE {path}: HTTP {status}: {body}")
        deadline = started + 30
        while await self._called(clients) != register:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not {'call' if register else 'stop'}")
            await asyncio.sleep(0.1)
        self.switches.append(time.monotonic() - started)
        self.registered = register
        print(
            f"   webhook {'registered' if register else 'deleted'}: in effect after "
            f"{self.switches[-1]:.1f} s",
            flush=True,
        )
        await self.warm_up(clients, f"burst-warm-{len(self.switches)}")

    async def warm_up(self, clients: Clients, prefix: str) -> None:
        docs = batch(prefix, self.warmup, IMAGES["CREATE"])
        await clients.create_namespaces(namespaces(docs))
        await burst(clients, docs)

    async def run(self, n: int, reps: int, warmup: int) -> None:
        """Repetitions in ABBA order (without, with; with, without; ...), so a drift of
        the machine's other load over the step weighs on both sides alike."""
        self.warmup = warmup
        async with Clients(self.cp) as clients:
            await clients.create_namespaces(["burst-probe"])
            await self.warm_up(clients, "burst-warm-0")
            for rep in range(reps):
                for with_webhook in (False, True) if rep % 2 == 0 else (True, False):
                    if with_webhook != self.registered:
                        await self.switch(clients, with_webhook)
                    for op in ("CREATE", "UPDATE"):
                        await self.round(clients, rep, op, with_webhook, n)


def run(work: Path, quick: bool) -> dict[str, Any]:
    """The step: returns its figures (see `markdown`)."""
    n, reps = count(quick), 1 if quick else REPETITIONS
    print(
        f"\n== burst: {n} Deployments x {reps} repetitions, {CLIENTS} clients, "
        "through kube-apiserver",
        flush=True,
    )
    started = time.monotonic()
    if shutil.which("kubectl") is None:  # renders manifests/overlays/local (kustomize)
        raise SystemExit("bench burst: kubectl not found (Debian package kubectl; make deps)")
    if not controlplane.binaries_cached():
        print(f"   building the control plane first (4-8 min): {controlplane.BUILD_LOG}")
    binaries = controlplane.ensure_binaries()  # a no-op when cached
    tls = work / "burst-tls"
    issue_to_dir(tls, ["localhost"], ["127.0.0.1"])
    config = work / "burst-config.yaml"
    config.write_text(CONFIG)
    cp = ControlPlane(binaries, with_controller_manager=False)
    with _all_cpus():
        cp.start()
    try:
        print(f"   control plane ready in {cp.start_seconds:.1f} s", flush=True)
        kubectl = Kubectl(cp.kubeconfig, work / "burst-kubectl-cache")
        schemagate = procs.start_schemagate(config, tls, work / "burst-schemagate.log", {})
        with procs.running(schemagate):
            step = Step(cp, schemagate, kubectl)
            asyncio.run(step.run(n, reps, 16 if quick else 48))
            peak_rss = schemagate.peak_rss_kib() / 1024
    finally:
        cp.stop()
    rounds = [
        pooled([s for s in step.samples if (s.operation, s.webhook) == (op, w)])
        for op in ("CREATE", "UPDATE")
        for w in (False, True)
    ]
    by = {(r["operation"], r["webhook"]): r for r in rounds}
    added = {
        op: {q: by[op, True][q] - by[op, False][q] for q in ("p50", "p99")}  # seconds
        for op in ("CREATE", "UPDATE")
    }
    return {
        "deployments": n,
        "clients": CLIENTS,
        "namespaces_per_round": NAMESPACES,
        "method": "server-side apply over HTTP/1.1, one keep-alive connection per client",
        "kubernetes": controlplane.K8S_VERSION,
        "placement": (
            f"schemagate on CPU {procs.SERVER_CPU}, the clients on CPU {procs.LOAD_CPU}, "
            f"etcd and kube-apiserver on CPUs {','.join(map(str, procs.CPUS))}"
            if procs.PINNED
            else "one CPU: everything shares it"
        ),
        "control_plane_start_s": cp.start_seconds,
        "switched_after_s": step.switches,
        "schemagate_peak_rss_mib": peak_rss,
        "repetitions": reps,
        "rounds": rounds,
        "added": added,
        "failed": sum(r["failed"] for r in rounds),
        "seconds": time.monotonic() - started,
    }


# --- report ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown(b: dict[str, Any]) -> str:
    header = [
        "round", "op", "applies", "applies/s", "apply p50 ms", "p99 ms", "max ms",
        "webhook p50 ms", "p99 ms", "max ms", "API server→webhook mean ms", "failed",
    ]  # fmt: skip
    rows = []
    for op in ("CREATE", "UPDATE"):
        pair = {r["webhook"]: r for r in b["rounds"] if r["operation"] == op}
        for with_webhook in (False, True):
            r = pair[with_webhook]
            wh = r["webhook_ms"]
            rows.append([
                r["label"], op, str(r["applies"]), f"{r['applies_per_s']:.1f}",
                _ms(r["p50"]), _ms(r["p99"]), _ms(r["max"]),
                *((f"{wh['p50']:.2f}", f"{wh['p99']:.2f}", f"{wh['max']:.2f}",
                   f"{r['apiserver_webhook_mean_ms']:.1f}") if with_webhook else ("", "", "", "")),
                str(r["failed"]),
            ])  # fmt: skip
        a = b["added"][op]
        rows.append([
            "added (with - without)", op, "", "", f"{a['p50'] * 1000:+.1f}",
            f"{a['p99'] * 1000:+.1f}", "", "", "", "", "", "",
        ])  # fmt: skip
    lines = [
        f"Burst: {b['deployments']} labelled Deployments per round, {b['clients']} concurrent "
        f"clients, {b['method']}, through kube-apiserver {b['kubernetes']} + etcd; fresh "
        f"namespaces per round (CREATE), then the same re-applied with a new image (UPDATE); "
        f"{b['repetitions']} repetition(s) of each round, alternating without / with, "
        f"percentiles over all of them. Placement: {b['placement']}. "
        "Webhook: schemagate's own duration_ms per admission; "
        "API server→webhook: the API server's mean time per call (TLS, JSON, queueing).",
        "",
        *_table(header, rows),
        "",
        "CPU ms per apply (API server, etcd, schemagate, clients) and other processes' share "
        "of the machine:",
        "",
    ]
    for r in b["rounds"]:
        cpu = r["cpu_ms_per_apply"]
        buckets = sorted(
            (float(k.removeprefix("le=")), v) for k, v in r["apiserver_webhook_buckets"].items()
        )
        within = ", ".join(f"≤ {le * 1000:g} ms {share:.0%}" for le, share in buckets if le <= 0.5)
        lines.append(
            f"- {r['label']} {r['operation']}: kube-apiserver {cpu['kube-apiserver']:.2f}, "
            f"etcd {cpu['etcd']:.2f}, schemagate {cpu['schemagate']:.2f}, clients "
            f"{cpu['clients']:.2f}; machine busy {r['machine_busy_share']:.0%}, foreign "
            f"{r['foreign_cpu_share']:.0%}; wall {r['wall_s']:.1f} s"
            + (f"; API server's calls to the webhook {within}" if within and r["webhook"] else "")
        )
    lines += [
        "",
        f"Step wall time {b['seconds']:.0f} s (control plane ready in "
        f"{b['control_plane_start_s']:.1f} s; registering or deleting the webhook took effect "
        f"after {', '.join(f'{x:.1f}' for x in b['switched_after_s'])} s); schemagate peak "
        f"RSS {b['schemagate_peak_rss_mib']:.1f} MiB.",
    ]
    return "\n".join(lines) + "\n"


def targets(b: dict[str, Any]) -> list[dict[str, Any]]:
    with_ = {r["operation"]: r for r in b["rounds"] if r["webhook"]}
    added = b["added"]
    return [
        {
            "target": f"burst: 0 failures ({b['deployments']} Deployments x "
            f"{4 * b['repetitions']} rounds, {b['clients']} clients)",
            "value": (
                f"{b['failed']} failed; added p50/p99 CREATE "
                f"{added['CREATE']['p50'] * 1000:+.1f}/{added['CREATE']['p99'] * 1000:+.1f} ms, "
                f"UPDATE {added['UPDATE']['p50'] * 1000:+.1f}/"
                f"{added['UPDATE']['p99'] * 1000:+.1f} ms; webhook p99 "
                f"{with_['CREATE']['webhook_ms']['p99']:.2f} ms"
            ),
            "met": b["failed"] == 0,
        }
    ]
