"""Run `schemagate serve` as a real process on a random loopback port, and talk to it over TLS."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent
SCHEMAGATE = Path(sys.executable).parent / "schemagate"


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    return context


@dataclass
class Served:
    port: int
    tls_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]
    context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = client_context(self.tls_dir / "ca.crt")

    def connection(self, timeout: float = 10) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def admit(self, review: dict[str, Any]) -> dict[str, Any]:
        status, body = self.request("POST", "/mutate", orjson.dumps(review))
        assert status == 200, body
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over the series matching `labels`."""
        _, body = self.request("GET", "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start(
    config: Path,
    tls_dir: Path,
    log: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    context: ssl.SSLContext | None = None,
) -> Served:
    port = port or free_port()
    out = log.open("ab")
    proc = subprocess.Popen(
        [
            str(SCHEMAGATE),
            "serve",
            "--config",
            str(config),
            "--tls-cert",
            str(tls_dir / "tls.crt"),
            "--tls-key",
            str(tls_dir / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    served = Served(port, tls_dir, log, proc)
    if context is not None:
        served.context = context
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"schemagate serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            if served.request("GET", "/healthz")[0] == 200:
                return served
        except OSError:
            time.sleep(0.05)
    served.stop(signal.SIGKILL)
    raise RuntimeError(f"schemagate serve not healthy in 20 s:\n{log.read_text()[-2000:]}")
