"""Settings: the only place that reads the environment (prefix KAIYUAN_) or a TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kaiyuan.core.errors import InvalidInputError

MiB = 1024 * 1024
GiB = 1024 * MiB


class Settings(BaseSettings):
    """Every setting can be given as `KAIYUAN_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="KAIYUAN_", extra="forbid")

    data_dir: Path = Field(
        default=Path.home() / ".kaiyuan",
        description="Where the embedded database, blobs and the signing key live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default sqlite in data_dir. "
        "PostgreSQL: postgresql://user@host:port/db.",
    )
    blob_dir: Path | None = Field(
        default=None,
        description="Directory of the content-addressed blob store; default data_dir/blobs.",
    )
    blob_backend: Literal["local", "s3"] = Field(
        default="local",
        description="Where blobs (xorb packs and small files) live: `local` (blob_dir) or `s3` "
        "(an S3-compatible object store, configured by the s3_* settings).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of the S3-compatible store (e.g. http://127.0.0.1:8333 for "
        "SeaweedFS); default: AWS.",
    )
    s3_bucket: str = Field(
        default="kaiyuan", description="Bucket for blobs; created at start-up when missing."
    )
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket (e.g. `hub1/`).")
    s3_region: str | None = Field(default=None, description="Region of the bucket.")
    s3_access_key_id: str | None = Field(
        default=None, description="Access key; default: boto3's usual credential sources."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret key that goes with s3_access_key_id."
    )
    host: str = Field(default="127.0.0.1", description="Address `kaiyuan serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `kaiyuan serve` listens on.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated addresses of proxies whose X-Forwarded-For/-Proto headers "
        "are believed (the client address then counts for anonymous rate limits); `*` trusts "
        "any sender, for a hub reachable only through its proxy.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL clients use to reach the hub, when it differs from what requests "
        "show (behind a proxy). Used in upload links, pagination links, the Xet CAS URL, the "
        "Xet token refresh route and xorb download links.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that signs upload links, Xet CAS tokens and xorb download links. "
        "Default: generated once into data_dir/secret.key. All server processes sharing a "
        "store need the same key.",
    )
    fsync: bool = Field(default=True, description="fsync blobs before they become visible.")
    max_regular_file_bytes: int = Field(
        default=10 * MiB, ge=1, description="Largest file accepted inline in a commit (non-LFS)."
    )
    max_card_bytes: int = Field(default=1 * MiB, ge=1, description="Largest README.md accepted.")
    max_commit_body_bytes: int = Field(
        default=512 * MiB, ge=1, description="Largest NDJSON commit request body."
    )
    max_file_bytes: int = Field(
        default=1024 * GiB, ge=1, description="Largest LFS object accepted."
    )
    lfs_threshold_bytes: int = Field(
        default=10 * MiB,
        ge=1,
        description="Files at least this large are sent through LFS (preupload answer).",
    )
    multipart_threshold_bytes: int = Field(
        default=8 * GiB, ge=1, description="LFS objects at least this large are uploaded in parts."
    )
    multipart_part_bytes: int = Field(
        default=1 * GiB, ge=1024, description="Size of each part of a multipart upload."
    )
    upload_link_ttl_seconds: int = Field(
        default=24 * 3600, ge=60, description="How long an LFS upload link stays valid."
    )
    xet_chunk_compression: Literal["zstd", "lz4", "none"] = Field(
        default="zstd",
        description="How stored Xet chunks are compressed where that saves at least 10%: "
        "`zstd` (byte groups, zstd: bf16 ~1.4x, fp16 ~1.2x; decoded by the hub when served), "
        "`lz4` (Xet's byte-grouped LZ4: bf16 ~1.15x; Xet clients get stored bytes as they are) "
        "or `none` (every plain download zero-copy).",
    )
    xet_token_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        description="How long a Xet CAS token stays valid (clients refresh it when it expires).",
    )
    max_json_body_bytes: int = Field(
        default=16 * MiB, ge=1024, description="Largest JSON request body (other than a commit)."
    )
    max_json_depth: int = Field(
        default=32,
        ge=4,
        description="Deepest nesting of arrays and objects accepted in a JSON body or NDJSON "
        "line; the HF protocol needs about 5.",
    )
    max_commit_operations: int = Field(
        default=25_000,
        ge=1,
        description="Most files (added, deleted, copied) one commit may change.",
    )
    rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests per minute one access token may make (counted across every "
        "server process in the shared database); over it: 429 with Retry-After. 0: no limit.",
    )
    anonymous_rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests per minute from one client address without a token (behind a "
        "proxy, the address it forwards). 0: no limit.",
    )
    admins: str = Field(
        default="",
        description="Comma-separated user names who may open the web admin page "
        "(`/-/admin`: storage statistics of the whole hub).",
    )
    web_session_max_age_seconds: int = Field(
        default=14 * 24 * 3600,
        ge=60,
        description="How long a browser stays signed in after signing in with a token; deleting "
        "the token signs it out at once.",
    )
    licence_catalog: Path | None = Field(
        default=None,
        description="A licence catalog (YAML, the packaged catalog's format) to use instead of "
        "the packaged one, e.g. with licences an organisation added.",
    )
    lineage_external_models: str = Field(
        default="",
        description="Comma-separated patterns (`meta-llama/*`) of base models that live on "
        "another hub: a card may name them in `base_model` without LIC-002 reporting that they "
        "do not resolve. Their licences are not known, so nothing flows down from them.",
    )
    provenance_worker: bool = Field(
        default=True,
        description="Run the fingerprint worker in this process: it fingerprints every pushed "
        "revision that adds or changes weights and compares it with the models on the hub. "
        "Processes share the queue; turn it off in processes that should only serve.",
    )
    provenance_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often an idle fingerprint worker looks for revisions queued by other "
        "processes (a push to this process wakes it at once).",
    )
    provenance_candidates: int = Field(
        default=5,
        ge=0,
        le=100,
        description="How many of the most similar models (by sketch) each new fingerprint is "
        "verified against, besides models sharing tensors with it and its declared bases.",
    )
    scan_refuse: str = Field(
        default="unsafe",
        pattern=r"^\s*((caution|unsafe|error)\s*(,\s*(caution|unsafe|error)\s*)*)?$",
        description="Comma-separated scan verdicts that refuse a commit: `unsafe` (code that "
        "runs on load, the default), `caution` (not shown to be safe: unknown imports or "
        "formats), `error` (the scanner could not analyse the file). Other verdicts are "
        "recorded and shown; empty refuses nothing.",
    )
    scan_max_unpacked_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="How large a compressed stream or archive member may unpack to for the "
        "scanner; past it, the file's verdict is `error`.",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="PEM file of the hub's P-256 key that signs revisions (OMS); default "
        "`<data dir>/signing-key.pem`, created on first start. Processes serving one hub must "
        "share it.",
    )
    sealing_key_dir: Path | None = Field(
        default=None,
        description="Folder of the local key ring of sealed files' key-encryption keys; default "
        "`<data dir>/sealing-keys`. Processes serving one hub must share it (or use "
        "`sealing_kms`).",
    )
    sealing_kms: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`package.module:factory` of a KMS adapter holding the key-encryption keys "
        "of sealed files; default: a local key ring in `<data dir>/sealing-keys/`.",
    )
    attestation_ca: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates whose directly issued leaves may sign "
        "attestation evidence (`kaiyuan-ca-evidence/v1`) for key release.",
    )
    attestation_measurements: str = Field(
        default="",
        description="Comma-separated measurements the CA verifier accepts; empty accepts any "
        "measurement the evidence's signer vouches for.",
    )
    attestation_verifier: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`package.module:factory` of an attestation verifier plug-in (a TEE's); "
        "takes precedence over `attestation_ca`.",
    )
    job_worker: bool = Field(
        default=True,
        description="Run background jobs (dataset curation) in this process. Processes share "
        "the queue in the database; turn it off in processes that should only serve.",
    )
    job_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often an idle job worker looks for jobs queued by other processes.",
    )
    job_stale_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A running job whose heartbeat is older than this is taken to have lost its "
        "process, and another worker runs it again (at most three attempts).",
    )
    curation_engine: Literal["local", "ray"] = Field(
        default="local",
        description="Where curation stages run: `local` (a process pool on this machine) or "
        "`ray` (Ray Data on the cluster at `ray_address`).",
    )
    curation_workers: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Processes of the local curation engine; 0: one per CPU core.",
    )
    curation_batch_rows: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="Records per batch handed to a curation engine's workers.",
    )
    ray_address: str | None = Field(
        default=None,
        max_length=500,
        description="Address of the Ray cluster the `ray` engine uses (`ray://host:10001` or "
        "`host:6379`); unset: a local Ray started on first use.",
    )
    max_contribution_bytes: int = Field(
        default=10 * 1024**3,
        gt=0,
        description="Largest request a contribution to a co-built dataset may be, all files "
        "together.",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")

    @property
    def external_model_patterns(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.lineage_external_models.split(",") if p.strip())

    @property
    def scan_refused(self) -> frozenset[str]:
        return frozenset(v.strip() for v in self.scan_refuse.split(",") if v.strip())

    @property
    def accepted_measurements(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.attestation_measurements.split(",") if m.strip())

    @property
    def admin_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.admins.split(",") if name.strip())

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'kaiyuan.db'}"

    @property
    def effective_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and explicit overrides; InvalidInputError names bad ones."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"KAIYUAN_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidInputError(f"invalid settings: {problems}") from None
