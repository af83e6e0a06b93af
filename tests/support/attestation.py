"""A test attestation service: a CA, leaves it issues, and evidence those leaves sign."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kaiyuan.services.distribution.attestation import report_data, sign_evidence

MEASUREMENT = "a3" * 24


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Leaf:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


class TestCa:
    """A CA whose leaves sign `kaiyuan-ca-evidence/v1` evidence."""

    __test__ = False

    def __init__(self, name: str = "Kaiyuan test attestation CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(Encoding.PEM))
        return path

    def leaf(self, *, expired: bool = False) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        start = now - timedelta(days=10) if expired else now - timedelta(hours=1)
        end = now - timedelta(days=1) if expired else now + timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("attested runtime"))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(key, certificate)

    def evidence(
        self,
        nonce: bytes,
        public_key: bytes,
        *,
        leaf: Leaf | None = None,
        debug: bool = False,
        measurement: str = MEASUREMENT,
        age: float = 0,
        bound_to: bytes | None = None,
    ) -> dict[str, Any]:
        leaf = leaf or self.leaf()
        claims = {
            "report_data": (bound_to or report_data(nonce, public_key)).hex(),
            "tee": "test-tee",
            "measurement": measurement,
            "debug": debug,
            "issued_at": int(time.time() - age),
        }
        return sign_evidence(claims, leaf.key, leaf.certificate)
