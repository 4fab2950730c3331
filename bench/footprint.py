"""What a replica costs before and besides its throughput: start-up time and memory.

- **start-up**: from the process's start (`Popen`) to the first `/readyz` 200 over a
  verified TLS connection, polled every 5 ms, with the configuration `make run` uses
  (dev/config.yaml, an embedded SQLite database). One start first, not counted, so the
  page cache is warm; then the median and the slowest of the counted starts.
- **memory per engine**: schemagate started with one database of each engine
  (`make run`'s SQLite; the benchmark's PostgreSQL; a MySQL URL no server answers, which
  inject never reads), the same inject load on each and on the reference, and the peak
  RSS (`VmHWM`) of each against the reference's.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sqlite3
import ssl
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import load, procs
from bench.bodies import Body
from tests.support.net import free_port

DEV_CONFIG = procs.ROOT / "dev" / "config.yaml"
SEED = procs.ROOT / "dev" / "seed.sql"
STARTUP_RUNS = 5
STARTUP_POLL = 0.005


def seed_dev_database(work: Path) -> dict[str, str]:
    """The SQLite file `make run` serves, seeded as `make run` seeds it; its env."""
    db = work / "schemagate.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(SEED.read_text())
    return {"LOCAL_DATABASE_URL": f"sqlite://{db}"}


def _ready(port: int, context: ssl.SSLContext, path: str) -> bool:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def time_to_ready(argv: list[str], env: dict[str, str], ca: Path, port: int, path: str) -> float:
    """Seconds from starting `argv` to the first 200 on `path`; the process is stopped."""
    context = ssl.create_default_context(cafile=str(ca))
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=procs.ROOT,
        preexec_fn=procs._pin_to_server_cpu,
    )
    try:
        while not _ready(port, context, path):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode} before ready")
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"{argv[0]} not ready in 30 s")
            time.sleep(STARTUP_POLL)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(20)


def startup(tls: Path, env: dict[str, str], runs: int = STARTUP_RUNS) -> dict[str, Any]:
    print("\n== start-up: process start to /readyz 200, `make run`'s configuration", flush=True)
    out: dict[str, Any] = {}
    for name in ("schemagate", "reference"):
        times = []
        for i in range(runs + 1):
            port = free_port()
            if name == "schemagate":
                argv = procs.schemagate_argv(DEV_CONFIG, tls, port)
                path = "/readyz"
            else:
                argv = procs.reference_argv(tls, port)
                path = "/healthz"  # the reference has no /readyz
            seconds = time_to_ready(
                argv, {**os.environ, **procs.shipped(), **env}, tls / "ca.crt", port, path
            )
            if i:  # the first start warms the page cache
                times.append(seconds)
        out[name] = {
            "path": path,
            "runs": [round(t, 3) for t in times],
            "median": statistics.median(times),
            "max": max(times),
        }
        print(
            f"   {name:10} median {out[name]['median']:.3f} s  slowest {max(times):.3f} s "
            f"({runs} starts after a warm-up)",
            flush=True,
        )
    return out


def memory(
    work: Path, tls: Path, body: Body, engines: dict[str, tuple[Path, dict[str, str]]], s: float
) -> dict[str, Any]:
    """Peak RSS of schemagate configured with each engine, and of the reference, under
    the same inject load (`s` seconds of wrk, 16 connections)."""
    print("\n== memory: peak RSS per configured engine, inject load", flush=True)
    out: dict[str, Any] = {"engines": {}}
    ref = procs.start_reference(tls, work / "reference-memory.log")
    with procs.running(ref):
        ref_run = load.wrk(ref, body, s, 16)
        out["reference_peak_rss_mib"] = ref.peak_rss_kib() / 1024
        out["failed"] = ref_run.failed
    print(f"   reference            peak RSS {out['reference_peak_rss_mib']:6.1f} MiB", flush=True)
    for engine, (config, env) in engines.items():
        server = procs.start_schemagate(config, tls, work / f"schemagate-{engine}.log", env)
        with procs.running(server):
            run = load.wrk(server, body, s, 16)
            start_rss = server.rss_kib() / 1024
            peak = server.peak_rss_kib() / 1024
        out["failed"] += run.failed
        ratio = peak / out["reference_peak_rss_mib"]
        out["engines"][engine] = {
            "config": str(config.relative_to(procs.ROOT))
            if config.is_relative_to(procs.ROOT)
            else config.name,
            "peak_rss_mib": peak,
            "rss_after_mib": start_rss,
            "ratio": ratio,
        }
        print(f"   schemagate {engine:10} peak RSS {peak:6.1f} MiB  {ratio:.2f}x", flush=True)
    return out


def mysql_config(work: Path) -> tuple[Path, dict[str, str]]:
    """A database on MySQL that nothing answers: inject never reads it, so only the driver
    and the configuration count."""
    config = work / "config-mysql.yaml"
    config.write_text(
        "databases:\n"
        "  orders:\n"
        "    url_env: ORDERS_DATABASE_URL\n"
        "    tool: flyway\n"
        "    namespaces: [shop]\n"
        "lookup:\n"
        "  timeout_seconds: 2\n"
        "  cache_ttl_seconds: 5\n"
        "on_unreachable: closed\n"
    )
    return config, {"ORDERS_DATABASE_URL": f"mysql://bench@127.0.0.1:{free_port()}/orders"}
