"""Loopback ports for the processes tests start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that was free a moment ago (the usual bind-to-0 race is accepted for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
