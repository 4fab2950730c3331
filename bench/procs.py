"""The processes under test: schemagate and the reference, each pinned to the server CPU,
their CPU time and memory read from /proc, and the throwaway PostgreSQL gate reads.

CPU placement (2 cores): both servers run on `SERVER_CPU`, one at a time under load; the
benchmark itself, the load tools and PostgreSQL run on `LOAD_CPU`. So each server has a
core to itself, the same one for both, and the client's own cost never competes with it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import compiled, ddl
from tests.support.net import free_port
from tests.support.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMAGATE = Path(sys.executable).parent / "schemagate"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

CPUS = sorted(os.sched_getaffinity(0))
PINNED = len(CPUS) >= 2
SERVER_CPU = CPUS[0]
LOAD_CPU = CPUS[1] if PINNED else CPUS[0]


def pin_self_to_load_cpu() -> None:
    """Run the benchmark (and so every tool and database it starts) on the load CPU."""
    if PINNED:
        os.sched_setaffinity(0, {LOAD_CPU})


def _pin_to_server_cpu() -> None:
    if PINNED:
        os.sched_setaffinity(0, {SERVER_CPU})


def core_busy_seconds(cpu: int) -> float:
    """Busy (non-idle) time of one CPU since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(v) for v in line.split()[1:]]
                idle = ticks[3] + ticks[4]  # idle + iowait
                return (sum(ticks[:8]) - idle) / CLOCK_TICKS
    raise RuntimeError(f"cpu{cpu} not in /proc/stat")


@dataclass
class Server:
    name: str  # schemagate | reference
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    ca: Path
    context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(self.ca))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def _status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{key} not in /proc/{self.proc.pid}/status")

    def rss_kib(self) -> int:
        return self._status_kib("VmRSS")

    def peak_rss_kib(self) -> int:
        return self._status_kib("VmHWM")

    def core(self) -> str:
        """`compiled` if the process has the mypyc-compiled core loaded, else `python`."""
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        return "compiled" if "/webhook/decide.cpython-" in maps else "python"

    def event_loop(self) -> str:
        """`uvloop` if the process has uvloop's extension loaded, else `asyncio`."""
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        return "uvloop" if "/uvloop/loop." in maps else "asyncio"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over the series matching `labels` (schemagate only)."""
        _, body = self.request("GET", "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith((name + "{", name + " ")):
                series, value = line.rsplit(" ", 1)
                if all(f'{k}="{v}"' in series for k, v in labels.items()):
                    total += float(value)
        return total

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(
    name: str, argv: list[str], log: Path, ca: Path, port: int, env: dict[str, str]
) -> Server:
    out = log.open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=ROOT,
        preexec_fn=_pin_to_server_cpu,
    )
    out.close()
    server = Server(name, port, proc, log, ca)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError):
            if server.request("GET", "/healthz")[0] == 200:
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} not healthy in 30 s:\n{log.read_text()[-2000:]}")


def schemagate_argv(config: Path, tls_dir: Path, port: int) -> list[str]:
    return [
        str(SCHEMAGATE), "serve", "--config", str(config),
        "--tls-cert", str(tls_dir / "tls.crt"), "--tls-key", str(tls_dir / "tls.key"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def reference_argv(tls_dir: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "bench.reference",
        "--tls-cert", str(tls_dir / "tls.crt"), "--tls-key", str(tls_dir / "tls.key"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


@functools.cache
def shipped() -> dict[str, str]:
    """The environment that runs schemagate as the image ships it: the core compiled by
    setup.py (tests/support/compiled.py builds it here, or finds it cached)."""
    return compiled.env(compiled.tree())


def start_schemagate(config: Path, tls_dir: Path, log: Path, env: dict[str, str]) -> Server:
    port = free_port()
    argv = schemagate_argv(config, tls_dir, port)
    return _start("schemagate", argv, log, tls_dir / "ca.crt", port, {**shipped(), **env})


def start_reference(tls_dir: Path, log: Path) -> Server:
    port = free_port()
    return _start("reference", reference_argv(tls_dir, port), log, tls_dir / "ca.crt", port, {})


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def postgres(database: str, version: str) -> Iterator[str]:
    """A throwaway PostgreSQL whose `database` records Flyway history up to `version`;
    yields the connection URL."""
    server = PostgresServer()
    try:
        server.start()
        server.create_database(database)
        with server.connect(database) as conn:
            for sql in (
                *ddl.flyway("postgresql"),
                ddl.flyway_row(1, "1", "create orders"),
                ddl.flyway_row(2, version, "add status"),
            ):
                conn.execute(sql)
        yield server.url(database)
    finally:
        server.close()
