"""The load tools, from Debian's archive: `wrk` for saturation, `hey` for a fixed rate.

Both run on the load CPU. Every run reads the server's CPU time from /proc before and
after, and the busy time of the server's core, so a run disturbed by some other process
on that core shows up as `foreign_cpu` instead of passing silently as a slow server.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.bodies import Body
from bench.procs import SERVER_CPU, Server, core_busy_seconds

LUA = Path(__file__).with_name("post.lua")


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "hey") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"bench: {', '.join(missing)} not found: `apt-get install wrk hey` (make bench does)"
        )


def _lua_literal(text: str) -> str:
    return re.sub(r"([^A-Za-z0-9])", r"%\1", text)


def expectations(server: Server, body: Body) -> list[str]:
    """Lua patterns every response to `body` must match: its uid, allowed, and for
    schemagate in inject mode a JSON Patch."""
    patterns = [f'"uid":%s*"{_lua_literal(body.uid)}"', '"allowed":%s*true']
    if server.name == "schemagate" and body.mode == "inject":
        patterns.append('"patchType":%s*"JSONPatch"')
    return patterns


@dataclass(frozen=True)
class Measured:
    """What the server spent during one run."""

    wall: float
    server_cpu: float  # seconds of the server process
    foreign_cpu: float  # seconds other processes took on the server's core


class _Meter:
    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> _Meter:
        self.t0 = time.perf_counter()
        self.cpu0 = self.server.cpu_seconds()
        self.core0 = core_busy_seconds(SERVER_CPU)
        return self

    def __exit__(self, *exc: object) -> None:
        self.measured = Measured(
            wall=time.perf_counter() - self.t0,
            server_cpu=(cpu := self.server.cpu_seconds() - self.cpu0),
            foreign_cpu=max(0.0, core_busy_seconds(SERVER_CPU) - self.core0 - cpu),
        )


@dataclass(frozen=True)
class Saturation:
    requests: int
    seconds: float
    rps: float
    socket_errors: int
    non_2xx: int
    bad: int  # not 200, or a response missing an expected pattern
    checked: int
    cpu_per_1k: float  # server CPU seconds per 1,000 requests
    busy_share: float  # the server's own use of its core: near 1 when it is the bottleneck
    foreign_cpu_share: float  # other processes' share of the server core during the run

    @property
    def failed(self) -> int:
        return self.socket_errors + self.bad


def wrk(server: Server, body: Body, seconds: float, connections: int) -> Saturation:
    env = {
        **os.environ,
        "BENCH_BODY": str(body.path),
        "BENCH_EXPECT": "\t".join(expectations(server, body)),
    }
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
        "-s", str(LUA), server.url,
    ]  # fmt: skip
    with _Meter(server) as meter:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    server.check_alive()
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    out = orjson.loads(line.removeprefix("BENCH "))
    requests = int(out["requests"])
    elapsed = out["duration_us"] / 1e6
    m = meter.measured
    return Saturation(
        requests=requests,
        seconds=elapsed,
        rps=requests / elapsed,
        socket_errors=out["connect"] + out["read"] + out["write"] + out["timeout"],
        non_2xx=out["status"],
        bad=out["bad"],
        checked=out["checked"],
        cpu_per_1k=m.server_cpu / max(requests, 1) * 1000,
        busy_share=m.server_cpu / m.wall,
        foreign_cpu_share=m.foreign_cpu / m.wall,
    )


@dataclass(frozen=True)
class FixedRate:
    rate: float  # requests/s asked for
    achieved: float  # requests/s delivered
    requests: int
    latencies: list[float]  # seconds, requests on an established connection only
    new_connections: int  # requests that opened a connection (TLS handshake), left out
    failed: int  # asked for but not answered 200 (socket errors, timeouts, other status)
    cpu_per_1k: float
    foreign_cpu_share: float


def hey(server: Server, body: Body, rate: float, seconds: float, streams: int) -> FixedRate:
    """About `rate` requests/s in total for `seconds`, as `streams` hey processes of one
    worker each, started 1/rate apart.

    hey's -q limits each worker to a rate, and one hey's workers tick together: -c 10
    -q 20 sends bursts of 10 simultaneous requests every 50 ms, not one every 5 ms. One
    worker per process, the processes staggered, spreads the arrivals out instead.
    """
    each = max(1, round(rate / streams * seconds))
    argv = [
        "hey", "-n", str(each), "-c", "1", "-q", f"{rate / streams:g}",
        "-m", "POST", "-T", "application/json", "-D", str(body.path),
        "-t", "20", "-cpus", "1", "-o", "csv", server.url,
    ]  # fmt: skip
    runs = []
    with _Meter(server) as meter:
        for i in range(streams):
            if i:
                time.sleep(1 / rate)
            runs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outputs = [run.communicate() for run in runs]
    server.check_alive()
    rows = []
    for run, (out, err) in zip(runs, outputs, strict=True):
        if run.returncode != 0:
            raise RuntimeError(f"hey failed ({run.returncode}):\n{out.decode()}\n{err.decode()}")
        rows += list(csv.DictReader(io.StringIO(out.decode())))
    ok = [row for row in rows if row["status-code"] == "200"]
    warm = [row for row in ok if float(row["DNS+dialup"]) == 0.0]
    m = meter.measured
    return FixedRate(
        rate=rate,
        achieved=len(rows) / m.wall,
        requests=len(rows),
        latencies=[float(row["response-time"]) for row in warm],
        new_connections=len(ok) - len(warm),
        failed=each * streams - len(ok),
        cpu_per_1k=m.server_cpu / max(len(rows), 1) * 1000,
        foreign_cpu_share=m.foreign_cpu / m.wall,
    )


@dataclass(frozen=True)
class Closed:
    """`requests` posted back to back by `connections` clients (hey without a rate)."""

    requests: int
    failed: int
    cpu_per_request: float  # server CPU seconds
    latencies: list[float]


def closed_loop(server: Server, body: Body, requests: int, connections: int = 1) -> Closed:
    argv = [
        "hey", "-n", str(requests), "-c", str(connections), "-m", "POST",
        "-T", "application/json", "-D", str(body.path), "-t", "20", "-cpus", "1",
        "-o", "csv", server.url,
    ]  # fmt: skip
    with _Meter(server) as meter:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    server.check_alive()
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    ok = [row for row in rows if row["status-code"] == "200"]
    return Closed(
        requests=len(rows),
        failed=requests - len(ok),
        cpu_per_request=meter.measured.server_cpu / max(len(rows), 1),
        latencies=[float(row["response-time"]) for row in ok if float(row["DNS+dialup"]) == 0.0],
    )
