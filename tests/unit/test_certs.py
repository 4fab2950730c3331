"""The certs package's pure core: issuance, inspection, bundles and the rotation machine."""

from __future__ import annotations

import ast
import ipaddress
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import VerificationError

from certs.bundle import contains, join_pem, split_pem
from certs.files import issue_to_dir, write_files
from certs.issue import (
    CLOCK_SKEW,
    KeyPair,
    issue_ca,
    issue_serving,
    key_matches,
    needs_renewal,
    not_after,
    renew_after,
    service_dns_names,
    verify_chain,
)
from certs.rotation import Phase, Plan, plan

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAMES = service_dns_names("schemagate", "schemagate-system")
# Lifetime + backdate = 3 h, so a third of it is exactly one hour.
LIFETIME = timedelta(hours=3) - CLOCK_SKEW


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return issue_ca("test-ca", now=NOW)


@pytest.fixture(scope="module")
def serving(ca: KeyPair) -> KeyPair:
    return issue_serving(ca, NAMES, ["127.0.0.1"], now=NOW)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_service_dns_names() -> None:
    assert service_dns_names("svc", "ns") == [
        "svc",
        "svc.ns",
        "svc.ns.svc",
        "svc.ns.svc.cluster.local",
    ]


# --- the chain verifies, as a TLS client sees it ------------------------------------


@pytest.mark.parametrize("name", [*NAMES, "127.0.0.1"])
def test_chain_verifies_with_cryptography(ca: KeyPair, serving: KeyPair, name: str) -> None:
    verify_chain(serving.cert_pem, ca.cert_pem, name, NOW)


@pytest.mark.parametrize(
    ("name", "at"),
    [
        ("other.schemagate-system.svc", NOW),  # not in the SAN
        ("127.0.0.2", NOW),
        ("schemagate", NOW + timedelta(days=366)),  # expired
        ("schemagate", NOW - CLOCK_SKEW - timedelta(seconds=1)),  # not valid yet
    ],
)
def test_chain_rejected_with_cryptography(
    ca: KeyPair, serving: KeyPair, name: str, at: datetime
) -> None:
    with pytest.raises(VerificationError):
        verify_chain(serving.cert_pem, ca.cert_pem, name, at)


def test_chain_from_another_ca_rejected(serving: KeyPair) -> None:
    with pytest.raises(VerificationError):
        verify_chain(serving.cert_pem, issue_ca("other", now=NOW).cert_pem, "schemagate", NOW)


def openssl_verify(tmp_path: Path, ca_pem: bytes, cert_pem: bytes, *check: str) -> bool:
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    at = str(int(NOW.timestamp()))  # the certificates are issued at NOW, not today
    args = ["-CAfile", "ca.crt", "-purpose", "sslserver", "-x509_strict", "-attime", at]
    args += [*check, "tls.crt"]
    done = subprocess.run(
        ["openssl", "verify", *args], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.strip() == "tls.crt: OK"


@pytest.mark.parametrize(
    "check",
    [
        ("-verify_hostname", "schemagate.schemagate-system.svc"),
        ("-verify_hostname", "schemagate.schemagate-system.svc.cluster.local"),
        ("-verify_ip", "127.0.0.1"),
    ],
)
def test_chain_verifies_with_openssl(
    tmp_path: Path, ca: KeyPair, serving: KeyPair, check: tuple[str, ...]
) -> None:
    assert openssl_verify(tmp_path, ca.cert_pem, serving.cert_pem, *check)


@pytest.mark.parametrize(
    "check", [("-verify_hostname", "evil.example.com"), ("-verify_ip", "10.0.0.1")]
)
def test_wrong_name_rejected_by_openssl(
    tmp_path: Path, ca: KeyPair, serving: KeyPair, check: tuple[str, ...]
) -> None:
    assert not openssl_verify(tmp_path, ca.cert_pem, serving.cert_pem, *check)


def test_other_ca_rejected_by_openssl(tmp_path: Path, serving: KeyPair) -> None:
    other = issue_ca("other", now=NOW)
    assert not openssl_verify(tmp_path, other.cert_pem, serving.cert_pem)


# --- what the certificates say ---------------------------------------------------------


def test_ca_extensions_and_validity(ca: KeyPair) -> None:
    cert = load(ca.cert_pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=5 * 365)
    assert cert.subject == cert.issuer
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_serving_extensions_and_validity(ca: KeyPair, serving: KeyPair) -> None:
    cert = load(serving.cert_pem)
    ext = cert.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_encipherment or usage.value.key_cert_sign)
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ca_ski = load(ca.cert_pem).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.value.digest
    assert cert.issuer == load(ca.cert_pem).subject
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    assert not_after(serving.cert_pem) == NOW + timedelta(days=365)
    assert key_matches(serving)


def test_serving_never_outlives_its_ca() -> None:
    short_ca = issue_ca("short", now=NOW, lifetime=timedelta(days=30))
    cert = issue_serving(short_ca, ["a"], now=NOW)
    assert not_after(cert.cert_pem) == NOW + timedelta(days=30)


def test_serving_needs_a_name(ca: KeyPair) -> None:
    with pytest.raises(ValueError, match="at least one"):
        issue_serving(ca, [], [], now=NOW)


def test_key_matches(ca: KeyPair, serving: KeyPair) -> None:
    assert not key_matches(KeyPair(serving.cert_pem, ca.key_pem))
    assert not key_matches(KeyPair(serving.cert_pem, b"garbage"))
    assert not key_matches(KeyPair(b"", serving.key_pem))


# --- renewal at two thirds of the lifetime -------------------------------------------------


RENEWAL_CA = issue_ca("renewal-ca", now=NOW)
OTHER_CA = issue_ca("other-ca", now=NOW)
SHORT = issue_serving(RENEWAL_CA, NAMES, now=NOW, lifetime=LIFETIME).cert_pem
GARBAGE = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
RENEW_AT = NOW + LIFETIME - timedelta(hours=1)
SECOND = timedelta(seconds=1)
OK = RENEWAL_CA.cert_pem


@pytest.mark.parametrize(
    ("at", "cert", "ca_pem", "names", "ips", "expected"),
    [
        pytest.param(NOW, SHORT, OK, NAMES, [], None, id="fresh"),
        pytest.param(RENEW_AT - SECOND, SHORT, OK, NAMES, [], None, id="just before"),
        pytest.param(RENEW_AT, SHORT, OK, NAMES, [], None, id="exactly a third left"),
        pytest.param(RENEW_AT + SECOND, SHORT, OK, NAMES, [], "less than a third", id="past"),
        pytest.param(NOW + LIFETIME, SHORT, OK, NAMES, [], "less than a third", id="expired"),
        pytest.param(NOW, SHORT, OK, NAMES[:3], [], "names differ", id="a name missing"),
        pytest.param(NOW, SHORT, OK, [*NAMES, "x"], [], "names differ", id="a name too many"),
        pytest.param(NOW, SHORT, OK, NAMES, ["127.0.0.1"], "names differ", id="an IP missing"),
        pytest.param(NOW, SHORT, OTHER_CA.cert_pem, NAMES, [], "not signed", id="wrong CA"),
        pytest.param(NOW, GARBAGE, OK, NAMES, [], "unparsable", id="garbage certificate"),
        pytest.param(NOW, SHORT, b"not a pem", NAMES, [], "unparsable", id="garbage CA"),
    ],
)
def test_needs_renewal(
    at: datetime,
    cert: bytes,
    ca_pem: bytes,
    names: list[str],
    ips: list[str],
    expected: str | None,
) -> None:
    reason = needs_renewal(cert, now=at, dns_names=names, ca_pem=ca_pem, ips=ips)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_renew_after_is_two_thirds() -> None:
    assert renew_after(SHORT) == RENEW_AT


# --- CA bundles -------------------------------------------------------------------------


def test_split_skips_junk_and_normalises(ca: KeyPair, serving: KeyPair) -> None:
    messy = b"# comment\n" + ca.cert_pem.replace(b"\n", b"\r\n") + b"junk\n" + serving.cert_pem
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert split_pem(messy + broken) == [ca.cert_pem, serving.cert_pem]
    assert split_pem(b"") == []


def test_join_dedupes_keeps_order_drops_expired(ca: KeyPair) -> None:
    other = issue_ca("other", now=NOW)
    expired = issue_ca("old", now=NOW - timedelta(days=10), lifetime=timedelta(days=1))
    joined = join_pem([other.cert_pem + ca.cert_pem, expired.cert_pem, ca.cert_pem], now=NOW)
    assert joined == other.cert_pem + ca.cert_pem
    assert join_pem([b"", b"garbage"], now=NOW) == b""


def test_contains(ca: KeyPair) -> None:
    other = issue_ca("other", now=NOW)
    assert contains(other.cert_pem + ca.cert_pem, ca.cert_pem)
    assert not contains(other.cert_pem, ca.cert_pem)
    assert not contains(ca.cert_pem, b"garbage")


# --- the rotation state machine, round by round ----------------------------------------

SETTLE = timedelta(minutes=15)


def round_(
    previous: Plan | None,
    bundles: list[bytes],
    at: datetime,
    *,
    rotate_ca: bool = False,
    names: list[str] = NAMES,
) -> Plan:
    """One bootstrap round that reads what the previous round wrote."""
    secret = None if previous is None else previous.certs.data()
    return plan(secret, bundles, now=at, dns_names=names, rotate_ca=rotate_ca, settle=SETTLE)


def signer(p: Plan) -> x509.Name:
    return load(p.certs.serving.cert_pem).issuer


def test_first_round_issues_everything() -> None:
    p = plan(None, [b"", b"stale"], now=NOW, dns_names=NAMES)
    assert p.certs.phase is Phase.STEADY
    assert p.secret_data is not None
    assert set(p.secret_data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert p.bundle == p.certs.ca.cert_pem
    assert p.patch_webhooks == (0, 1)
    verify_chain(p.certs.serving.cert_pem, p.bundle, NAMES[2], NOW)
    assert p.reasons[0] == "issued a CA: no Secret"


def test_valid_secret_is_kept_untouched() -> None:
    first = round_(None, [], NOW)
    again = round_(first, [first.bundle], NOW + timedelta(days=30))
    assert again.secret_data is None
    assert again.patch_webhooks == ()
    assert again.reasons == ()
    assert again.certs == first.certs


def test_serving_renewed_by_the_same_ca_at_two_thirds() -> None:
    first = round_(None, [], NOW)
    at = renew_after(first.certs.serving.cert_pem) + SECOND
    later = round_(first, [first.bundle], at)
    assert later.secret_data is not None
    assert later.certs.ca == first.certs.ca
    assert later.certs.serving != first.certs.serving
    assert later.patch_webhooks == ()
    assert "less than a third" in later.reasons[0]


def test_serving_reissued_when_names_change() -> None:
    first = round_(None, [], NOW)
    moved = round_(first, [first.bundle], NOW, names=service_dns_names("sg", "other"))
    assert "names differ" in moved.reasons[0]
    verify_chain(moved.certs.serving.cert_pem, moved.bundle, "sg.other.svc", NOW)


def test_damaged_secret_starts_over_and_keeps_foreign_keys() -> None:
    first = round_(None, [], NOW)
    damaged = first.certs.data() | {"ca.key": b"garbage", "note": b"kept"}
    p = plan(damaged, [first.bundle], now=NOW, dns_names=NAMES)
    assert p.reasons[0] == "issued a CA: no usable CA in it"
    assert p.certs.ca != first.certs.ca
    assert p.secret_data is not None and p.secret_data["note"] == b"kept"
    assert p.patch_webhooks == (0,)


def test_garbage_serving_key_is_reissued() -> None:
    first = round_(None, [], NOW)
    p = plan(first.certs.data() | {"tls.key": b"x"}, [first.bundle], now=NOW, dns_names=NAMES)
    assert p.reasons == ("issued a serving certificate: no usable serving certificate",)
    assert p.certs.ca == first.certs.ca


def test_ca_rotation_step_by_step() -> None:
    t = NOW
    steady = round_(None, [], t)
    old_ca = steady.certs.ca.cert_pem
    live = [steady.bundle]  # what the webhook configuration holds

    # STEADY -> PENDING on demand: trust first, the serving cert is untouched.
    t += timedelta(days=1)
    pending = round_(steady, live, t, rotate_ca=True)
    assert pending.certs.phase is Phase.PENDING
    assert pending.certs.next_ca is not None
    new_ca = pending.certs.next_ca.cert_pem
    assert pending.certs.serving == steady.certs.serving
    assert split_pem(pending.bundle) == [old_ca, new_ca]
    assert pending.patch_webhooks == (0,)
    assert pending.secret_data is not None and "ca-next.key" in pending.secret_data

    # The bundle is not in place yet (the patch failed): no switch, patch again.
    t += SETTLE
    waiting = round_(pending, live, t)
    assert waiting.certs == pending.certs
    assert waiting.patch_webhooks == (0,)
    assert waiting.secret_data is None

    # In place, but not for `settle` yet (a rotation asked again changes nothing).
    live = [pending.bundle]
    early = round_(pending, live, pending_issued(pending) + SETTLE - SECOND, rotate_ca=True)
    assert early.certs == pending.certs
    assert early.patch_webhooks == () and early.reasons == ()

    # PENDING -> RETIRING: the new CA signs; both stay trusted; caBundle unchanged.
    t = pending_issued(pending) + SETTLE
    retiring = round_(pending, live, t)
    assert retiring.certs.phase is Phase.RETIRING
    assert retiring.certs.ca.cert_pem == new_ca
    assert retiring.certs.previous_ca == old_ca
    assert signer(retiring) == load(new_ca).subject
    assert retiring.bundle == pending.bundle
    assert retiring.patch_webhooks == ()
    assert retiring.secret_data is not None and "ca-next.crt" not in retiring.secret_data
    verify_chain(retiring.certs.serving.cert_pem, live[0], NAMES[3], t)

    # Not settled yet: the previous CA stays.
    soon = round_(retiring, live, t + SETTLE - SECOND)
    assert soon.certs == retiring.certs and soon.secret_data is None

    # RETIRING -> STEADY: the old CA leaves caBundle.
    done = round_(retiring, live, t + SETTLE)
    assert done.certs.phase is Phase.STEADY
    assert done.bundle == new_ca
    assert done.patch_webhooks == (0,)
    assert done.secret_data is not None and "ca-previous.crt" not in done.secret_data
    assert done.certs.serving == retiring.certs.serving


def pending_issued(p: Plan) -> datetime:
    assert p.certs.next_ca is not None
    return load(p.certs.next_ca.cert_pem).not_valid_before_utc + CLOCK_SKEW


def test_rotation_never_serves_an_untrusted_cert() -> None:
    """Whatever any replica still serves verifies against caBundle before and after each
    round's patch: the property that keeps admissions from failing during a rotation."""
    t = NOW
    p = round_(None, [], t)
    live = [p.bundle]
    served = [p.certs.serving.cert_pem]
    phases = [p.certs.phase]
    for _ in range(8):
        t += SETTLE
        p = round_(p, live, t, rotate_ca=phases[-1] is Phase.STEADY and len(phases) == 1)
        for bundle in (live[0], p.bundle):
            for cert in (served[-1], p.certs.serving.cert_pem):
                verify_chain(cert, bundle, NAMES[1], t)
        live = [p.bundle]
        served.append(p.certs.serving.cert_pem)
        phases.append(p.certs.phase)
    assert phases[:4] == [Phase.STEADY, Phase.PENDING, Phase.RETIRING, Phase.STEADY]
    assert phases[4:] == [Phase.STEADY] * 5


def test_ca_rotation_starts_by_itself_at_two_thirds() -> None:
    first = round_(None, [], NOW)
    ca_renew = renew_after(first.certs.ca.cert_pem)
    assert round_(first, [first.bundle], ca_renew).certs.phase is Phase.STEADY
    p = round_(first, [first.bundle], ca_renew + SECOND)
    assert p.certs.phase is Phase.PENDING
    assert "past two thirds" in p.reasons[0]
    # The serving cert renewed meanwhile is capped at the old CA's expiry.
    assert not_after(p.certs.serving.cert_pem) <= not_after(first.certs.ca.cert_pem)


def test_unusable_rotation_keys_are_dropped() -> None:
    first = round_(None, [], NOW)
    expired = issue_ca("old", now=NOW - timedelta(days=10), lifetime=timedelta(days=1))
    data = first.certs.data() | {"ca-next.crt": b"junk", "ca-previous.crt": expired.cert_pem}
    p = plan(data, [first.bundle], now=NOW, dns_names=NAMES)
    assert p.certs.phase is Phase.STEADY
    assert p.reasons == ("dropped an unusable or expired pending/previous CA",)
    assert p.secret_data == first.certs.data()


# --- files ------------------------------------------------------------------------------


def test_issue_to_dir_writes_three_files(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    issue_to_dir(out, ["localhost"], ["127.0.0.1"])
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    pair = KeyPair((out / "tls.crt").read_bytes(), (out / "tls.key").read_bytes())
    assert key_matches(pair)
    now = datetime.now(UTC)
    verify_chain(pair.cert_pem, (out / "ca.crt").read_bytes(), "127.0.0.1", now)
    verify_chain(pair.cert_pem, (out / "ca.crt").read_bytes(), "localhost", now)


def test_write_files_replaces_changed_files_only(
    tmp_path: Path, ca: KeyPair, serving: KeyPair
) -> None:
    write_files(tmp_path, ca.cert_pem, serving)
    before = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    other = issue_serving(ca, ["x"], now=NOW)
    write_files(tmp_path, ca.cert_pem, other)
    after = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    assert after["ca.crt"] == before["ca.crt"]  # unchanged, untouched
    assert after["tls.crt"] != before["tls.crt"]  # replaced by rename, not rewritten
    assert (tmp_path / "tls.key").read_bytes() == other.key_pem
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert set(after) == {"ca.crt", "tls.crt", "tls.key"}  # no temporary files left


# --- layering ---------------------------------------------------------------------------

PURE = ("issue", "bundle", "rotation", "times")


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_only_stdlib_and_cryptography(module: str) -> None:
    source = Path(__file__).parents[2] / "certs" / f"{module}.py"
    tree = ast.parse(source.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("certs."):
                assert node.module.removeprefix("certs.") in PURE
    allowed = {"cryptography", "certs", "__future__"}
    assert roots - allowed <= set(sys.stdlib_module_names)
