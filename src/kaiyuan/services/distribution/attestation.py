"""Attestation evidence: what binds it to a key request, and a verifier for CA-signed evidence.

Every key request carries a fresh challenge nonce and the requester's ephemeral X25519 public
key. Evidence is acceptable only if it carries `report_data = SHA-256("kaiyuan-attest/v1" ‖
nonce ‖ public key)`, so it cannot be replayed for another request or another key. A TEE puts
these bytes in its quote (TDX/SEV-SNP report data, the nonce of NVIDIA GPU evidence); a
verifier for that TEE plugs in through `KAIYUAN_ATTESTATION_VERIFIER=module:factory`.

The verifier shipped here accepts evidence signed by a key whose certificate a configured CA
issued (format `kaiyuan-ca-evidence/v1`, docs/distribution.md): an attestation service that
has already checked a TEE's quote, or a test fixture playing one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kaiyuan.core.errors import AccessDeniedError, InvalidInputError
from kaiyuan.core.sealing import AttestationResult, AttestationVerifier
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.distribution.plugins import build_plugin

EVIDENCE_FORMAT = "kaiyuan-ca-evidence/v1"
MAX_EVIDENCE_AGE = timedelta(minutes=5)
MAX_CHAIN = 4
_REPORT_DATA_CONTEXT = b"kaiyuan-attest/v1"
_YEAR_3000 = 32_503_680_000


def report_data(nonce: bytes, public_key: bytes) -> bytes:
    """What evidence for a key request must carry: it names this request and this key."""
    return hashlib.sha256(_REPORT_DATA_CONTEXT + nonce + public_key).digest()


def canonical(claims: Mapping[str, Any]) -> bytes:
    """The signed form of the claims: sorted keys, no spaces, UTF-8."""
    return json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class CaEvidenceVerifier:
    """Evidence signed by a leaf certificate a configured CA issued directly.

    Checks: the leaf was issued by one of the CAs and is within its validity period now (not at
    signing time), its key signed the claims, the claims carry this request's report data and
    are fresh, debug is off, and the measurement is one the hub allows (when it names any).
    """

    name = "ca"

    def __init__(
        self,
        cas: Sequence[x509.Certificate],
        measurements: frozenset[str] = frozenset(),
        clock: Clock = utc_now,
    ) -> None:
        if not cas:
            raise InvalidInputError("the attestation verifier needs at least one CA certificate")
        for ca in cas:
            if not _is_ca(ca):
                raise InvalidInputError(
                    f"{ca.subject.rfc4514_string()} is not a CA certificate (basicConstraints)"
                )
        self._cas = tuple(cas)
        self._measurements = measurements
        self._clock = clock

    @classmethod
    def from_file(
        cls, path: Path, measurements: frozenset[str] = frozenset()
    ) -> CaEvidenceVerifier:
        try:
            cas = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read attestation CA {path}: {exc}") from None
        return cls(cas, measurements)

    def verify(self, evidence: Mapping[str, Any], report_data: bytes) -> AttestationResult:
        if evidence.get("format") != EVIDENCE_FORMAT:
            raise AccessDeniedError(f"attestation evidence must be {EVIDENCE_FORMAT!r}")
        claims, chain, signature = (
            evidence.get("claims"),
            evidence.get("certificate_chain"),
            evidence.get("signature"),
        )
        if not isinstance(claims, dict) or not isinstance(signature, str):
            raise AccessDeniedError("attestation evidence lacks its claims or signature")
        if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN:
            raise AccessDeniedError("attestation evidence needs its certificate (leaf first)")
        leaf = self._trusted_leaf(chain[0])
        self._check_signature(leaf, claims, signature)
        return self._check_claims(claims, report_data, leaf)

    def _trusted_leaf(self, pem: object) -> x509.Certificate:
        if not isinstance(pem, str):
            raise AccessDeniedError("attestation certificate must be PEM text")
        try:
            leaf = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            raise AccessDeniedError("attestation certificate is not a PEM certificate") from None
        now = self._clock()
        issuers = [ca for ca in self._cas if ca.subject == leaf.issuer and _valid_at(ca, now)]
        if not any(_issued_by(leaf, ca) for ca in issuers):
            raise AccessDeniedError(
                "attestation certificate was not issued by a trusted CA (or the CA expired)"
            )
        if _is_ca(leaf):
            raise AccessDeniedError("attestation evidence must be signed by a leaf, not a CA")
        if not _valid_at(leaf, now):
            raise AccessDeniedError("attestation certificate is expired or not yet valid")
        return leaf

    def _check_signature(
        self, leaf: x509.Certificate, claims: dict[str, Any], signature: str
    ) -> None:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise AccessDeniedError("attestation signature is not base64") from None
        key = leaf.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(raw, canonical(claims), ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(raw, canonical(claims))
            else:
                raise AccessDeniedError("attestation keys must be EC or Ed25519")
        except InvalidSignature:
            raise AccessDeniedError("attestation signature does not verify") from None

    def _check_claims(
        self, claims: dict[str, Any], expected: bytes, leaf: x509.Certificate
    ) -> AttestationResult:
        if claims.get("report_data") != expected.hex():
            raise AccessDeniedError(
                "attestation evidence is for another request (report_data does not match the "
                "challenge nonce and public key)"
            )
        issued = claims.get("issued_at")
        if not isinstance(issued, int) or isinstance(issued, bool) or not 0 < issued < _YEAR_3000:
            raise AccessDeniedError("attestation claims lack 'issued_at' (unix seconds)")
        age = self._clock() - datetime.fromtimestamp(issued, UTC)
        if not timedelta(seconds=-30) <= age <= MAX_EVIDENCE_AGE:
            raise AccessDeniedError("attestation evidence is stale or from the future")
        if claims.get("debug") is not False:
            raise AccessDeniedError("attestation evidence must say debug is off ('debug': false)")
        tee, measurement = claims.get("tee"), claims.get("measurement")
        if not isinstance(tee, str) or not isinstance(measurement, str) or not measurement:
            raise AccessDeniedError("attestation claims lack 'tee' or 'measurement'")
        if self._measurements and measurement not in self._measurements:
            raise AccessDeniedError(f"measurement {measurement[:32]} is not one the hub allows")
        return AttestationResult(
            self.name, tee, measurement, {**claims, "subject": leaf.subject.rfc4514_string()}
        )


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


def _valid_at(certificate: x509.Certificate, moment: datetime) -> bool:
    return certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def sign_evidence(
    claims: Mapping[str, Any],
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    certificate: x509.Certificate,
) -> dict[str, Any]:
    """Evidence in the `kaiyuan-ca-evidence/v1` format (what an attestation service returns)."""
    payload = canonical(claims)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    else:
        raw = key.sign(payload)
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    return {
        "format": EVIDENCE_FORMAT,
        "claims": dict(claims),
        "certificate_chain": [certificate.public_bytes(Encoding.PEM).decode()],
        "signature": base64.b64encode(raw).decode(),
    }


def load_verifier(
    plugin: str | None, ca: Path | None, measurements: frozenset[str], settings: Any
) -> AttestationVerifier | None:
    """The configured verifier: a plug-in factory, else the CA verifier, else none."""
    if plugin:
        verifier: AttestationVerifier = build_plugin(
            plugin, "KAIYUAN_ATTESTATION_VERIFIER", settings
        )
        return verifier
    if ca is not None:
        return CaEvidenceVerifier.from_file(ca, measurements)
    return None
