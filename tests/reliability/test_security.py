"""Security properties over real TLS: protocol and ciphers, client certificates, secrets,
and where the webhook may connect."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.issue import KeyPair, issue_ca
from tests.factories import deployment, labelled, review
from tests.reliability.harness import TRANSCRIPT, Database, Launch, gate_config, report
from tests.server import SCHEMAGATE, Served
from tests.support import wording
from tests.support.net import free_port
from tests.support.pki import issue_client
from tests.support.servers import PASSWORD

pytestmark = pytest.mark.faults

SECRETS = (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD))


def _handshake(served: Served, context: ssl.SSLContext) -> tuple[str, str] | None:
    """(protocol, cipher) if the server accepts what `context` offers, else None."""
    try:
        with (
            socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[1], cipher[0]
    except (ssl.SSLError, ConnectionResetError):
        return None


def _offering(
    served: Served,
    *,
    version: ssl.TLSVersion,
    ciphers: str = "ALL:@SECLEVEL=0",
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(served.tls_dir / "ca.crt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers(ciphers)
    return context


def test_only_tls_1_2_and_1_3_with_forward_secret_aead_ciphers(launch: Launch) -> None:
    served = launch("{}\n")
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert _handshake(served, _offering(served, version=old)) is None, old
    # Every TLS 1.2 suite this OpenSSL knows, offered one at a time.
    offered = sorted(
        {c["name"] for c in _offering(served, version=ssl.TLSVersion.TLSv1_2).get_ciphers()}
        - {
            c["name"]
            for c in ssl.create_default_context().get_ciphers()
            if c["protocol"] == "TLSv1.3"
        }
    )
    accepted = sorted(
        name
        for name in offered
        if _handshake(served, _offering(served, version=ssl.TLSVersion.TLSv1_2, ciphers=name))
    )
    report(
        "TLS cipher suites offered one by one (TLS 1.2)",
        len(offered),
        len(accepted),
        0,
        f"accepted: {', '.join(accepted)}; TLS 1.0 and 1.1 refused",
    )
    # The serving key is ECDSA P-256: ECDHE key exchange with an AEAD, nothing else.
    assert accepted == [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
    assert len(offered) > 30
    modern = _handshake(served, _offering(served, version=ssl.TLSVersion.TLSv1_3))
    assert modern is not None and modern[0] == "TLSv1.3"
    assert modern[1] in (
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    )
    # A default client (what the API server's Go client amounts to) gets TLS 1.3.
    assert _handshake(served, served.context) == modern


def _s_client(served: Served, *args: str) -> str:
    """What openssl s_client prints when it connects with `args`, reading until the server
    closes (-ign_eof: a TLS 1.3 client certificate is refused after the client finished)."""
    proc = subprocess.run(
        ["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{served.port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return proc.stdout + proc.stderr


def test_refused_handshakes_send_their_alert(launch: Launch, tmp_path: Path) -> None:
    """An operator debugging the API server's TLS sees why, not an unexpected EOF."""
    now = datetime.now(UTC)
    client_ca, other_ca = issue_ca("api-server-client-ca", now=now), issue_ca("other", now=now)
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    served = launch("{}\n", extra=("--client-ca", str(tmp_path / "client-ca.crt")))
    stranger = issue_client(other_ca, "kube-apiserver")
    (tmp_path / "stranger.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "stranger.key").write_bytes(stranger.key_pem)
    said = {
        "TLS 1.1": _s_client(served, "-tls1_1"),
        "TLS 1.2, AES128-SHA": _s_client(served, "-tls1_2", "-cipher", "AES128-SHA"),
        **{
            f"another CA's client certificate, {v}": _s_client(
                served,
                f"-{v}",
                "-cert",
                str(tmp_path / "stranger.crt"),
                "-key",
                str(tmp_path / "stranger.key"),
            )
            for v in ("tls1_2", "tls1_3")
        },
    }
    expected = {
        "TLS 1.1": "alert protocol version",
        "TLS 1.2, AES128-SHA": "alert handshake failure",
        "another CA's client certificate, tls1_2": "alert unknown ca",
        "another CA's client certificate, tls1_3": "alert unknown ca",
    }
    for what, alert in expected.items():
        assert alert in said[what] and "unexpected eof" not in said[what], (what, said[what])
    # Python's client (the same OpenSSL) names the alert as well.
    for version, reason in (
        (ssl.TLSVersion.TLSv1_1, "TLSV1_ALERT_PROTOCOL_VERSION"),
        (ssl.TLSVersion.TLSv1, "TLSV1_ALERT_PROTOCOL_VERSION"),
    ):
        with pytest.raises(ssl.SSLError) as caught:
            _strict_handshake(served, _offering(served, version=version))
        assert caught.value.reason == reason
    with pytest.raises(ssl.SSLError) as caught:
        _strict_handshake(
            served, _offering(served, version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA")
        )
    assert caught.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    # The server goes on serving.
    assert _handshake(served, served.context) is not None


def _strict_handshake(served: Served, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


def _with_cert(served: Served, pair: KeyPair | None, tmp: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(served.tls_dir / "ca.crt"))
    if pair is not None:
        cert, key = tmp / "client.crt", tmp / "client.key"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        context.load_cert_chain(cert, key)
    return context


def _call(served: Served, context: ssl.SSLContext, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=5)
    try:
        body = orjson.dumps(review(deployment(), uid="mtls")) if method == "POST" else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_client_ca_serves_the_api_server_and_refuses_everyone_else(
    launch: Launch, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    client_ca, other_ca = issue_ca("api-server-client-ca", now=now), issue_ca("other", now=now)
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    served = launch("{}\n", extra=("--client-ca", str(tmp_path / "client-ca.crt")))
    api_server = issue_client(client_ca, "kube-apiserver")
    refused = {
        "signed by another CA": issue_client(other_ca, "kube-apiserver"),
        "serverAuth only": issue_client(
            client_ca, "kube-apiserver", usage=ExtendedKeyUsageOID.SERVER_AUTH
        ),
        "expired": issue_client(
            client_ca, "kube-apiserver", now=now - timedelta(days=2), lifetime=timedelta(days=1)
        ),
    }
    # The API server, with its client certificate, is served.
    status, body = _call(served, _with_cert(served, api_server, tmp_path), "POST", "/mutate")
    assert status == 200 and orjson.loads(body)["response"]["uid"] == "mtls"
    # No certificate: kubelet's probes still work, reviews are refused.
    anonymous = _with_cert(served, None, tmp_path)
    assert _call(served, anonymous, "GET", "/healthz") == (200, b"ok\n")
    assert _call(served, anonymous, "GET", "/readyz") == (200, b"ready\n")
    assert _call(served, anonymous, "POST", "/mutate") == (
        403,
        b"a client certificate signed by the --client-ca is required\n",
    )
    # A certificate that does not verify ends the handshake, with the alert that says why.
    alerts = {}
    for what, pair in refused.items():
        with pytest.raises(ssl.SSLError) as caught:
            _call(served, _with_cert(served, pair, tmp_path), "GET", "/healthz")
        alerts[what] = caught.value.reason
    assert alerts == {
        "signed by another CA": "TLSV1_ALERT_UNKNOWN_CA",
        "serverAuth only": "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "expired": "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    }
    # OpenSSL accepts a certificate without any extended key usage for every purpose;
    # /mutate requires clientAuth all the same.
    no_usage = _with_cert(served, issue_client(client_ca, "kube-apiserver", usage=None), tmp_path)
    assert _call(served, no_usage, "GET", "/healthz") == (200, b"ok\n")
    assert _call(served, no_usage, "POST", "/mutate") == (
        403,
        b"the client certificate must carry the clientAuth extended key usage\n",
    )
    report(
        "--client-ca",
        6 + len(refused),
        6,
        0,
        "API server's cert: /mutate 200; no cert: probes 200, /mutate 403; no EKU: /mutate "
        f"403; refused at the handshake with an alert as they must be: {', '.join(refused)}",
    )


class Trap:
    """A loopback listener that must never see a connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    trap = Trap()
    yield trap
    trap.close()


def _outbound_ports(pid: int, listening: int) -> set[int]:
    """Remote ports of the process's established TCP connections it did not accept."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and int(local.rsplit(":", 1)[1], 16) != listening:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def test_a_deployment_cannot_point_the_webhook_anywhere(
    orders: Database, launch: Launch, trap: Trap, tmp_path: Path
) -> None:
    served = launch(gate_config(), env={"ORDERS_DATABASE_URL": orders.url})
    there = f"127.0.0.1:{trap.port}"
    sqlite_file = tmp_path / "trap.db"
    gate = {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "1"}
    hostile: list[tuple[str, dict[str, Any], bool]] = [
        (mode, labelled(deployment(), mode, annotations), allowed)
        for mode, annotations, allowed in [
            (
                "gate",
                {**gate, "schemagate.dev/database": f"postgresql://postgres:x@{there}/x"},
                False,
            ),
            ("gate", {**gate, "schemagate.dev/database": f"mysql://gate:x@{there}/x"}, False),
            ("gate", {**gate, "schemagate.dev/database": there}, False),
            ("gate", {**gate, "schemagate.dev/database": f"sqlite://{sqlite_file}"}, False),
            ("gate", {**gate, "schemagate.dev/database": "../orders"}, False),
            ("gate", {**gate, "schemagate.dev/url": f"postgresql://{there}/x"}, False),
            ("gate", {**gate, "schemagate.dev/dsn": f"host=127.0.0.1 port={trap.port}"}, False),
            ("gate", {**gate, "schemagate.dev/host": there}, False),
            ("gate", {**gate, "schemagate.dev/schema-version": f"http://{there}/"}, False),
            # Valid gates whose other annotations and env name the trap: only `orders` is read.
            ("gate", {**gate, "db.example.com/url": f"postgresql://{there}/x"}, True),
            (
                "inject",
                {"schemagate.dev/tool": "flyway", "schemagate.dev/image": f"{there}/evil:1"},
                True,
            ),
            (
                "inject",
                {
                    "schemagate.dev/tool": "command",
                    "schemagate.dev/command": f'["curl", "http://{there}/"]',
                },
                True,
            ),
        ]
    ]
    env_trap = labelled(deployment(), "gate", gate)
    env_trap["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "DATABASE_URL", "value": f"postgresql://postgres:x@{there}/x"}
    )
    hostile.append(("gate", env_trap, True))
    label_trap = deployment()
    label_trap["metadata"]["labels"]["schemagate.dev/migrate"] = there
    hostile.append(("label", label_trap, False))
    answers = []
    for index, (_, obj, expected) in enumerate(hostile):
        answer = served.admit(review(obj, uid=f"trap-{index}"))["response"]
        TRANSCRIPT.add(orjson.dumps(answer))
        answers.append(answer)
        assert (answer["uid"], answer["allowed"]) == (f"trap-{index}", expected), answer
    outbound = _outbound_ports(served.proc.pid, served.port)
    report(
        "Deployments naming hosts, URLs, DSNs, files",
        len(hostile),
        len(answers),
        0,
        f"trap connections {trap.accepted}; webhook's outbound ports {sorted(outbound)} "
        f"(PostgreSQL {orders.server.port})",
    )
    assert trap.accepted == 0
    assert not sqlite_file.exists()
    # It did reach the one database its configuration names, and nothing else.
    assert served.metric("schemagate_lookups_total", database="orders", result="recorded") >= 1
    assert outbound <= {orders.server.port}


def test_database_passwords_never_appear_in_logs_metrics_or_answers(
    orders: Database, launch: Launch, tmp_path: Path
) -> None:
    server = orders.server
    url_file = tmp_path / "billing.url"
    url_file.write_text(server.url(orders.name) + "\n")
    # Bound but never listening: connections are refused, and no other process (a webhook
    # started later, picking a free port) can take the number meanwhile.
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    dead = hold.getsockname()[1]
    config = gate_config(
        extra=(
            "  billing: {url_file: " + str(url_file) + ", tool: flyway, namespaces: ['*']}\n"
            f"  nodb: {{url: '{server.url('no_such_db')}', tool: flyway, namespaces: ['*']}}\n"
            f"  stranger: {{url: 'postgresql://stranger:{quote(PASSWORD, safe='')}@127.0.0.1:"
            f"{server.port}/x', tool: flyway, namespaces: ['*']}}\n"
            f"  down: {{url: '{server.url('x').replace(str(server.port), str(dead))}', "
            "tool: flyway, namespaces: ['*']}\n"
        )
    )
    served = launch(config, env={"ORDERS_DATABASE_URL": orders.url}, extra=("--log-level", "debug"))
    texts = []
    for database in ("orders", "billing", "nodb", "stranger", "down"):
        for version in ("1", "99"):
            doc = review(
                labelled(
                    deployment(),
                    "gate",
                    {"schemagate.dev/database": database, "schemagate.dev/schema-version": version},
                )
            )
            status, raw = served.request("POST", "/mutate", orjson.dumps(doc))
            assert status == 200
            texts.append(raw.decode())
    texts.append(served.request("GET", "/metrics")[1].decode())
    texts.append(served.request("POST", "/mutate", b"{not json")[1].decode())
    assert served.stop() == 0
    hold.close()
    texts.append(served.log.read_text())
    for text in texts:
        TRANSCRIPT.add(text)
    # The failures were real, and the denials said which kind; the drivers' own words
    # (which name users, databases and hosts) reached the log only.
    answered, logged = "\n".join(texts[:-1]), texts[-1]
    for database, kind in (
        ("nodb", "not found"),
        ("stranger", "authentication failed"),
        ("down", "connection refused"),
    ):
        assert wording.could_not_read(database, kind) in answered
    for detail in (
        'database \\"no_such_db\\" does not exist',
        'user \\"stranger\\"',
        "[Errno 111]",
    ):
        assert detail in logged and detail not in answered, detail
    # A bad URL in the configuration: the one-line error names the key, not the URL.
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "databases:\n  orders: {url: 'postgresql://postgres:"
        + quote(PASSWORD, safe="")
        + "@127.0.0.1:99999/x', tool: flyway, namespaces: ['*']}\n"
    )
    tls = served.tls_dir
    done = subprocess.run(
        [str(SCHEMAGATE), "serve", "--config", str(broken), "--tls-cert", str(tls / "tls.crt"),
         "--tls-key", str(tls / "tls.key"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "schemagate: config error: databases.orders.url: not a valid URL (check the host and port)"
    )
    TRANSCRIPT.add(done.stdout + done.stderr)
    leaks = [secret for secret in SECRETS for text in texts if secret in text]
    report(
        "database passwords in output (debug logging)",
        len(texts),
        len(texts),
        len(leaks),
        f"{sum(len(t) for t in texts)} characters of answers, metrics and log searched",
    )
    assert leaks == []
