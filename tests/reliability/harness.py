"""Load, a TCP proxy, the tier's database and configuration, and its transcript of
everything it saw.

`Load` plays the API server: worker threads send a steady mix of whole AdmissionReviews
over TLS, one connection per review, each loop ending by itself after `limit` seconds,
and keep every outcome with its timing. `Proxy` stands for a Service in front of several
webhook processes: it routes each new connection to one of the endpoints it is given,
and never retries. `TRANSCRIPT` collects every response body, metrics page and server
log of the tier, so one test can grep all of it for the database password.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import ssl
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.factories import deployment, labelled, review
from tests.server import Served
from tests.support import ddl, summary
from tests.support.servers import PostgresServer

KINDS = ("inject", "gate", "unlabelled")


# -- what the tier saw ---------------------------------------------------------------


@dataclass
class Transcript:
    """Every byte the webhook said to the tier: response bodies, metrics, log files."""

    texts: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, text: str | bytes) -> None:
        with self.lock:
            self.texts.append(text if isinstance(text, str) else text.decode("utf-8", "replace"))

    def everything(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every recorded text and every log file."""
        with self.lock:
            texts, logs = list(self.texts), list(self.logs)
        for index, text in enumerate(texts):
            yield f"response #{index}", text
        for path in logs:
            if path.exists():
                yield str(path), path.read_text(errors="replace")


TRANSCRIPT = Transcript()


@dataclass(frozen=True)
class Count:
    scenario: str
    sent: int
    answered: int
    failed: int
    note: str = ""


def report(scenario: str, sent: int, answered: int, failed: int, note: str = "") -> Count:
    count = Count(scenario, sent, answered, failed, note)
    summary.record(
        "reliability: requests sent / answered / failed",
        f"{scenario:<44}  sent {sent:>5}  answered {answered:>5}  failed {failed:>3}  {note}",
    )
    print(f"\n[{scenario}] sent {sent}, answered {answered}, failed {failed}. {note}")
    return count


# -- the database and the webhook's configuration ------------------------------------


@dataclass(frozen=True)
class Database:
    """A fresh PostgreSQL database whose flyway_schema_history records version 3."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)


def make_orders(postgres: PostgresServer) -> Database:
    name = f"rel_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)
    with postgres.connect(name) as conn:
        for sql in (
            *ddl.flyway("postgresql"),
            ddl.flyway_row(1, "1", "create orders"),
            ddl.flyway_row(2, "2", "add status"),
            ddl.flyway_row(3, "3", "add index"),
        ):
            conn.execute(sql)
    return Database(postgres, name)


def gate_config(
    *, policy: str = "closed", timeout: float = 1.0, ttl: float = 1.0, extra: str = ""
) -> str:
    return (
        "databases:\n"
        "  orders: {url_env: ORDERS_DATABASE_URL, tool: flyway, namespaces: ['*']}\n"
        f"{extra}"
        f"lookup: {{timeout_seconds: {timeout}, cache_ttl_seconds: {ttl}}}\n"
        f"on_unreachable: {policy}\n"
    )


Launch = Callable[..., Served]


# -- the load -----------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    uid: str
    started: float
    sent: float | None = None  # the whole review was written to the socket
    finished: float = 0.0
    status: int | None = None
    answer: dict[str, Any] | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.finished - self.started

    @property
    def response(self) -> dict[str, Any]:
        return (self.answer or {}).get("response") or {}

    @property
    def answered(self) -> bool:
        """An AdmissionReview came back for this uid."""
        return (
            self.status == 200
            and self.answer is not None
            and self.answer.get("apiVersion") == "admission.k8s.io/v1"
            and self.answer.get("kind") == "AdmissionReview"
            and self.response.get("uid") == self.uid
            and isinstance(self.response.get("allowed"), bool)
        )

    @property
    def refused(self) -> bool:
        return self.error is not None and self.error.startswith("ConnectionRefusedError")

    @property
    def allowed(self) -> bool:
        return self.response.get("allowed") is True

    @property
    def message(self) -> str:
        return str((self.response.get("status") or {}).get("message", ""))

    @property
    def warnings(self) -> list[str]:
        return list(self.response.get("warnings") or [])


def admission(kind: str, uid: str, *, database: str = "orders", version: str = "2") -> bytes:
    """A whole review of `kind`: inject, gate (on `database` needing `version`) or unlabelled."""
    name = f"{kind}-{uid[-6:]}"
    if kind == "inject":
        obj = labelled(deployment(name), "inject", {"schemagate.dev/tool": "flyway"})
    elif kind == "gate":
        obj = labelled(
            deployment(name),
            "gate",
            {"schemagate.dev/database": database, "schemagate.dev/schema-version": version},
        )
    else:
        obj = deployment(name)
    return orjson.dumps(review(obj, uid=uid))


def post(
    port: int,
    context: ssl.SSLContext,
    body: bytes,
    outcome: Outcome,
    *,
    timeout: float = 20,
    path: str = "/mutate",
) -> Outcome:
    """Send one review on a new connection, like the API server, and fill in `outcome`."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        outcome.sent = time.monotonic()
        response = conn.getresponse()
        raw = response.read()
        outcome.status = response.status
        TRANSCRIPT.add(raw)
        try:
            outcome.answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            outcome.error = f"HTTP {response.status}: {raw[:200]!r}"
    except (OSError, http.client.HTTPException) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        outcome.finished = time.monotonic()
        conn.close()
    return outcome


class Load:
    """Worker threads sending a steady mix of reviews until stopped or `limit` seconds."""

    _serial = itertools.count()

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        *,
        kinds: Sequence[str] = KINDS,
        workers: int = 3,
        pause: float = 0.01,
        limit: float = 60.0,
        version: str = "2",
        name: str = "load",
    ) -> None:
        self._port = port
        self._context = context
        self._kinds = tuple(kinds)
        self._workers = workers
        self._pause = pause
        self._limit = limit
        self._version = version
        self._name = name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.outcomes: list[Outcome] = []

    def __enter__(self) -> Load:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a load worker did not finish"

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + self._limit
        for turn in itertools.count(index):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            kind = self._kinds[turn % len(self._kinds)]
            uid = f"{self._name}-{next(self._serial):06d}"
            body = admission(kind, uid, version=self._version)
            outcome = Outcome(kind, uid, time.monotonic())
            self.outcomes.append(post(self._port, self._context, body, outcome))
            self._stop.wait(self._pause)

    # -- reading the outcomes -------------------------------------------------------

    def select(
        self, kind: str | None = None, start: float = 0.0, end: float = float("inf")
    ) -> list[Outcome]:
        """Outcomes of `kind` (all if None) whose request started in [start, end)."""
        return [
            o
            for o in self.outcomes
            if (kind is None or o.kind == kind) and start <= o.started < end
        ]

    def failures(self, check: Callable[[Outcome], bool] = lambda o: o.answered) -> list[Outcome]:
        return [o for o in self.outcomes if not check(o)]


def well_formed(outcome: Outcome) -> bool:
    """Answered, and inject/unlabelled got what they always get."""
    if not outcome.answered:
        return False
    if outcome.kind == "inject":
        return outcome.allowed and outcome.response.get("patchType") == "JSONPatch"
    if outcome.kind == "unlabelled":
        return outcome.response == {"uid": outcome.uid, "allowed": True}
    return True


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def describe(outcomes: Sequence[Outcome]) -> str:
    latencies = [o.latency for o in outcomes]
    if not latencies:
        return "none"
    return (
        f"{len(latencies)} requests, p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )


# -- a Service in front of several webhook processes ----------------------------------


class Proxy:
    """A TCP proxy on loopback: each new connection goes to the next live endpoint.

    Like a Service whose endpoints are updated before a pod is stopped: connections are
    only ever routed to endpoints in the list, and a connection that cannot be made is
    not retried elsewhere (the API server would see it fail, and so does the test).
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._endpoints: list[int] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.routed: dict[int, int] = {}
        self.upstream_failures = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def add(self, port: int) -> None:
        with self._lock:
            self._endpoints.append(port)

    def remove(self, port: int) -> None:
        with self._lock:
            self._endpoints.remove(port)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            port = self._endpoints[next(self._turn) % len(self._endpoints)]
            self.routed[port] = self.routed.get(port, 0) + 1
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            with self._lock:
                self.upstream_failures += 1
            client.close()
            return
        with client, upstream:
            for sock in (client, upstream):
                sock.settimeout(60)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
            back.start()
            _copy(client, upstream)
            back.join(60)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until it ends, then pass the end on."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
