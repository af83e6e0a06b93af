"""Signed revisions in the OpenSSF model signing format (OMS), through `model-signing`.

The hub signs every revision it commits: an in-toto statement listing each file with its
SHA-256 (OMS "files" serialization), signed with the hub's P-256 key into a Sigstore bundle.
The hub already knows every file's SHA-256 (checked at upload), so signing reads no file.
Anyone holding the hub's public key verifies a downloaded copy offline with the stock
`model_signing` verifier or `kaiyuan verify --local-dir`.

The pitfalls of the format are avoided, not inherited: only whole-file SHA-256 manifests (no
shard sizes that travel as floats), never `--ignore_unsigned_files` (an extra file fails
verification), and key mode with a pinned key (no certificate whose expiry nobody checks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import hashing, manifest, verifying
from model_signing._hashing import hashing as digests
from model_signing._signing import sign_ec_key
from model_signing._signing import sign_sigstore_pb as sigstore_pb
from model_signing._signing import signing as oms

from kaiyuan.core.errors import IntegrityError, InvalidInputError

SIGNATURE_FILE = "model.sig"  # where OMS tools look for a model's signature
# Never part of a signed manifest: the signature itself, git's files, and the metadata folder
# `huggingface_hub` writes into a local-dir download.
IGNORED = (SIGNATURE_FILE, ".git", ".gitattributes", ".github", ".gitignore", ".cache")
KEY_FILE = "signing-key.pem"


@dataclass(frozen=True, slots=True)
class HubKey:
    """The hub's signing key pair; `key_id` is the OMS key hint (SHA-256 of the public PEM)."""

    path: pathlib.Path  # the private key's file (0600), which the signer reads
    public_pem: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public_pem).hexdigest()


def load_or_create_key(folder: pathlib.Path, name: str = KEY_FILE) -> HubKey:
    """The hub's key `folder/name`, created (P-256, 0600) by the first process that needs it."""
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        staged = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(staged, path)  # fails if another process got there first; its key wins
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    private_pem = path.read_bytes()
    key = serialization.load_pem_private_key(private_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise InvalidInputError(f"{path} is not a P-256 private key")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return HubKey(path, public_pem)


def signed_files(files: Mapping[str, str]) -> dict[str, str]:
    """The (path → sha256) a manifest lists: every file but the ignored ones."""
    return {
        path: sha
        for path, sha in files.items()
        if not any(path == name or path.startswith(name + "/") for name in IGNORED)
    }


def sign_revision(key: HubKey, model_name: str, files: Mapping[str, str]) -> bytes:
    """The OMS bundle (JSON) signing `files` (path → sha256) as the model `model_name`."""
    items = [
        manifest.FileManifestItem(
            path=pathlib.PurePosixPath(path), digest=digests.Digest("sha256", bytes.fromhex(sha))
        )
        for path, sha in sorted(signed_files(files).items())
    ]
    serialization_type = manifest._FileSerialization(  # noqa: SLF001 - the OMS "files" method
        "sha256", allow_symlinks=False, ignore_paths=[pathlib.Path(p) for p in IGNORED]
    )
    payload = oms.Payload(manifest.Manifest(model_name, items, serialization_type))
    signature = sign_ec_key.Signer(key.path).sign(payload)
    return signature.bundle.to_json().encode("utf-8")  # type: ignore[attr-defined, no-any-return]


def verify_directory(folder: pathlib.Path, bundle: bytes, public_pem: bytes) -> None:
    """Check a downloaded copy against a bundle and a trusted public key, offline.

    IntegrityError naming what differs: a changed, missing or extra file, or a signature the
    key did not make. Files listed in IGNORED (the signature, git's files, the download
    metadata) are not part of the check.
    """
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")
    config = hashing.Config()  # type: ignore[no-untyped-call]
    config.use_file_serialization(
        hashing_algorithm="sha256", ignore_paths=[folder / p for p in IGNORED]
    )
    verifier = verifying.Config()  # type: ignore[no-untyped-call]
    with _key_file(public_pem) as public, _key_file(bundle) as signature:
        try:
            verifier.use_elliptic_key_verifier(public_key=public).set_hashing_config(config).verify(
                folder, signature
            )
        except InvalidSignature:
            raise IntegrityError("signature check failed: the key did not sign this") from None
        except ValueError as exc:
            raise IntegrityError(f"signature check failed: {str(exc)[:2000]}") from None
        except (KeyError, TypeError) as exc:  # a bundle that is not an OMS bundle
            raise IntegrityError(f"not a readable OMS signature: {exc}") from None


def verified_manifest(bundle: bytes, public_pem: bytes) -> tuple[str, dict[str, str]]:
    """The model name and files (path → sha256) of a bundle the key signed.

    IntegrityError if the key did not sign it; InvalidInput if it is not an OMS bundle of
    whole-file SHA-256 digests (the only kind the hub can compare with what it stores).
    """
    with _key_file(public_pem) as public, _key_file(bundle) as signature:
        try:
            verifier = sign_ec_key.Verifier(public)
            found = verifier.verify(sigstore_pb.Signature.read(signature))
        except (InvalidSignature, ValueError) as exc:
            if "signature" in str(exc).lower() or isinstance(exc, InvalidSignature):
                raise IntegrityError("the key did not sign this bundle") from None
            raise InvalidInputError(f"not an OMS bundle: {str(exc)[:300]}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"not an OMS bundle: {str(exc)[:300]}") from None
    method = found.serialization_type
    if method.get("method") != "files" or method.get("hash_type") != "sha256":
        raise InvalidInputError(
            f"signed as {method.get('method')}/{method.get('hash_type')}; the hub compares "
            "only whole-file SHA-256 manifests (check it with kaiyuan verify --local-dir)"
        )
    files = {}
    for item in found.resource_descriptors():
        if item.digest.algorithm != "sha256":
            raise InvalidInputError(f"{item.identifier} is not hashed with SHA-256")
        files[str(item.identifier)] = item.digest.digest_hex
    return found.model_name, files


def manifest_of(bundle: bytes) -> dict[str, str]:
    """The files (path → sha256) a bundle's statement lists, unverified (for display)."""
    try:
        resources = _statement(bundle)["predicate"]["resources"]
        return {r["name"]: r["digest"] for r in resources if r.get("algorithm") == "sha256"}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"not an OMS bundle: {exc}") from None


def subject_of(bundle: bytes) -> str:
    """What a bundle says it signs: `namespace/name@commit` for the hub's (unverified)."""
    try:
        return str(_statement(bundle)["subject"][0]["name"])
    except (KeyError, TypeError, IndexError) as exc:
        raise InvalidInputError(f"not an OMS bundle: {exc}") from None


def _statement(bundle: bytes) -> dict[str, Any]:
    try:
        document = json.loads(bundle)
        statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"not an OMS bundle: {exc}") from None
    if not isinstance(statement, dict):
        raise InvalidInputError("not an OMS bundle: the statement is not an object")
    return statement


class _key_file:  # noqa: N801 - a context manager, like the stdlib's lowercase ones
    """Bytes in a private temporary file, for the library calls that take paths."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> pathlib.Path:
        self._folder = tempfile.TemporaryDirectory(prefix="kaiyuan-sign-")
        path = pathlib.Path(self._folder.name) / "data"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._data)
        return path

    def __exit__(self, *_: object) -> None:
        if self._folder is not None:
            self._folder.cleanup()
