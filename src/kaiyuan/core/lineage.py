"""Lineage and licence compliance as domain values: edges of the model tree, findings, policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind


class Relation(StrEnum):
    """How a model was derived from a parent (more kinds than the HF hub's four)."""

    FINETUNE = "finetune"
    ADAPTER = "adapter"
    QUANTIZED = "quantized"
    MERGE = "merge"
    DISTILLATION = "distillation"
    CONTINUED_PRETRAINING = "continued-pretraining"
    PRUNED = "pruned"
    UPCYCLED = "upcycled"
    FORMAT_CONVERSION = "format-conversion"

    @classmethod
    def parse(cls, value: str) -> Relation:
        """A card's `base_model_relation`: these names, their common spellings, or refused."""
        key = value.strip().lower().replace("_", "-").replace(" ", "-")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise InvalidInputError(
                f"unknown base_model_relation {value!r}; use one of: {known}"
            ) from None

    @property
    def copies_parent(self) -> bool:
        """A mechanical copy of the parent's weights (same model, other numbers or format)."""
        return self in {Relation.QUANTIZED, Relation.FORMAT_CONVERSION}


_ALIASES = {
    "fine-tune": "finetune",
    "fine-tuned": "finetune",
    "finetuned": "finetune",
    "sft": "finetune",
    "lora": "adapter",
    "peft": "adapter",
    "quantization": "quantized",
    "quantised": "quantized",
    "quant": "quantized",
    "merged": "merge",
    "distill": "distillation",
    "distilled": "distillation",
    "continued-pretrain": "continued-pretraining",
    "continual-pretraining": "continued-pretraining",
    "prune": "pruned",
    "upcycle": "upcycled",
    "conversion": "format-conversion",
    "converted": "format-conversion",
}


class EdgeOrigin(StrEnum):
    DECLARED = "declared"  # from the card's base_model
    MEASURED = "measured"  # from comparing the weights (provenance)


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """`child` at `child_commit` derives from `parent` (as written), pinned where it resolved."""

    child_kind: RepoKind
    child: RepoId
    child_commit: str
    parent: str  # the id as the card wrote it
    relation: Relation
    origin: EdgeOrigin
    parent_repo: RepoId | None = None  # on this hub; None when it does not resolve
    parent_commit: str | None = None  # the parent's revision the edge was declared against
    created_at: datetime | None = None


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class PolicyAction(StrEnum):
    OFF = "off"  # not evaluated into the report
    WARN = "warn"  # reported, the push goes through
    REJECT = "reject"  # the push is refused

    @classmethod
    def parse(cls, value: str) -> PolicyAction:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InvalidInputError(
                f"policy action must be off, warn or reject, not {value!r}"
            ) from None


# LIC-*: licence obligations along the ancestry; PROV-*: what the weights say about the declared
# lineage (found after the push, by the fingerprint worker, so they warn and never refuse it).
PROVENANCE_CHECK_IDS = ("PROV-001", "PROV-002")
CHECK_IDS = (*(f"LIC-{n:03d}" for n in range(1, 16)), *PROVENANCE_CHECK_IDS)


def validate_check_id(value: str) -> str:
    check = value.strip().upper()
    if check not in CHECK_IDS:
        raise InvalidInputError(
            f"unknown check {value!r}; checks are LIC-001 to LIC-015, PROV-001 and PROV-002"
        )
    return check


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken (or noted) obligation: what, why, who it comes from, how to fix it."""

    check: str
    severity: Severity
    message: str
    fix: str
    ancestor: str | None = None  # the repository whose licence causes it
    clause: str | None = None  # the licence and clause
    action: PolicyAction = PolicyAction.WARN


@dataclass(frozen=True, slots=True)
class LicenceReport:
    """The findings for one revision of a repository, as the policy then in force judged them."""

    kind: RepoKind
    repo_id: RepoId
    commit: str
    licence: str | None  # the licence as declared (`other:<license_name>` for `other`)
    findings: tuple[Finding, ...]
    catalog_version: str
    created_at: datetime
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def rejected(self) -> list[Finding]:
        return [f for f in self.findings if f.action is PolicyAction.REJECT]


@dataclass(frozen=True, slots=True)
class LicenceAcceptance:
    """A user accepted a gated repository's licence (a version of it) when asking for access."""

    user: str
    licence: str | None
    licence_version: str | None
    commit: str  # the revision whose card the user was shown
    accepted_at: datetime
    request_id: str
