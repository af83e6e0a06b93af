"""Weight provenance as domain values: fingerprints of revisions and what they matched."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kaiyuan.core.ids import RepoId, RepoKind


class FingerprintStatus(StrEnum):
    PENDING = "pending"  # queued after the commit
    RUNNING = "running"  # a worker has claimed it
    DONE = "done"
    FAILED = "failed"  # the weights could not be read (the error says why)
    NO_WEIGHTS = "no-weights"  # nothing the hub can fingerprint (no weights, or pickle only)


@dataclass(frozen=True, slots=True)
class TensorDigest:
    """One stored tensor's bytes hashed: equal digests mean an exact copy of that tensor."""

    path: str  # the weight file in the repository
    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str  # "xxh3-128:" and the XXH3-128 of the tensor's stored bytes, hex


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The provenance record of a revision: its state, and what its weights look like."""

    kind: RepoKind
    repo_id: RepoId
    commit: str
    status: FingerprintStatus
    queued_at: datetime
    method: str = ""
    summary: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProvenanceMatch:
    """A model whose weights this revision's weights were compared with, and the verdict."""

    candidate: RepoId
    candidate_commit: str
    score: float
    null_level: float
    threshold: float
    relation: str  # derived | shares-ancestor | independent | undetermined
    shortlist_score: float  # the sketch similarity that put it on the shortlist
    shared_tensors: int  # tensors byte-identical to the candidate's
    evidence: dict[str, object] = field(default_factory=dict)
    created_at: datetime | None = None
