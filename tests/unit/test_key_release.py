"""What decides a key release: policies, the key ring, a KMS plug-in, the attestation verifier."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from kaiyuan.core.errors import AccessDeniedError, IntegrityError, InvalidInputError
from kaiyuan.core.sealing import SealingPolicy, WrappedKey, checked_policy
from kaiyuan.services.distribution.attestation import (
    CaEvidenceVerifier,
    load_verifier,
    report_data,
)
from kaiyuan.services.distribution.keyring import LocalKeyRing, load_key_ring
from tests.support.attestation import MEASUREMENT, TestCa

NONCE, PUBLIC = b"\x07" * 32, b"\x09" * 32


class RecordingKms:
    """A stand-in KMS adapter: what `KAIYUAN_SEALING_KMS` names is called with the settings."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.ring = LocalKeyRing(settings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ring, name)


def make_kms(settings: Any) -> RecordingKms:
    return RecordingKms(settings)


def test_policies_from_outside_are_checked() -> None:
    assert checked_policy(["*.safetensors", "*.safetensors"], None, None)[0] == ("*.safetensors",)
    for patterns, attestation, allowed in [
        ([], None, None),
        ("*.bin", None, None),
        ([""], None, None),
        (["a\nb"], None, None),
        (["x" * 201], None, None),
        ([1], None, None),
        (["*.bin"] * 33, None, None),
        (["*.bin"], "sometimes", None),
        (["*.bin"], None, "bob"),
        (["*.bin"], None, [""]),
        (["*.bin"], None, [7]),
    ]:
        with pytest.raises(InvalidInputError):
            checked_policy(patterns, attestation, allowed)


def test_what_a_policy_seals() -> None:
    policy = SealingPolicy(("*.safetensors", "shards/*.bin", "README.md"))
    assert policy.seals("model.safetensors")
    assert policy.seals("sub/dir/model-00001-of-00002.safetensors")  # by name in any folder
    assert policy.seals("shards/a.bin") and not policy.seals("other/a.bin")
    assert not policy.seals("README.md") and not policy.seals(".gitattributes")  # never sealed
    assert not policy.seals("config.json")


def test_the_key_ring_rotates_and_retires(tmp_path: Path) -> None:
    ring = LocalKeyRing(tmp_path / "keys")
    first = ring.current()
    wrapped = ring.wrap(b"k" * 32, b"file-1")
    assert (tmp_path / "keys" / f"{first}.key").stat().st_mode & 0o777 == 0o600
    second = ring.rotate()
    assert ring.current() == second != first
    assert ring.unwrap(wrapped, b"file-1") == b"k" * 32  # old KEKs stay until retired
    assert ring.retire({first}, timedelta(0)) == []  # still in use
    # Superseded only just now: a commit may still be recording a key it wrapped with it.
    assert ring.retire(set(), timedelta(hours=1)) == []
    assert ring.unwrap(wrapped, b"file-1") == b"k" * 32
    assert ring.retire(set(), timedelta(0)) == [first]
    with pytest.raises(IntegrityError, match="retired"):
        ring.unwrap(wrapped, b"file-1")
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey("../../etc/passwd", b"x" * 40), b"file-1")
    assert LocalKeyRing(tmp_path / "keys").current() == second  # survives a restart
    tampered = ring.wrap(b"k" * 32, b"file-2")
    flipped = WrappedKey(tampered.kek_id, tampered.blob[:-1] + bytes([tampered.blob[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        ring.unwrap(flipped, b"file-2")


def test_a_kms_plug_in_takes_the_key_rings_place(tmp_path: Path) -> None:
    ring = load_key_ring(tmp_path, "tests.unit.test_key_release:make_kms", tmp_path / "kms")
    assert isinstance(ring, RecordingKms) and ring.settings == tmp_path / "kms"
    assert ring.unwrap(ring.wrap(b"d" * 32, b"b"), b"b") == b"d" * 32
    assert isinstance(load_key_ring(tmp_path, None, None), LocalKeyRing)
    with pytest.raises(InvalidInputError):
        load_key_ring(tmp_path, "no-colon", None)


def verifier(ca: TestCa, **options: Any) -> CaEvidenceVerifier:
    return CaEvidenceVerifier([ca.certificate], **options)


def test_ca_signed_evidence_is_accepted_for_its_request() -> None:
    ca = TestCa()
    found = verifier(ca).verify(ca.evidence(NONCE, PUBLIC), report_data(NONCE, PUBLIC))
    assert found.tee == "test-tee" and found.measurement == MEASUREMENT
    assert "attested runtime" in found.claims["subject"]
    allowed = verifier(ca, measurements=frozenset({MEASUREMENT}))
    assert allowed.verify(ca.evidence(NONCE, PUBLIC), report_data(NONCE, PUBLIC)).tee


def test_evidence_that_does_not_hold_is_refused(tmp_path: Path) -> None:
    ca, other = TestCa(), TestCa("other")
    good = ca.evidence(NONCE, PUBLIC)
    expected = report_data(NONCE, PUBLIC)
    tampered_claims = {**good, "claims": {**good["claims"], "measurement": "ff" * 24}}
    cases: dict[str, Any] = {
        "format": {**good, "format": "tdx-quote"},
        "no claims": {**good, "claims": "x"},
        "no chain": {**good, "certificate_chain": []},
        "long chain": {**good, "certificate_chain": good["certificate_chain"] * 5},
        "not pem": {**good, "certificate_chain": ["hello"]},
        "chain not text": {**good, "certificate_chain": [5]},
        "not base64": {**good, "signature": "***"},
        "tampered claims": tampered_claims,
        "another CA": other.evidence(NONCE, PUBLIC),
        "self-issued leaf claiming the CA's name": {
            **other.evidence(NONCE, PUBLIC),
            "certificate_chain": [
                TestCa("Kaiyuan test attestation CA")
                .certificate.public_bytes(Encoding.PEM)
                .decode()
            ],
        },
        "expired leaf": ca.evidence(NONCE, PUBLIC, leaf=ca.leaf(expired=True)),
        "debug on": ca.evidence(NONCE, PUBLIC, debug=True),
        "stale": ca.evidence(NONCE, PUBLIC, age=600),
        "future": ca.evidence(NONCE, PUBLIC, age=-600),
        "another nonce": ca.evidence(b"\x00" * 32, PUBLIC),
        "another key": ca.evidence(NONCE, b"\x00" * 32),
    }
    for why, evidence in cases.items():
        with pytest.raises(AccessDeniedError):
            verifier(ca).verify(evidence, expected)
        assert why
    strict = verifier(ca, measurements=frozenset({"00" * 24}))
    with pytest.raises(AccessDeniedError, match="measurement"):
        strict.verify(good, expected)
    no_time = dict(good)
    no_time["claims"] = {k: v for k, v in good["claims"].items() if k != "issued_at"}
    with pytest.raises(AccessDeniedError):
        verifier(ca).verify(no_time, expected)
    later = CaEvidenceVerifier(
        [ca.certificate], clock=lambda: datetime.now(UTC) + timedelta(days=40)
    )
    with pytest.raises(AccessDeniedError, match="expired"):
        later.verify(good, expected)
    assert base64.b64decode(good["signature"])


def test_the_configured_verifier(tmp_path: Path) -> None:
    ca = TestCa()
    assert load_verifier(None, None, frozenset(), None) is None
    loaded = load_verifier(None, ca.write(tmp_path / "ca.pem"), frozenset(), None)
    assert isinstance(loaded, CaEvidenceVerifier)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(InvalidInputError):
        load_verifier(None, tmp_path / "bad.pem", frozenset(), None)
    with pytest.raises(InvalidInputError):
        load_verifier("nocolon", None, frozenset(), None)
    plugged = load_verifier(
        "tests.unit.test_key_release:make_kms", None, frozenset(), tmp_path / "k"
    )
    assert isinstance(plugged, RecordingKms)  # whatever the factory returns is the verifier


def test_the_ca_itself_must_be_a_valid_ca() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = TestCa()
    leaf = ca.leaf()
    with pytest.raises(InvalidInputError, match="not a CA"):
        CaEvidenceVerifier([leaf.certificate])  # a leaf configured as the CA
    with pytest.raises(InvalidInputError):
        CaEvidenceVerifier([])
    # Its own leaves are refused once the CA has expired.
    later = CaEvidenceVerifier(
        [ca.certificate], clock=lambda: datetime.now(UTC) + timedelta(days=31)
    )
    with pytest.raises(AccessDeniedError):
        later.verify(ca.evidence(NONCE, PUBLIC), report_data(NONCE, PUBLIC))
    # A rollover: two CAs with one name; leaves of either are accepted.
    old, new = TestCa("rollover CA"), TestCa("rollover CA")
    both = CaEvidenceVerifier([old.certificate, new.certificate])
    for issuer in (old, new):
        assert both.verify(issuer.evidence(NONCE, PUBLIC), report_data(NONCE, PUBLIC)).tee
    # A CA certificate (not a leaf) signing the claims is refused.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sub CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    sub_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    from tests.support.attestation import Leaf

    with pytest.raises(AccessDeniedError, match="leaf"):
        verifier(ca).verify(
            ca.evidence(NONCE, PUBLIC, leaf=Leaf(key, sub_ca)), report_data(NONCE, PUBLIC)
        )
    # An absurd time is a refusal, not a crash.
    absurd = ca.evidence(NONCE, PUBLIC, age=-1e12)
    with pytest.raises(AccessDeniedError):
        verifier(ca).verify(absurd, report_data(NONCE, PUBLIC))
