"""The model tree: `GET /api/lineage/{models|datasets}/{ns}/{name}`.

Ancestors of a revision (the edges its card declared, each pinned to the parent revision it was
declared against) and descendants of the repository (models whose current revision declares it).
Part of the native API, described at `/api/openapi.json`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, refuse_other_methods
from kaiyuan.http.context import caller, hub_of
from kaiyuan.services.lineage import MAX_DEPTH, LineageNode

router = APIRouter(prefix="/api/lineage", tags=["lineage"], responses=ERRORS)


class Node(BaseModel):
    """A repository in the tree, and how it relates to the node it hangs from."""

    id: str | None = Field(description="The repository on this hub; null when it is not here.")
    name: str = Field(description="The id as the card declared it.")
    type: str
    revision: str | None = Field(description="The commit: pinned for ancestors, current below.")
    relation: str | None = Field(description="finetune, adapter, quantized, merge, ...")
    origin: str | None = Field(description="declared (card) or measured (weights).")
    cycle: bool = Field(description="Seen higher up the same path; not expanded again.")
    licence: str | None = Field(description="The licence the revision declared.")
    nodes: list[Node] = Field(description="Parents (ancestors) or children (descendants).")

    @classmethod
    def of(cls, node: LineageNode) -> Node:
        return cls(
            id=str(node.repo_id) if node.repo_id else None,
            name=node.name,
            type=node.kind.value,
            revision=node.commit,
            relation=node.relation.value if node.relation else None,
            origin=node.origin.value if node.origin else None,
            cycle=node.cycle,
            licence=node.licence,
            nodes=[cls.of(child) for child in node.children],
        )


class Lineage(BaseModel):
    id: str
    type: str
    revision: str | None
    licence: str | None
    ancestors: list[Node] = Field(description="The parents of the revision, each with its own.")
    descendants: list[Node] = Field(description="Models derived from the current revision.")


@router.get("/{kind}/{namespace}/{name}", response_model=Lineage)
async def lineage(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
    revision: Annotated[str | None, Query(max_length=256)] = None,
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = MAX_DEPTH,
) -> Lineage:
    """Ancestors of a revision (default: the default branch) and descendants, to `depth`."""
    repo_kind = RepoKind.parse(kind)
    repo_id = RepoId(namespace, name)
    principal = await caller(request)
    hub = hub_of(request)
    up = await run_in_threadpool(
        hub.lineage.ancestors, principal, repo_kind, repo_id, revision, depth
    )
    down = await run_in_threadpool(hub.lineage.descendants, principal, repo_kind, repo_id, depth)
    return Lineage(
        id=str(repo_id),
        type=repo_kind.value,
        revision=up.commit,
        licence=up.licence,
        ancestors=[Node.of(n) for n in up.children],
        descendants=[Node.of(n) for n in down.children],
    )


refuse_other_methods(router, ["/{kind}/{namespace}/{name}"])
