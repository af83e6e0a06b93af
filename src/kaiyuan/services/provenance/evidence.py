"""From comparisons to lineage: measured edges, the relation they imply, and the findings.

A measured edge says the weights of this revision derive from a model already on the hub. The
weights show relatedness, not direction, so the parent is the model that was there first unless
a card says otherwise (a model that declares the other as its base is the child). Two findings
compare what the card declares with what the weights show: PROV-001 an ancestor the card does
not name, PROV-002 a declared base the weights do not support.
"""

from __future__ import annotations

from datetime import datetime

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import EdgeOrigin, Finding, LineageEdge, Relation, Severity
from kaiyuan.core.provenance import ProvenanceMatch
from kaiyuan.services.provenance.compare import Comparison
from kaiyuan.services.provenance.compare import Relation as Verdict

# A near copy this close (relative difference of the weights) is the same model in other numbers.
_QUANTIZED_NOISE = 0.15
_CONVERTED_NOISE = 0.001
# A score this close to 1 leaves no room for training: a re-parametrisation of the same weights.
_SAME_FUNCTION = 0.995


def match_of(
    candidate: RepoId,
    commit: str,
    comparison: Comparison,
    shortlist_score: float,
    shared_tensors: int,
    now: datetime,
) -> ProvenanceMatch:
    """A comparison as it is stored and shown: the verdict with its evidence."""
    evidence = comparison.as_json()
    for verdict in ("score", "null_level", "threshold", "relation"):
        evidence.pop(verdict)  # stored in their own columns
    return ProvenanceMatch(
        candidate=candidate,
        candidate_commit=commit,
        score=comparison.score,
        null_level=comparison.null_level,
        threshold=comparison.threshold,
        relation=comparison.relation.value,
        shortlist_score=round(shortlist_score, 4),
        shared_tensors=shared_tensors,
        evidence=evidence,
        created_at=now,
    )


def relation_of(match: ProvenanceMatch, total_tensors: int, same_format: bool) -> Relation:
    """The lineage relation the evidence points to (finetune when nothing more specific)."""
    evidence = match.evidence
    near = evidence.get("near_copy")
    noise = near.get("relative_noise") if isinstance(near, dict) else None
    if total_tensors and match.shared_tensors >= total_tensors:
        return Relation.FORMAT_CONVERSION
    if isinstance(noise, float) and noise <= _CONVERTED_NOISE and not same_format:
        return Relation.FORMAT_CONVERSION
    if isinstance(noise, float) and noise <= _QUANTIZED_NOISE:
        return Relation.QUANTIZED
    if match.score >= _SAME_FUNCTION:  # the same weights in another basis (permuted, rotated)
        return Relation.FORMAT_CONVERSION
    if evidence.get("absent_layers"):
        return Relation.PRUNED
    return Relation.FINETUNE


def measured_edges(
    child: tuple[RepoKind, RepoId, str],
    parents: list[tuple[ProvenanceMatch, Relation]],
    now: datetime,
) -> list[LineageEdge]:
    kind, repo_id, commit = child
    return [
        LineageEdge(
            child_kind=kind,
            child=repo_id,
            child_commit=commit,
            parent=str(match.candidate),
            relation=relation,
            origin=EdgeOrigin.MEASURED,
            parent_repo=match.candidate,
            parent_commit=match.candidate_commit,
            created_at=now,
        )
        for match, relation in parents
    ]


def findings(
    declared: list[LineageEdge],
    parents: list[ProvenanceMatch],
    verified: dict[RepoId, ProvenanceMatch],
) -> list[Finding]:
    """What the weights say about the declared lineage.

    PROV-001 for each measured parent the card does not declare; PROV-002 for each declared
    base on the hub whose fingerprint was compared and found independent.
    """
    named = {e.parent_repo for e in declared if e.parent_repo is not None}
    result = []
    for match in parents:
        if match.candidate in named:
            continue
        result.append(
            Finding(
                check="PROV-001",
                severity=Severity.WARNING,
                message=(
                    f"the weights derive from {match.candidate} (score {match.score:.2f}, "
                    f"threshold {match.threshold:.2f}) but the card does not declare it"
                ),
                fix=(
                    f"add `base_model: {match.candidate}` to the model card and meet its "
                    "licence terms"
                ),
                ancestor=str(match.candidate),
            )
        )
    for edge in declared:
        if edge.parent_repo is None:
            continue
        checked = verified.get(edge.parent_repo)
        if checked is None or checked.relation != Verdict.INDEPENDENT.value:
            continue
        result.append(
            Finding(
                check="PROV-002",
                severity=Severity.WARNING,
                message=(
                    f"the card declares {edge.parent_repo} as its base, but the weights show no "
                    f"relation to it (score {checked.score:.2f}, threshold {checked.threshold:.2f})"
                ),
                fix="correct `base_model` in the model card, or upload the weights it refers to",
                ancestor=str(edge.parent_repo),
            )
        )
    return result
