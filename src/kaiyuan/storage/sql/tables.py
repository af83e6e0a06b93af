"""Table definitions shared by SQLite and PostgreSQL. Migrations create them; queries use them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("name", String(96), primary_key=True),
    Column("is_org", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("org", String(96), ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    Column("member", String(96), ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column(
        "user_name", String(96), ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False
    ),
    Column("scope", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

repos = Table(
    "repos",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("namespace", String(96), nullable=False),
    Column("name", String(96), nullable=False),
    Column("private", Boolean, nullable=False),
    Column("default_branch", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("gated", String(16), nullable=True),
    UniqueConstraint("kind", "namespace", "name", name="uq_repos_kind_namespace_name"),
    Index("ix_repos_updated_at", "updated_at"),
)

refs = Table(
    "refs",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("target", String(40), nullable=False),
)

commits = Table(
    "commits",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("sha", String(40), primary_key=True),
    Column("tree", String(40), nullable=False),
    Column("parents", String(200), nullable=False),  # space-separated shas, first parent first
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("author", String(96), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

trees = Table(
    "trees",
    metadata,
    Column("sha", String(40), primary_key=True),
)

tree_entries = Table(
    "tree_entries",
    metadata,
    Column("tree_sha", String(40), primary_key=True),
    Column("name", String(1024), primary_key=True),
    Column("is_dir", Boolean, nullable=False),
    Column("oid", String(40), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("lfs", Boolean, nullable=False),
    ForeignKeyConstraint(["tree_sha"], ["trees.sha"], ondelete="CASCADE"),
    Index("ix_tree_entries_sha256", "sha256"),  # which trees name a content (sealing's purge)
)

# Content known to the hub. With `xet_hash` set the bytes live as Xet chunks (`terms`: 40 bytes
# per term, raw xorb hash + u32 start + u32 end); otherwise as one whole blob in the blob store.
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("xet_hash", String(64), nullable=True, index=True),
    Column("terms", LargeBinary, nullable=True),
)

# Xorbs: `chunks` holds 40 bytes per chunk (raw chunk hash, u32 end in the xorb's data, u32 end
# of what it occupies in storage); `spans` 45 bytes per run of chunks stored together (u32 first
# chunk, raw blob sha256, u64 offset, u8 codec). `pack_sha256` is the blob this xorb added
# (NULL when all its chunks were known).
xorbs = Table(
    "xorbs",
    metadata,
    Column("xorb_hash", String(64), primary_key=True),
    Column("pack_sha256", String(64), nullable=True, index=True),
    Column("pack_bytes", BigInteger, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("raw_bytes", BigInteger, nullable=False),
    Column("chunks", LargeBinary, nullable=False),
    Column("spans", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Which xorbs each Xet-stored content uses; a dedup answer lists a chunk's neighbours through it.
xet_file_xorbs = Table(
    "xet_file_xorbs",
    metadata,
    Column("xorb_hash", String(64), primary_key=True),
    Column("sha256", String(64), primary_key=True),
)

# Where each chunk can be found (the first xorb that brought it); drives deduplication.
xorb_chunks = Table(
    "xorb_chunks",
    metadata,
    Column("chunk_hash", LargeBinary(32), primary_key=True),
    Column("xorb_hash", String(64), nullable=False),
    Column("chunk_index", Integer, nullable=False),
)

# Uploaded objects a repository has proven to hold. A commit may only reference LFS objects that
# were uploaded to (or committed in) the same repository, so knowing a digest is not enough to
# copy a private file.
repo_objects = Table(
    "repo_objects",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
)

# Requests per caller (`token:<id>` or `address:<ip>`) and minute: rate limits that hold across
# every server process sharing the database.
request_counts = Table(
    "request_counts",
    metadata,
    Column("subject", String(128), primary_key=True),
    Column("window", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

# Requests for the files of gated repositories: one per user and repository, with its decision.
access_requests = Table(
    "access_requests",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("user", String(96), primary_key=True),
    Column("request_id", String(32), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("fields", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(96), nullable=True),
    Column("reason", Text, nullable=True),
)

# Lineage: what each revision of a repository says it derives from. `parent_repo_pk` and
# `parent_commit` are set where the parent resolved on this hub (the revision it was declared
# against); `origin` tells declared edges from measured ones.
lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("child_repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("child_commit", String(40), nullable=False),
    Column("parent", String(200), nullable=False),
    Column("parent_kind", String(16), nullable=False),
    Column("parent_repo_pk", Integer, ForeignKey("repos.pk", ondelete="SET NULL"), nullable=True),
    Column("parent_commit", String(40), nullable=True),
    Column("relation", String(32), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_lineage_child", "child_repo_pk", "child_commit"),
    Index("ix_lineage_parent", "parent_repo_pk"),
)

# The licence report of each revision: the findings, and the facts its descendants check against.
licence_reports = Table(
    "licence_reports",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("commit", String(40), primary_key=True),
    Column("licence", String(200), nullable=True),
    Column("facts", Text, nullable=False),
    Column("findings", Text, nullable=False),
    Column("catalog_version", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# What each check does for the hub (scope '') and for an organisation (scope: its name).
licence_policies = Table(
    "licence_policies",
    metadata,
    Column("scope", String(96), primary_key=True),
    Column("check_id", String(16), primary_key=True),
    Column("action", String(16), nullable=False),
)

# Who accepted which licence (and version) of a gated repository, and when.
licence_acceptances = Table(
    "licence_acceptances",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("user", String(96), nullable=False),
    Column("licence", String(200), nullable=True),
    Column("licence_version", String(64), nullable=True),
    Column("commit", String(40), nullable=False),
    Column("request_id", String(32), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Index("ix_acceptances_repo", "repo_pk", "accepted_at"),
)

# Provenance: one fingerprint per revision holding weights (a queue row until a worker is done),
# the digest of every tensor (exact and partial copies are found by digest), and the models each
# fingerprint was compared with.
fingerprints = Table(
    "fingerprints",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("commit", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("method", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("sketch", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("repo_pk", "commit", name="uq_fingerprints_revision"),
    Index("ix_fingerprints_queue", "status", "queued_at"),
)

tensor_digests = Table(
    "tensor_digests",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column(
        "fingerprint_pk", Integer, ForeignKey("fingerprints.pk", ondelete="CASCADE"), nullable=False
    ),
    Column("path", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("dtype", String(16), nullable=False),
    Column("shape", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Index("ix_tensor_digests_digest", "digest"),
    Index("ix_tensor_digests_fingerprint", "fingerprint_pk"),
)

provenance_matches = Table(
    "provenance_matches",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column(
        "fingerprint_pk", Integer, ForeignKey("fingerprints.pk", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "candidate_repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False
    ),
    Column("candidate_commit", String(40), nullable=False),
    Column("score", Float, nullable=False),
    Column("null_level", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("relation", String(24), nullable=False),
    Column("shortlist_score", Float, nullable=False),
    Column("shared_tensors", Integer, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_provenance_matches_fingerprint", "fingerprint_pk"),
)

# The content scanner's verdict on each stored content (by sha256): a verdict belongs to the
# bytes, wherever they are committed. `scanner` names the rules that reached it; a verdict by an
# older scanner is scanned again when the content is next committed.
file_scans = Table(
    "file_scans",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("scanner", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("format", String(32), nullable=False),
    Column("findings", Text, nullable=False),  # JSON list of strings
    Column("imports", Text, nullable=False),  # JSON list of [module, name, safety, member]
    Column("scanned_at", DateTime(timezone=True), nullable=False),
)

# OMS signature bundles of revisions: the hub's own (`signer` "hub"), signed when the revision
# is committed or first asked for; a revision's files never change, so neither does its bundle.
revision_signatures = Table(
    "revision_signatures",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("commit", String(40), primary_key=True),
    Column("signer", String(16), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("bundle", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Sealed repositories. A policy says which paths are sealed and who may have their keys; a
# sealed file is named by its ciphertext's sha256 and keeps its data key only wrapped by a KEK.
sealing_policies = Table(
    "sealing_policies",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("patterns", Text, nullable=False),  # JSON list of file patterns
    Column("attestation", String(16), nullable=False),
    Column("allowed", Text, nullable=False),  # JSON list of users and organisations
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(96), nullable=False),
)

sealed_files = Table(
    "sealed_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    # the repository that sealed it: the only one whose policy releases its key
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("file_id", String(32), nullable=False, unique=True),
    Column("path", Text, nullable=False),
    Column("plaintext_sha256", String(64), nullable=False),
    Column("plaintext_size", BigInteger, nullable=False),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("sealed_at", DateTime(timezone=True), nullable=False),
    Index("ix_sealed_files_kek", "kek_id"),
    Index("ix_sealed_files_repo", "repo_pk"),
)

# Every key request, released or refused: the audit log of a sealed repository.
key_releases = Table(
    "key_releases",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user", String(96), nullable=False),
    Column("token_id", String(64), nullable=False),
    Column("revision", String(255), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("paths", Text, nullable=False),  # JSON list
    Column("file_ids", Text, nullable=False),  # JSON list
    Column("address", String(64), nullable=False),
    Index("ix_key_releases_repo", "repo_pk", "pk"),
)

# Challenge nonces a key request must be bound to: single use, short lived.
sealing_challenges = Table(
    "sealing_challenges",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("user", String(96), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Users or organisations whose key requests a sealed repository refuses from now on.
sealing_revocations = Table(
    "sealing_revocations",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("subject", String(96), primary_key=True),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
    Column("revoked_by", String(96), nullable=False),
)

# Public keys a namespace registered for its publishers' own OMS signatures (`model.sig`).
publisher_keys = Table(
    "publisher_keys",
    metadata,
    Column("namespace", String(96), primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("public_pem", Text, nullable=False),
    Column("added_by", String(96), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

# --- co-built datasets and background jobs ---------------------------------------------------
cobuild_policies = Table(
    "cobuild_policies",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("organisations", Text, nullable=False),  # JSON list
    Column("licences", Text, nullable=False),  # JSON list; empty: any licence
    Column("updated_by", String(96), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

contributions = Table(
    "contributions",
    metadata,
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("organisation", String(96), nullable=False),
    Column("contributor", String(96), nullable=False),
    Column("licence", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("commit", String(40), nullable=False),
    Column("files", Text, nullable=False),  # JSON list of {path, sha256, size, rows}
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reviewed_by", String(96), nullable=False, default=""),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("review_note", Text, nullable=False, default=""),
    Column("merged_commit", String(40), nullable=False, default=""),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("repo_pk", Integer, ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False),
    Column("revision", String(40), nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("stage", String(200), nullable=False, default=""),
    Column("created_by", String(96), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("result", Text, nullable=False, default="{}"),  # JSON
    Column("error", Text, nullable=False, default=""),
    Column("log", Text, nullable=False, default=""),
    Index("ix_jobs_status_created", "status", "created_at"),
    Index("ix_jobs_repo_kind", "repo_pk", "kind"),
)
