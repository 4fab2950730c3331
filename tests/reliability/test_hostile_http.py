"""Hostile clients at the HTTP and TLS level: any pod can reach the webhook's port.

Oversized and compressed bodies are refused without being read, reviews that decode to
huge object graphs cannot exhaust memory, slow clients (a stalled or half TLS handshake,
trickled headers, a trickled body) are cut off by the deadlines in `webhook.limits.Limits`,
the number of connections is bounded, and garbage TLS never disturbs anyone else.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from tests.factories import deployment, labelled, review
from tests.reliability.harness import (
    TRANSCRIPT,
    Database,
    Launch,
    Load,
    describe,
    gate_config,
    report,
    well_formed,
)
from tests.server import Served
from webhook.limits import Limits
from webhook.review import API_SERVER_BODY_BYTES, MAX_BODY_BYTES

pytestmark = pytest.mark.faults

LIMITS = Limits()
# How late a deadline may fire on a busy two-core machine.
LATE = 1.5


@pytest.fixture
def served(launch: Launch) -> Served:
    return launch("{}\n")


def _tls(served: Served) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    return served.context.wrap_socket(raw, server_hostname="127.0.0.1")


def _exchange(
    served: Served, head: bytes, body: bytes = b"", *, wait: float = 5
) -> tuple[int, str, float]:
    """Send raw bytes over TLS; (status, first body line, seconds to the answer)."""
    started = time.monotonic()
    with _tls(served) as sock:
        sock.settimeout(wait)
        sock.sendall(head + body)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    took = time.monotonic() - started
    TRANSCRIPT.add(data)
    status_line, _, rest = data.partition(b"\r\n")
    text = rest.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()
    return int(status_line.split()[1]), text.splitlines()[0] if text else "", took


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _head(extra: str = "", length: int | None = None) -> bytes:
    lines = ["POST /mutate HTTP/1.1", "Host: schemagate", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + extra + "\r\n\r\n").encode()


def _chunked(data: bytes, size: int = 65536) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def _gzip_bomb() -> bytes:
    """256 MiB of zeros in about 256 KiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()


BOMB = _gzip_bomb()
OVERSIZED = [
    pytest.param(
        _head(length=100 * 2**30),
        b"",
        413,
        f"body of 107374182400 bytes exceeds the {MAX_BODY_BYTES} byte limit",
        id="content-length-100GiB-no-body",
    ),
    pytest.param(
        _head("\r\nTransfer-Encoding: chunked"),
        _chunked(b"[" * (MAX_BODY_BYTES + 1)),
        413,
        f"body exceeds the {MAX_BODY_BYTES} byte limit",
        id="chunked-over-the-limit",
    ),
    pytest.param(
        _head("\r\nContent-Encoding: gzip", len(BOMB)),
        BOMB,
        415,
        "content encoding must be identity",
        id="gzip-bomb",
    ),
    pytest.param(
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"",
        400,
        "Got more than 8190 bytes when reading: b'aaaa",
        id="100KB-header",
    ),
    pytest.param(
        b"POST /mutate HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(1000)) + b"\r\n",
        b"",
        400,
        "Too many headers received",
        id="1000-headers",
    ),
]


@pytest.mark.parametrize(("head", "body", "status", "reason"), OVERSIZED)
def test_oversized_requests_are_refused_without_reading_them(
    served: Served, head: bytes, body: bytes, status: int, reason: str
) -> None:
    got, text, took = _exchange(served, head, body)
    assert (got, text[: len(reason)]) == (status, reason)
    assert took < 2.0
    assert served.request("GET", "/healthz") == (200, b"ok\n")


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_reviews_that_decode_to_huge_object_graphs_cannot_exhaust_memory(
    orders: Database, launch: Launch
) -> None:
    """A 2.9 MiB body of `{},{},...` decodes to ~70 MiB of dicts, kept while its gate
    lookup waits. With the database slow (a held lock, up to the lookup deadline), six at
    once would take the pod past its 256 MiB limit without a bound on the bodies being
    decoded and answered at once (webhook.app.BodyBudget)."""
    served = launch(gate_config(timeout=1.0, ttl=0), env={"ORDERS_DATABASE_URL": orders.url})
    junk = b"{}," * ((API_SERVER_BODY_BYTES - 4096) // 3)
    gated = labelled(
        deployment(),
        "gate",
        {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "1"},
    )
    doc = review(gated, uid="bomb")
    doc["request"]["object"]["spec"]["junk"] = "@@"
    body = orjson.dumps(doc).replace(b'"@@"', b"[" + junk + b"{}]")
    assert len(body) <= API_SERVER_BODY_BYTES
    before = _peak_rss(served.proc.pid)

    def send(_: int) -> tuple[int, float]:
        status, _text, took = _exchange(served, _head(length=len(body)), body, wait=30)
        return status, took

    lock = orders.server.connect(orders.name)
    lock.autocommit = False
    lock.execute("LOCK TABLE flyway_schema_history IN ACCESS EXCLUSIVE MODE")
    try:
        with (
            Load(
                served.port, served.context, kinds=("inject", "unlabelled"), workers=2, name="mem"
            ) as load,
            ThreadPoolExecutor(6) as pool,
        ):
            answers = list(pool.map(send, range(6)))
    finally:
        lock.close()
    grew = _peak_rss(served.proc.pid) - before
    failed = load.failures(well_formed)
    report(
        "6 concurrent 2.9 MiB object-graph bodies, database slow",
        len(load.outcomes) + len(answers),
        len(load.outcomes) - len(failed) + sum(s == 200 for s, _ in answers),
        len(failed) + sum(s != 200 for s, _ in answers),
        f"peak RSS grew {grew / 2**20:.0f} MiB; bodies answered within "
        f"{max(t for _, t in answers):.1f} s; load alongside: {describe(load.outcomes)}",
    )
    assert [s for s, _ in answers] == [200] * 6
    assert failed == []
    assert max(o.latency for o in load.outcomes) < 1.0
    assert grew < 150 * 2**20


# -- slow clients ----------------------------------------------------------------------


def _client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


HELLO = _client_hello()


def _until_closed(
    sock: socket.socket, trickle: bytes = b"", every: float = 0.25
) -> tuple[float, bytes]:
    """Seconds until the server closes `sock`, trickling `trickle` a byte at a time."""
    started = time.monotonic()
    got = b""
    sock.settimeout(every)
    for index in range(400):
        if index < len(trickle):
            try:
                sock.sendall(trickle[index : index + 1])
            except OSError:
                break
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            break
        if not data:
            break
        got += data
    return time.monotonic() - started, got


def _stalled(served: Served) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        return _until_closed(sock)


def _half_handshake(served: Served) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(HELLO[: len(HELLO) // 2])
        return _until_closed(sock)


def _idle_after_handshake(served: Served) -> tuple[float, bytes]:
    with _tls(served) as sock:
        return _until_closed(sock)


def _trickled_headers(served: Served) -> tuple[float, bytes]:
    with _tls(served) as sock:
        return _until_closed(sock, _head(length=2) + b"{}")


def _trickled_body(served: Served) -> tuple[float, bytes]:
    body = orjson.dumps(review(deployment(), uid="slow"))
    with _tls(served) as sock:
        sock.sendall(_head(length=len(body)))
        return _until_closed(sock, body)


def _second_request_trickled(served: Served) -> tuple[float, bytes]:
    """A keep-alive connection whose first review is fine and whose second trickles."""
    body = orjson.dumps(review(deployment(), uid="first"))
    with _tls(served) as sock:
        sock.sendall(_head(length=len(body)) + body)
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        return _until_closed(sock, _head(length=2) + b"{}")


SLOW: dict[str, tuple[Callable[[Served], tuple[float, bytes]], float]] = {
    "stalled before TLS": (_stalled, LIMITS.handshake_seconds),
    "half a ClientHello": (_half_handshake, LIMITS.handshake_seconds),
    "silent after TLS": (_idle_after_handshake, LIMITS.header_seconds),
    "headers trickled": (_trickled_headers, LIMITS.header_seconds),
    "body trickled": (_trickled_body, LIMITS.body_seconds),
    "second request's headers trickled": (_second_request_trickled, LIMITS.header_seconds),
}


def test_slow_clients_are_cut_off_while_others_are_served(served: Served) -> None:
    with (
        Load(served.port, served.context, workers=2, name="slow") as load,
        ThreadPoolExecutor(len(SLOW) * 3) as pool,
    ):
        futures = {
            (name, copy): pool.submit(run, served)
            for name, (run, _) in SLOW.items()
            for copy in range(3)
        }
        results = {key: future.result(timeout=60) for key, future in futures.items()}
    failed = load.failures(well_formed)
    report(
        "slow clients (6 kinds x3) alongside load",
        len(load.outcomes),
        len(load.outcomes) - len(failed),
        len(failed),
        "cut off after "
        + ", ".join(f"{name} {max(results[name, c][0] for c in range(3)):.1f} s" for name in SLOW),
    )
    assert failed == []
    assert max(o.latency for o in load.outcomes) < 1.0
    for (name, _), (took, said) in results.items():
        limit = SLOW[name][1]
        assert limit - 0.3 <= took <= limit + LATE, (name, took)
        if name == "body trickled":
            assert said.startswith(b"HTTP/1.1 408 "), said
            assert said.endswith(b"body not received within 10 s\n")


def _server_sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def test_connections_are_bounded_and_excess_ones_wait_their_turn(served: Served) -> None:
    limit = LIMITS.max_connections
    baseline = _server_sockets(served.proc.pid)
    hogs = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(limit + 40)]
    try:
        time.sleep(0.5)
        held = _server_sockets(served.proc.pid) - baseline
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(served.request, "GET", "/healthz")
            time.sleep(1)
            # Every slot is taken, so the newcomer waits in the listen backlog.
            assert not waiting.done()
            for hog in hogs[:60]:
                hog.close()
            freed = time.monotonic()
            assert waiting.result(timeout=5) == (200, b"ok\n")
            served_after = time.monotonic() - freed
    finally:
        for hog in hogs:
            hog.close()
    report(
        f"{limit + 40} idle connections against max_connections {limit}",
        1,
        1,
        0,
        f"server held {held} sockets; a waiting client was served {served_after:.2f} s "
        "after slots freed",
    )
    assert limit - 5 <= held <= limit
    assert served_after < 1.0


# -- garbage TLS -----------------------------------------------------------------------


def _garbage(served: Served, payload: bytes, rng: random.Random) -> tuple[str, float]:
    """Send `payload`, then see what the server does: `closed` and how fast."""
    started = time.monotonic()
    wait = LIMITS.handshake_seconds + LATE + 1
    with socket.create_connection(("127.0.0.1", served.port), timeout=wait) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        if rng.random() < 0.3:
            # Hang up abruptly (RST) mid-handshake.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            return "reset by us", time.monotonic() - started
        try:
            while sock.recv(4096):
                pass
        except TimeoutError:
            return "still open", time.monotonic() - started
        except OSError:
            pass
    return "closed", time.monotonic() - started


def _payloads(rng: random.Random) -> Iterator[bytes]:
    while True:
        yield rng.choice(
            [
                rng.randbytes(rng.randint(1, 4096)),
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                b"\x16\x03\x01\x40\x00" + rng.randbytes(64),  # a record claiming 16 KiB
                b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + rng.randbytes(37),  # SSLv2 hello
                HELLO + rng.randbytes(200),  # a hello, then noise
                HELLO[:5] + rng.randbytes(len(HELLO) - 5),  # a header, then noise
                b"\x15\x03\x03\x00\x02\x02\x28",  # an alert, before any hello
            ]
        )


def test_malformed_tls_handshakes_do_not_disturb_other_clients(served: Served) -> None:
    rng = random.Random(9)
    payloads = _payloads(rng)
    jobs = [next(payloads) for _ in range(200)]
    with (
        Load(served.port, served.context, workers=2, name="garbage") as load,
        ThreadPoolExecutor(24) as pool,
    ):
        results = list(pool.map(lambda p: _garbage(served, p, random.Random(len(p))), jobs))
    failed = load.failures(well_formed)
    closed = [took for what, took in results if what == "closed"]
    report(
        "200 malformed TLS handshakes alongside load",
        len(load.outcomes),
        len(load.outcomes) - len(failed),
        len(failed),
        f"{len(closed)} closed by the server, slowest after {max(closed):.1f} s; "
        f"load {describe(load.outcomes)}",
    )
    assert failed == []
    assert max(o.latency for o in load.outcomes) < 1.0
    assert all(what != "still open" for what, _ in results)
    # Garbage is refused at once; only a hello cut short waits out the handshake deadline.
    assert max(closed) <= LIMITS.handshake_seconds + LATE
    assert sorted(closed)[len(closed) // 2] < 0.5
    assert served.request("GET", "/healthz") == (200, b"ok\n")
