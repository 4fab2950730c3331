"""Process lifecycle over real TLS: graceful SIGTERM, certificate reload, config errors."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from certs.files import issue_to_dir, write_files
from certs.issue import issue_ca, issue_serving
from tests.factories import deployment, labelled, review
from tests.server import ROOT, SCHEMAGATE, Served, client_context, start
from tests.support.net import free_port

pytestmark = pytest.mark.component


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    return path


GATE_CONFIG = """\
databases:
  local: {url_env: LOCAL_DATABASE_URL, tool: flyway, namespaces: ["*"]}
lookup: {timeout_seconds: 6, cache_ttl_seconds: 0}
"""


def _post(served: Served, doc: dict[str, object]) -> tuple[int, dict[str, object]]:
    status, body = served.request("POST", "/mutate", orjson.dumps(doc))
    return status, orjson.loads(body)


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(
    tls_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "local.db"
    sqlite3.connect(db).executescript((ROOT / "dev" / "seed.sql").read_text())
    config = tmp_path / "config.yaml"
    config.write_text(GATE_CONFIG)
    served = start(
        config, tls_dir, tmp_path / "serve.log", env={"LOCAL_DATABASE_URL": f"sqlite://{db}"}
    )
    # An exclusive lock keeps every gate lookup waiting, so the requests are in flight.
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    docs = [
        review(
            labelled(
                deployment(f"app{i}"),
                "gate",
                {"schemagate.dev/database": "local", "schemagate.dev/schema-version": "2"},
            ),
            uid=f"inflight-{i}",
        )
        for i in range(5)
    ]
    with ThreadPoolExecutor(len(docs)) as pool:
        futures = [pool.submit(_post, served, doc) for doc in docs]
        time.sleep(0.5)
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=2)
        assert not any(f.done() for f in futures)
        locker.execute("ROLLBACK")
        answers = [f.result(timeout=20) for f in futures]
    assert [
        (status, body["response"]["uid"], body["response"]["allowed"])  # type: ignore[index]
        for status, body in answers
    ] == [(200, doc["request"]["uid"], True) for doc in docs]
    assert served.proc.wait(20) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "shutting down" in log
    assert log.count('"msg":"admission"') == 5


def test_certificate_files_are_reloaded_without_dropping_connections(
    config: Path, tmp_path: Path
) -> None:
    tls = tmp_path / "tls"
    issue_to_dir(tls, ["localhost"], ["127.0.0.1"])
    old_ca = (tls / "ca.crt").read_bytes()
    served = start(config, tls, tmp_path / "serve.log")
    try:
        kept = served.connection()
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok\n"
        before = served.metric("schemagate_tls_cert_expiry_timestamp_seconds")

        issue_to_dir(tls, ["localhost"], ["127.0.0.1"])  # a new CA and serving cert
        assert (tls / "ca.crt").read_bytes() != old_ca
        deadline = time.monotonic() + 10
        new_context = client_context(tls / "ca.crt")
        while True:
            try:
                conn = served.connection()
                conn._context = new_context  # type: ignore[attr-defined]
                conn.request("GET", "/healthz")
                assert conn.getresponse().status == 200
                break
            except ssl.SSLCertVerificationError:
                assert time.monotonic() < deadline, "new certificate not served within 10 s"
                time.sleep(0.2)
        # The connection opened under the old certificate is still served.
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok\n"
        served.context = new_context
        assert served.metric("schemagate_tls_cert_reloads_total", result="ok") >= 1
        assert served.metric("schemagate_tls_cert_expiry_timestamp_seconds") >= before
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "on_unreachable: maybe\n",
            "schemagate: config error: on_unreachable: 'maybe' is not one of closed, open",
        ),
        (
            "databases:\n  orders: {url: 'postgresql://u:hunter2@db/orders', tool: flyway}\n",
            "schemagate: config error: databases.orders.namespaces: required "
            "(a list of namespaces, "
            'or ["*"])',
        ),
        (
            "databases:\n  orders: {url_env: NO_SUCH_VAR_X, tool: flyway, namespaces: ['*']}\n",
            "schemagate: config error: databases.orders.url_env: "
            "environment variable NO_SUCH_VAR_X is not set",
        ),
        (
            "lookups: {}\n",
            "schemagate: config error: lookups: unknown key; expected one of "
            "databases, lookup, on_unreachable, inject",
        ),
        (
            "a: [\n",
            "schemagate: config error: config {path} is not valid YAML at line 2, column 1: "
            "expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_a_bad_config_stops_the_server_with_one_line(
    tls_dir: Path, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [
            str(SCHEMAGATE),
            "serve",
            "--config",
            str(path),
            "--tls-cert",
            str(tls_dir / "tls.crt"),
            "--tls-key",
            str(tls_dir / "tls.key"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == message.format(path=path)
    assert "hunter2" not in proc.stderr + proc.stdout


def test_readyz_fails_once_the_certificate_has_expired(config: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = issue_ca("test-ca", now=now - timedelta(days=10))
    expired = issue_serving(
        ca, ["localhost"], ["127.0.0.1"], now=now - timedelta(days=2), lifetime=timedelta(days=1)
    )
    tls = tmp_path / "tls"
    write_files(tls, ca.cert_pem, expired)
    # No client could verify an expired certificate; this one only asks about it.
    unverified = ssl._create_unverified_context()  # noqa: S323
    served = start(config, tls, tmp_path / "serve.log", context=unverified)
    try:
        status, body = served.request("GET", "/readyz")
        assert status == 503
        assert body.decode().startswith("serving certificate expired at ")
        assert served.request("GET", "/healthz") == (200, b"ok\n")
    finally:
        assert served.stop() == 0


def test_without_namespace_the_installs_own_namespace_is_never_gated(
    config: Path, tls_dir: Path, tmp_path: Path
) -> None:
    # As under `make run`: no --namespace, no SCHEMAGATE_NAMESPACE, not in a pod.
    assert "SCHEMAGATE_NAMESPACE" not in os.environ
    served = start(config, tls_dir, tmp_path / "serve.log")
    try:
        gated = labelled(deployment(), "gate", {"schemagate.dev/database": "orders"})
        own = review(gated, namespace="schemagate-system")
        other = review(gated, namespace="shop")
        assert served.admit(own)["response"] == {"uid": own["request"]["uid"], "allowed": True}
        assert served.admit(other)["response"]["allowed"] is False
    finally:
        assert served.stop() == 0
