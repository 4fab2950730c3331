"""Process lifecycle while a steady mix of admissions keeps coming.

tests/component/test_lifecycle.py covers SIGTERM and certificate reload on a quiet
server; here the same happens under load: SIGTERM with reviews in flight, a rolling
restart of two webhook processes behind one address (zero failed admissions), and the
certificate files replaced several ways (zero failed requests).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.files import write_files
from certs.issue import KeyPair, issue_ca, issue_serving
from tests.reliability.harness import (
    TRANSCRIPT,
    Database,
    Launch,
    Load,
    Outcome,
    Proxy,
    admission,
    describe,
    gate_config,
    post,
    report,
    well_formed,
)
from tests.support.pki import served_certificate, trust

pytestmark = pytest.mark.faults


def test_sigterm_mid_load_finishes_in_flight_refuses_new_and_exits_0(
    orders: Database, launch: Launch
) -> None:
    served = launch(gate_config(timeout=6, ttl=0), env={"ORDERS_DATABASE_URL": orders.url})
    lock = orders.server.connect(orders.name)
    held: list[Outcome] = []
    # A held lock keeps these gate reviews waiting on their lookup: in flight for sure.
    lock.autocommit = False
    lock.execute("LOCK TABLE flyway_schema_history IN ACCESS EXCLUSIVE MODE")
    senders = []
    for index in range(4):
        outcome = Outcome("gate", f"held-{index}", time.monotonic())
        held.append(outcome)
        body = admission("gate", outcome.uid)
        senders.append(
            threading.Thread(target=post, args=(served.port, served.context, body, outcome))
        )
        senders[-1].start()
    deadline = time.monotonic() + 5
    while served.metric("schemagate_admission_in_flight") < len(held):
        assert time.monotonic() < deadline, "the held reviews never reached the handler"
        time.sleep(0.05)
    with Load(
        served.port, served.context, kinds=("inject", "unlabelled"), workers=3, name="term"
    ) as load:
        time.sleep(1)
        signalled = time.monotonic()
        served.proc.terminate()
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=2)
        assert all(o.finished == 0.0 for o in held), "in-flight reviews were answered early"
        lock.close()  # the lookups go through, the held reviews are answered
        for sender in senders:
            sender.join(15)
        assert served.proc.wait(20) == 0
        time.sleep(0.3)
    before = [o for o in load.outcomes if o.started < signalled]
    after = [o for o in load.outcomes if o.started >= signalled]
    # A review fully sent before the signal is answered; connections opened after it are
    # refused. In between, a connection still in its TLS handshake when the listener
    # closes is lost: not a review in flight (aiohttp also drops request bytes arriving
    # once shutdown began), and the reason a Service must drop the endpoint before the
    # pod gets SIGTERM (the rolling restart below loses nothing).
    lost = [o for o in before if not well_formed(o)]
    cut = [o for o in lost if o.sent is not None and o.sent < signalled - 0.05]
    refused = [o for o in after if o.refused]
    report(
        "SIGTERM mid-load",
        len(load.outcomes) + len(held),
        sum(well_formed(o) for o in load.outcomes + held),
        len(cut) + sum(not well_formed(o) for o in held),
        f"{len(held)} held in flight at the signal, all answered; {len(refused)} refused "
        f"after it; {len(lost) - len(cut)} caught mid-handshake by it",
    )
    assert [(o.uid, o.allowed) for o in held] == [(o.uid, True) for o in held]
    assert all(well_formed(o) for o in held)
    assert cut == []
    assert all(o.started > signalled - 0.1 for o in lost), [(o.started - signalled) for o in lost]
    assert all(o.refused for o in after if o.started > signalled + 0.3)
    assert len(refused) >= 1
    log = served.log.read_text()
    assert "shutting down" in log and log.rstrip().endswith('"msg":"stopped"}')


def test_rolling_restart_behind_one_address_fails_no_admission(
    orders: Database, launch: Launch, tls_dir: Path
) -> None:
    """Two webhook processes behind a proxy (the Service); each is replaced in turn the
    way a Deployment with maxSurge 1 / maxUnavailable 0 does it: start the new one, add it
    to the endpoints, take the old one out, give routing a moment (what a preStop sleep
    buys in a cluster), then SIGTERM it."""
    config = gate_config(ttl=0.5)
    env = {"ORDERS_DATABASE_URL": orders.url}
    proxy = Proxy()
    backends = [launch(config, env=env) for _ in range(2)]
    for backend in backends:
        proxy.add(backend.port)
    exits = []
    try:
        with Load(proxy.port, backends[0].context, workers=3, name="roll", limit=40) as load:
            time.sleep(1)
            for old in list(backends):
                new = launch(config, env=env)
                proxy.add(new.port)
                time.sleep(0.5)
                proxy.remove(old.port)
                time.sleep(0.5)
                exits.append(old.stop())
                backends.append(new)
                time.sleep(1)
            time.sleep(1)
    finally:
        proxy.close()
    failed = load.failures(well_formed)
    report(
        "rolling restart, 2 -> 2 processes",
        len(load.outcomes),
        len(load.outcomes) - len(failed),
        len(failed),
        f"connections per backend {sorted(proxy.routed.values())}; {describe(load.outcomes)}",
    )
    assert failed == [], [(o.kind, o.error) for o in failed[:5]]
    assert exits == [0, 0]
    assert proxy.upstream_failures == 0
    assert len(proxy.routed) == 4 and min(proxy.routed.values()) >= 5
    assert all(o.allowed for o in load.outcomes)


def _kubelet_layout(root: Path, version: str, ca: KeyPair, serving: KeyPair) -> None:
    """Write the pair the way kubelet updates a Secret volume: a new timestamped
    directory, then one atomic rename of the `..data` symlink (both files change at once)."""
    folder = root / f"..{version}"
    write_files(folder, ca.cert_pem, serving)
    link = root / "..data_tmp"
    link.symlink_to(folder.name)
    os.replace(link, root / "..data")
    for name in ("ca.crt", "tls.crt", "tls.key"):
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


def _torn_write(path: Path, content: bytes, pause: float) -> None:
    """Rewrite a file in place in two halves, with a reload poll in between."""
    with path.open("wb") as f:
        f.write(content[: len(content) // 2])
        f.flush()
        time.sleep(pause)
        f.write(content[len(content) // 2 :])


def test_certificate_files_replaced_mid_load_fail_no_request(
    launch: Launch, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    first_ca, second_ca = issue_ca("schemagate-ca-1", now=now), issue_ca("schemagate-ca-2", now=now)
    tls = tmp_path / "tls"
    tls.mkdir()
    _kubelet_layout(
        tls, "v1", first_ca, issue_serving(first_ca, ["localhost"], ["127.0.0.1"], now=now)
    )
    served = launch("{}\n", tls=tls)
    # The caBundle during a rotation trusts the old and the new CA.
    bundle = trust(first_ca.cert_pem, second_ca.cert_pem)
    served.context = bundle

    def wait_for(expected: bytes) -> float:
        started = time.monotonic()
        while served_certificate(served.port, bundle) != expected:
            assert time.monotonic() < started + 5, "the new certificate was not served in 5 s"
            time.sleep(0.1)
        return time.monotonic() - started

    def der(pair: KeyPair) -> bytes:
        return x509.load_pem_x509_certificate(pair.cert_pem).public_bytes(Encoding.DER)

    took = []
    with Load(served.port, bundle, kinds=("inject", "unlabelled"), workers=3, name="certs") as load:
        time.sleep(1)
        # 1. Renewal under the same CA, swapped atomically the way kubelet does.
        renewed = issue_serving(first_ca, ["localhost"], ["127.0.0.1"], now=now)
        _kubelet_layout(tls, "v2", first_ca, renewed)
        took.append(wait_for(der(renewed)))
        # 2. A new CA (rotation), swapped atomically.
        rotated = issue_serving(second_ca, ["localhost"], ["127.0.0.1"], now=now)
        _kubelet_layout(tls, "v3", second_ca, rotated)
        took.append(wait_for(der(rotated)))
        # 3. Rewritten in place, file by file, each file torn across a reload poll: the
        #    server must keep serving the old pair until the new one is whole and matches.
        torn = issue_serving(second_ca, ["localhost"], ["127.0.0.1"], now=now)
        _torn_write(tls / "..v3" / "tls.crt", torn.cert_pem, 1.5)
        time.sleep(1.5)
        _torn_write(tls / "..v3" / "tls.key", torn.key_pem, 1.5)
        took.append(wait_for(der(torn)))
        time.sleep(1)
    failed = load.failures(well_formed)
    reloads = {
        r: served.metric("schemagate_tls_cert_reloads_total", result=r) for r in ("ok", "failed")
    }
    TRANSCRIPT.add(served.request("GET", "/metrics")[1])
    report(
        "certificate files replaced x3",
        len(load.outcomes),
        len(load.outcomes) - len(failed),
        len(failed),
        f"reloads ok {reloads['ok']:g}, refused half-written {reloads['failed']:g}; "
        f"served within {max(took):.1f} s",
    )
    assert failed == [], [(o.kind, o.error) for o in failed[:5]]
    assert reloads["ok"] == 3
    assert reloads["failed"] >= 2  # the torn certificate, then the mismatched key
