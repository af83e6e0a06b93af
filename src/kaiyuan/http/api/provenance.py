"""Weight provenance: `GET /api/provenance/models/{ns}/{name}`, `POST /api/provenance/compare`.

The first is what the hub found for a revision: its fingerprint (pending, done, failed), the
models it was verified against with score, null level, threshold, relation and evidence, and the
lineage edges measured from them. The second compares two model revisions on the hub now.
Part of the native API, described at `/api/openapi.json`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.provenance import ProvenanceMatch
from kaiyuan.http.api.schema import ERRORS, NAME, json_body, refuse_other_methods
from kaiyuan.http.context import caller, hub_of, read_model
from kaiyuan.services.provenance.service import ProvenanceView

router = APIRouter(prefix="/api/provenance", tags=["provenance"], responses=ERRORS)


class Match(BaseModel):
    """A model on the hub the revision's weights were verified against."""

    id: str
    revision: str
    score: float = Field(description="The best of the weight statistics (0 = unrelated).")
    null_level: float = Field(description="What this pair of shapes scores by chance.")
    threshold: float = Field(description="Scores at or above it mean the models are related.")
    relation: str = Field(description="derived, shares-ancestor, independent or undetermined.")
    shortlist_score: float = Field(description="The sketch similarity that shortlisted it.")
    shared_tensors: int = Field(description="Tensors byte-identical to the candidate's.")
    evidence: dict[str, Any] = Field(description="Per-method values and nulls, the layer map.")

    @classmethod
    def of(cls, match: ProvenanceMatch) -> Match:
        return cls(
            id=str(match.candidate),
            revision=match.candidate_commit,
            score=match.score,
            null_level=match.null_level,
            threshold=match.threshold,
            relation=match.relation,
            shortlist_score=match.shortlist_score,
            shared_tensors=match.shared_tensors,
            evidence=match.evidence,
        )


class Edge(BaseModel):
    parent: str
    revision: str | None
    relation: str


class Provenance(BaseModel):
    id: str
    revision: str = Field(description="The revision asked about.")
    fingerprinted_revision: str | None = Field(
        description="The revision whose weights were fingerprinted (the same, or the newest "
        "earlier one when this revision did not change the weights)."
    )
    status: str = Field(description="pending, running, done, failed, no-weights, or none.")
    method: str | None
    error: str | None
    summary: dict[str, Any] = Field(description="Format, layers, width, vocabulary, tensors.")
    matches: list[Match]
    measured_parents: list[Edge] = Field(description="Lineage edges measured from the weights.")
    declared_parents: list[Edge] = Field(description="Lineage edges the card declares.")

    @classmethod
    def of(cls, view: ProvenanceView) -> Provenance:
        found = view.fingerprint
        return cls(
            id=str(view.repo_id),
            revision=view.commit,
            fingerprinted_revision=found.commit if found else None,
            status=found.status.value if found else "none",
            method=found.method or None if found else None,
            error=found.error if found else None,
            summary=found.summary if found else {},
            matches=[Match.of(m) for m in view.matches],
            measured_parents=[
                Edge(parent=e.parent, revision=e.parent_commit, relation=e.relation.value)
                for e in view.edges
            ],
            declared_parents=[
                Edge(parent=e.parent, revision=e.parent_commit, relation=e.relation.value)
                for e in view.declared
            ],
        )


# `namespace/name` with an optional `@revision` (the services check the parts).
REFERENCE: dict[str, Any] = {
    "max_length": 400,
    "json_schema_extra": {"format": "repo-ref"},
}


class CompareRequest(BaseModel):
    a: str = Field(description="`namespace/name` or `namespace/name@revision`.", **REFERENCE)
    b: str = Field(description="The model A is compared against (same form).", **REFERENCE)


class Comparison(BaseModel):
    a: str
    a_revision: str
    b: str
    b_revision: str
    result: dict[str, Any] = Field(
        description="score, null_level, threshold, relation, methods, layer_map, near_copy."
    )


@router.get("/models/{namespace}/{name}", response_model=Provenance)
async def provenance(
    request: Request,
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> Provenance:
    """The fingerprint of a revision (default: the default branch) and what it matched."""
    principal = await caller(request)
    hub = hub_of(request)
    view = await run_in_threadpool(
        hub.provenance.view, principal, RepoKind.MODEL, RepoId(namespace, name), revision
    )
    return Provenance.of(view)


@router.post(
    "/compare",
    response_model=Comparison,
    openapi_extra=json_body(CompareRequest.model_json_schema()),
)
async def compare(request: Request) -> Comparison:
    """Compare model A with model B now (both readable by the caller); takes seconds."""
    principal = await caller(request)
    body = await read_model(request, CompareRequest)
    hub = hub_of(request)
    a, b = parse_reference(body.a), parse_reference(body.b)
    result, (sha_a, sha_b) = await run_in_threadpool(
        hub.provenance.compare_revisions, principal, a, b
    )
    return Comparison(
        a=str(a[0]), a_revision=sha_a, b=str(b[0]), b_revision=sha_b, result=result.as_json()
    )


def parse_reference(text: str) -> tuple[RepoId, str | None]:
    """`namespace/name[@revision]` (the revision may contain `/`, the id may not contain `@`)."""
    repo, _, revision = text.partition("@")
    if "/" not in repo:
        raise InvalidInputError(f"{text!r}: expected namespace/name or namespace/name@revision")
    return RepoId.parse(repo), revision or None


refuse_other_methods(router, ["/models/{namespace}/{name}"])
refuse_other_methods(router, ["/compare"], allowed="POST")
