"""Wiring: build the storage backends the settings name and the services on top of them."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from kaiyuan.config import Settings
from kaiyuan.core.ports import BlobStore, MetadataStore
from kaiyuan.core.scanning import ScanStatus
from kaiyuan.services.accounts import AccountService
from kaiyuan.services.commits import CommitLimits, CommitService
from kaiyuan.services.contents import ContentStore, XorbCache
from kaiyuan.services.curation.contributions import ContributionService
from kaiyuan.services.curation.engines import Engine, LocalEngine, RayEngine
from kaiyuan.services.curation.service import CurationService
from kaiyuan.services.distribution.attestation import load_verifier
from kaiyuan.services.distribution.key_release import KeyReleaseService
from kaiyuan.services.distribution.keyring import load_key_ring
from kaiyuan.services.distribution.publisher import PublisherSignatures
from kaiyuan.services.distribution.scan import ScanLimits
from kaiyuan.services.distribution.scanning import ScanService
from kaiyuan.services.distribution.sealed_repos import SealingService
from kaiyuan.services.distribution.signatures import SigningService
from kaiyuan.services.distribution.signing import KEY_FILE, load_or_create_key
from kaiyuan.services.fsck import ConsistencyChecker
from kaiyuan.services.garbage import GarbageCollector
from kaiyuan.services.gating import GatingService
from kaiyuan.services.jobs import JobService
from kaiyuan.services.licensing.catalog import load_catalog
from kaiyuan.services.licensing.service import LicensingService
from kaiyuan.services.limits import RateLimiter
from kaiyuan.services.lineage import LineageService
from kaiyuan.services.provenance.service import ProvenanceLimits, ProvenanceService
from kaiyuan.services.reads import ReadService
from kaiyuan.services.repos import RepoService
from kaiyuan.services.trees import TreeCache
from kaiyuan.services.uploads import UploadLimits, UploadService
from kaiyuan.services.usage import UsageService
from kaiyuan.services.websessions import WebSessions
from kaiyuan.services.xet.cas import CasService
from kaiyuan.services.xet.ingest import XetIngest
from kaiyuan.storage.blobs.fs import FsBlobStore
from kaiyuan.storage.sql.store import SqlMetadataStore


@dataclass(frozen=True)
class Hub:
    """Everything the edges (HTTP, CLI) need, built once per process."""

    settings: Settings
    metadata: MetadataStore
    blobs: BlobStore
    accounts: AccountService
    repos: RepoService
    reads: ReadService
    commits: CommitService
    uploads: UploadService
    contents: ContentStore
    xet_ingest: XetIngest
    cas: CasService
    usage: UsageService
    garbage: GarbageCollector
    fsck: ConsistencyChecker
    limiter: RateLimiter
    gating: GatingService
    sessions: WebSessions
    lineage: LineageService
    licensing: LicensingService
    provenance: ProvenanceService
    scanning: ScanService
    signing: SigningService
    sealing: SealingService
    key_release: KeyReleaseService
    publishers: PublisherSignatures
    jobs: JobService
    contributions: ContributionService
    curation: CurationService

    def close(self) -> None:
        self.metadata.close()


def build_hub(settings: Settings, *, migrate: bool = True) -> Hub:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metadata = SqlMetadataStore(settings.effective_database_url)
    if migrate:
        metadata.migrate()
    return assemble(settings, metadata, _blob_store(settings))


def migrate_database(settings: Settings) -> tuple[str | None, str | None, bool]:
    """Bring the schema to the newest revision; (before, after, False when it was newer)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metadata = SqlMetadataStore(settings.effective_database_url)
    try:
        before = metadata.schema_revision()
        known = metadata.migrate()
        return before, metadata.schema_revision(), known
    finally:
        metadata.close()


def _blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend == "local":
        return FsBlobStore(settings.effective_blob_dir, fsync=settings.fsync)
    from kaiyuan.storage.blobs.s3 import S3BlobStore  # noqa: PLC0415 - boto3 only when asked

    secret = settings.s3_secret_access_key
    store = S3BlobStore(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        prefix=settings.s3_prefix,
        staging=settings.data_dir / "staging",
    )
    store.ensure_bucket()
    return store


def assemble(settings: Settings, metadata: MetadataStore, blobs: BlobStore) -> Hub:
    """Services over given backends (tests pass the in-memory blob store here)."""
    cache = TreeCache()
    commit_limits = CommitLimits(
        max_regular_file_bytes=settings.max_regular_file_bytes,
        max_card_bytes=settings.max_card_bytes,
        max_operations=settings.max_commit_operations,
    )
    upload_limits = UploadLimits(
        max_file_bytes=settings.max_file_bytes,
        multipart_threshold_bytes=settings.multipart_threshold_bytes,
        multipart_part_bytes=settings.multipart_part_bytes,
        grant_ttl_seconds=settings.upload_link_ttl_seconds,
    )
    secret = _secret(settings)
    xorbs = XorbCache()
    contents = ContentStore(metadata, blobs, xorbs)
    ingest = XetIngest(metadata, blobs, xorbs, compression=settings.xet_chunk_compression)
    accounts = AccountService(metadata)
    catalog_path = settings.licence_catalog
    load_catalog(catalog_path)  # a catalog that cannot be trusted stops the hub here
    licensing = LicensingService(
        metadata,
        contents,
        cache,
        lambda: load_catalog(catalog_path),
        max_card_bytes=settings.max_card_bytes,
        external_models=settings.external_model_patterns,
    )
    sealing_keys = load_key_ring(
        settings.sealing_key_dir or settings.data_dir / "sealing-keys",
        settings.sealing_kms,
        settings,
    )
    sealing = SealingService(metadata, blobs, contents, cache, sealing_keys)
    key_release = KeyReleaseService(
        metadata,
        cache,
        sealing_keys,
        load_verifier(
            settings.attestation_verifier,
            settings.attestation_ca,
            settings.accepted_measurements,
            settings,
        ),
    )
    provenance = ProvenanceService(
        metadata,
        contents,
        cache,
        licensing,
        ProvenanceLimits(candidates=settings.provenance_candidates),
        unseal=sealing.unseal,
    )
    key_file = settings.signing_key_file or settings.data_dir / KEY_FILE
    signing = SigningService(metadata, cache, load_or_create_key(key_file.parent, key_file.name))
    scanning = ScanService(
        metadata,
        contents,
        refuse=frozenset(ScanStatus(v) for v in settings.scan_refused),
        limits=ScanLimits(max_unpacked_bytes=settings.scan_max_unpacked_bytes),
        unseal=sealing.unseal,
    )
    repos = RepoService(metadata, blobs, cache, check=scanning)
    reads = ReadService(metadata, contents, cache)
    commits = CommitService(
        metadata,
        blobs,
        contents,
        cache,
        commit_limits,
        reviews=[licensing, provenance, signing],
        check=scanning,
        sealer=sealing,
    )
    uploads = UploadService(metadata, blobs, contents, ingest, secret, upload_limits)
    jobs = JobService(metadata)
    return Hub(
        settings=settings,
        metadata=metadata,
        blobs=blobs,
        accounts=accounts,
        repos=repos,
        reads=reads,
        commits=commits,
        uploads=uploads,
        contents=contents,
        xet_ingest=ingest,
        cas=CasService(metadata, contents, secret, settings.xet_token_ttl_seconds),
        usage=UsageService(metadata, contents),
        garbage=GarbageCollector(metadata, blobs),
        fsck=ConsistencyChecker(metadata, blobs, contents),
        limiter=RateLimiter(metadata),
        gating=GatingService(metadata),
        sessions=WebSessions(accounts, secret, settings.web_session_max_age_seconds),
        lineage=LineageService(metadata),
        licensing=licensing,
        provenance=provenance,
        scanning=scanning,
        signing=signing,
        sealing=sealing,
        key_release=key_release,
        publishers=PublisherSignatures(metadata, contents, cache),
        jobs=jobs,
        contributions=ContributionService(metadata, commits, uploads, reads),
        curation=CurationService(
            metadata,
            cache,
            contents,
            reads,
            commits,
            uploads,
            jobs,
            lambda: curation_engine(settings),
            settings.curation_batch_rows,
        ),
    )


def curation_engine(settings: Settings) -> Engine:
    """The engine the settings choose for curation stages."""
    if settings.curation_engine == "ray":
        return RayEngine(settings.ray_address)
    return LocalEngine(settings.curation_workers or None)


def _secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path: Path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            # link() fails if another process got there first; then its key wins.
            os.link(staged, path)
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    return path.read_text().strip().encode()
