"""Trusted distribution's records: a content scan's verdict, a revision's signature.

A verdict belongs to content (a sha256), not to a path: the same bytes get the same verdict
wherever they are committed. It is reached by reading the content, never by trusting a name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class ScanStatus(enum.Enum):
    """The verdict, as the Hugging Face Hub names it in `securityFileStatus.status`.

    Only `safe` says the file can be loaded without running code it carries. A file the scanner
    could not analyse is `error`, never `safe`.
    """

    SAFE = "safe"  # a format that runs no code on load, validated
    CAUTION = "caution"  # not known to be harmful, not shown to be safe
    UNSAFE = "unsafe"  # code that runs on load (a dangerous import in a pickle)
    ERROR = "error"  # the scanner could not analyse it (corrupt, past a limit)
    UNSCANNED = "unscanned"  # no verdict yet

    @property
    def rank(self) -> int:
        """How bad: a container takes the worst verdict of what it holds."""
        return _RANK[self]


_RANK = {
    ScanStatus.SAFE: 0,
    ScanStatus.UNSCANNED: 1,
    ScanStatus.CAUTION: 2,
    ScanStatus.ERROR: 3,
    ScanStatus.UNSAFE: 4,
}


class ImportSafety(enum.Enum):
    """How a pickle's import is judged (the Hub's `pickleImportScan` levels)."""

    INNOCUOUS = "innocuous"  # on the allow-list: rebuilds tensors and plain containers
    SUSPICIOUS = "suspicious"  # anything else: not known to be harmful, not allowed
    DANGEROUS = "dangerous"  # runs commands, code, or reaches the interpreter's internals


@dataclass(frozen=True, slots=True)
class PickleImport:
    module: str
    name: str
    safety: ImportSafety
    member: str = ""  # where in a container ("archive/data.pkl"); "" for the file itself


@dataclass(frozen=True, slots=True)
class FileScan:
    """The verdict on one content, with what led to it."""

    sha256: str
    status: ScanStatus
    format: str  # what the bytes are: "safetensors", "gguf", "pickle", "torch-zip", "text", …
    findings: tuple[str, ...] = ()  # why it is not safe, and what a container held, in words
    imports: tuple[PickleImport, ...] = ()
    scanner: str = ""  # the scanner version that reached it
    scanned_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RevisionSignature:
    """An OMS signature bundle over a revision's files."""

    commit: str
    signer: str  # "hub"
    key_id: str  # SHA-256 of the signing public key's PEM (the OMS key hint)
    bundle: bytes  # the Sigstore bundle JSON
    created_at: datetime


class PublisherStatus(enum.Enum):
    """What the hub found checking a publisher's own signature (`model.sig`) of a revision."""

    VERIFIED = "verified"  # a key registered for the namespace signed exactly these files
    MISMATCH = "mismatch"  # a registered key signed it, but the files differ
    UNKNOWN_KEY = "unknown-key"  # no key registered for the namespace made this signature
    UNREADABLE = "unreadable"  # not an OMS bundle the hub can check (or not files + sha256)


@dataclass(frozen=True, slots=True)
class PublisherKey:
    """A public key a namespace registered for its publishers' OMS signatures."""

    namespace: str
    key_id: str  # SHA-256 of the public key's PEM (SubjectPublicKeyInfo)
    public_pem: bytes
    added_by: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class PublisherSignature:
    path: str
    status: PublisherStatus
    key_id: str = ""
    detail: str = ""
    subject: str = ""  # the model name the bundle names
