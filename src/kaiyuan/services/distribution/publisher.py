"""Publishers' own signatures: OMS bundles pushed as `model.sig`, checked against namespace keys.

A namespace registers the public keys its publishers sign with. When a revision holds a
`model.sig`, the hub checks it whenever asked (so a key registered or removed later counts):
which registered key signed it, and whether the files it lists are exactly the revision's
files. A sealed file is compared by its plaintext's digest, since that is what its publisher
signed. Nothing is refused: the result is shown beside the hub's own signature.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kaiyuan.core.errors import IntegrityError, InvalidInputError, NotFoundError
from kaiyuan.core.ids import RepoId, RepoKind, validate_namespace
from kaiyuan.core.models import Principal
from kaiyuan.core.ports import MetadataStore
from kaiyuan.core.scanning import PublisherKey, PublisherSignature, PublisherStatus
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.distribution.signing import (
    SIGNATURE_FILE,
    manifest_of,
    signed_files,
    subject_of,
    verified_manifest,
)

MAX_BUNDLE_BYTES = 1024 * 1024
MAX_KEYS = 50
MAX_PEM_BYTES = 4096
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)  # what OMS key mode accepts
_SHOWN = 5


def parse_public_key(pem: str) -> bytes:
    """A PEM public key normalised (SubjectPublicKeyInfo); InvalidInput unless EC P-256/384/521."""
    if len(pem) > MAX_PEM_BYTES:
        raise InvalidInputError("a public key PEM is a few hundred bytes, not this much")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        raise InvalidInputError("not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, _CURVES):
        raise InvalidInputError("OMS key signatures use EC keys on P-256, P-384 or P-521")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class PublisherSignatures:
    def __init__(
        self,
        store: MetadataStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._contents = contents
        self._cache = cache
        self._clock = clock

    def keys(self, namespace: str) -> list[PublisherKey]:
        validate_namespace(namespace)
        with self._store.session() as session:
            return session.publisher_keys(namespace)

    def register(self, principal: Principal, namespace: str, pem: str) -> PublisherKey:
        """Add a key the namespace's publishers sign with (namespace writers)."""
        validate_namespace(namespace)
        access.require_write(principal, namespace)
        public = parse_public_key(pem)
        key = PublisherKey(
            namespace,
            hashlib.sha256(public).hexdigest(),
            public,
            principal.user or "",
            self._clock(),
        )
        with self._store.session(write=True) as session:
            if len(session.publisher_keys(namespace)) >= MAX_KEYS:
                raise InvalidInputError(f"a namespace registers at most {MAX_KEYS} keys")
            session.add_publisher_key(key)
        return key

    def remove(self, principal: Principal, namespace: str, key_id: str) -> None:
        validate_namespace(namespace)
        access.require_write(principal, namespace)
        with self._store.session(write=True) as session:
            if not session.remove_publisher_key(namespace, key_id):
                raise NotFoundError(f"no key {key_id[:16]} registered for {namespace}")

    def check(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> PublisherSignature | None:
        """The publisher's signature of a revision, checked now; None when it has none."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            files = trees.flatten(session, self._cache, commit.tree)
            entry = files.get(SIGNATURE_FILE)
            if entry is None:
                return None
            access.require_files(session, principal, repo)  # model.sig is one of the files
            keys = session.publisher_keys(repo_id.namespace)
            sealed = session.sealed_files((e.sha256 for e in files.values() if e.lfs), repo)
        if entry.size > MAX_BUNDLE_BYTES:
            return PublisherSignature(
                SIGNATURE_FILE, PublisherStatus.UNREADABLE, detail="larger than an OMS bundle"
            )
        bundle = b"".join(self._contents.open(entry.sha256))
        expected = {
            path: sealed[sha].plaintext_sha256 if sha in sealed else sha
            for path, sha in signed_files({p: e.sha256 for p, e in files.items()}).items()
        }
        return _judge(bundle, keys, expected)


def _judge(bundle: bytes, keys: list[PublisherKey], expected: dict[str, str]) -> PublisherSignature:
    try:
        subject = subject_of(bundle)
        manifest_of(bundle)
    except InvalidInputError as exc:
        return PublisherSignature(SIGNATURE_FILE, PublisherStatus.UNREADABLE, detail=exc.message)
    for key in keys:
        try:
            _, listed = verified_manifest(bundle, key.public_pem)
        except IntegrityError:
            continue  # another key's signature
        except InvalidInputError as exc:
            return PublisherSignature(
                SIGNATURE_FILE, PublisherStatus.UNREADABLE, key.key_id, exc.message, subject
            )
        problems = _differences(listed, expected)
        if problems:
            return PublisherSignature(
                SIGNATURE_FILE, PublisherStatus.MISMATCH, key.key_id, "; ".join(problems), subject
            )
        return PublisherSignature(
            SIGNATURE_FILE,
            PublisherStatus.VERIFIED,
            key.key_id,
            f"{len(listed)} files signed",
            subject,
        )
    return PublisherSignature(
        SIGNATURE_FILE,
        PublisherStatus.UNKNOWN_KEY,
        detail="no key registered for this namespace made this signature",
        subject=subject,
    )


def _differences(listed: dict[str, str], expected: dict[str, str]) -> list[str]:
    changed = sorted(p for p in listed.keys() & expected.keys() if listed[p] != expected[p])
    missing = sorted(listed.keys() - expected.keys())
    unsigned = sorted(expected.keys() - listed.keys())
    problems = []
    for label, paths in (
        ("changed since signed", changed),
        ("signed but not in the revision", missing),
        ("in the revision but not signed", unsigned),
    ):
        if paths:
            more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
            problems.append(f"{label}: {', '.join(paths[:_SHOWN])}{more}")
    return problems
