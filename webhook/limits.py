"""What one client may cost the server: the bounds `serve` and the HTTP adapter enforce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The API server opens a connection, shakes hands and sends each review whole, and
    gives up after the webhook's `timeoutSeconds` (10 by default, 30 at most). These bounds
    are far above what it needs and keep a slow or hostile client (any pod can reach the
    port) from holding connections open: every phase has a deadline and the number of
    open connections is capped; more wait in the listen backlog until one closes.
    """

    handshake_seconds: float = 5.0  # accepted -> TLS established
    header_seconds: float = 5.0  # established, or a later request's first byte -> headers read
    body_seconds: float = 10.0  # headers read -> body read (webhook.app)
    # Idle keep-alive: above the 90 s after which Go clients (the API server) drop idle
    # connections, so the client closes first and never races a request onto a closing one.
    idle_seconds: float = 120.0
    # Counted from accept, TLS handshakes included. Each holds TLS and read buffers, so
    # this bounds memory too (with the body budget below).
    max_connections: int = 256
    backlog: int = 128
    # Review bytes read, decoded or answered at once, across all connections
    # (webhook.app.BodyBudget). JSON decodes to many times its size in Python objects (a
    # body of `[{},{},...]` to about 25 times): 4 MiB keeps that near 100 MiB, inside a
    # 256 MiB pod. A single review larger than this runs alone.
    body_budget_bytes: int = 4 * 1024 * 1024
