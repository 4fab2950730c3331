"""Prometheus metrics, on a registry of their own so several servers can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Admission latency buckets: the API server's per-webhook budget is seconds, but the
# interesting range for an in-memory decision is well under 10 ms.
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "schemagate_admission_requests",
            "Admission reviews answered.",
            ["operation", "mode", "decision"],
            registry=r,
        )
        self.latency = Histogram(
            "schemagate_admission_duration_seconds",
            "Time to answer an admission review.",
            ["mode"],
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge(
            "schemagate_admission_in_flight", "Admission reviews being answered.", registry=r
        )
        self.rejected = Counter(
            "schemagate_bad_requests",
            "Requests refused before admission (HTTP 4xx).",
            ["status"],
            registry=r,
        )
        self.lookups = Counter(
            "schemagate_lookups",
            "Recorded-version reads by database and result.",
            ["database", "result"],
            registry=r,
        )
        self.lookup_latency = Histogram(
            "schemagate_lookup_duration_seconds",
            "Time to read a database's recorded version.",
            ["database"],
            buckets=_LATENCY,
            registry=r,
        )
        self.cert_expiry = Gauge(
            "schemagate_tls_cert_expiry_timestamp_seconds",
            "Expiry of the serving certificate (Unix time).",
            registry=r,
        )
        self.cert_reloads = Counter(
            "schemagate_tls_cert_reloads",
            "Serving certificate reloads by result.",
            ["result"],
            registry=r,
        )

    def observe_lookup(self, database: str, result: str, seconds: float) -> None:
        self.lookups.labels(database, result).inc()
        self.lookup_latency.labels(database).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
