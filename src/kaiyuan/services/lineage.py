"""The model tree: edges declared in cards, pinned to parent revisions, walked both ways.

A card's `base_model` (a repo id or a list) names the parents and `base_model_relation` how the
model was made from them. Kaiyuan knows more relations than the HF hub's four (see `Relation`);
without one, the relation is inferred the way the HF hub does: several parents make a merge, an
`adapter_config.json` an adapter, GGUF files or a quantization marker in the name a quantized
copy, anything else a fine-tune. Each edge pins the parent's revision at the time of the push.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import EdgeOrigin, LineageEdge, Relation
from kaiyuan.core.models import Principal, RefKind, Repo
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.services import access, revisions

MAX_PARENTS = 32
MAX_DEPTH = 16
_QUANTIZED_NAME = re.compile(
    r"(gguf|awq|gptq|exl2|bnb|[-_.](int)?[2-8]bit|mlx-[2-8]bit)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a card says about parents: the ids, the relation, and what is wrong with them."""

    parents: tuple[str, ...]
    relation: Relation | None  # None when there are no parents
    relation_declared: bool
    problems: tuple[str, ...] = ()


def declaration(card: dict[str, Any], repo_id: RepoId, paths: Iterable[str]) -> Declaration:
    """Parents and relation from card metadata and the revision's file names (never raises)."""
    raw = card.get("base_model")
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    problems: list[str] = []
    parents: list[str] = []
    for name in names[:MAX_PARENTS]:
        text = str(name).strip()
        if text and text not in parents:
            parents.append(text)
    if len(names) > MAX_PARENTS:
        problems.append(f"base_model lists more than {MAX_PARENTS} parents; the rest are ignored")
    if not parents:
        return Declaration((), None, relation_declared=False, problems=tuple(problems))
    declared = card.get("base_model_relation")
    relation: Relation | None = None
    if isinstance(declared, str) and declared.strip():
        try:
            relation = Relation.parse(declared)
        except InvalidInputError as exc:
            problems.append(exc.message)
    elif declared is not None:
        problems.append("base_model_relation must be a string")
    stated = relation is not None
    if relation is None:
        relation = _inferred(parents, repo_id, set(paths))
    return Declaration(tuple(parents), relation, stated, tuple(problems))


def _inferred(parents: list[str], repo_id: RepoId, paths: set[str]) -> Relation:
    if len(parents) > 1:
        return Relation.MERGE
    if "adapter_config.json" in paths or any(p.endswith("/adapter_config.json") for p in paths):
        return Relation.ADAPTER
    if any(p.endswith(".gguf") for p in paths) or _QUANTIZED_NAME.search(repo_id.name):
        return Relation.QUANTIZED
    return Relation.FINETUNE


def parse_parent(name: str) -> RepoId | None:
    """A parent id as a repository id of this hub, or None when it cannot be one."""
    try:
        return RepoId.parse(name)
    except InvalidInputError:
        return None


def resolve_edges(
    session: MetadataSession,
    principal: Principal,
    child: tuple[RepoKind, RepoId],
    commit: str,
    found: Declaration,
    now: datetime,
) -> list[LineageEdge]:
    """Declared edges, each pinned to the parent's default-branch head where it resolves.

    A parent the pusher may not read does not resolve (its existence is not revealed).
    """
    edges = []
    for parent in found.parents:
        assert found.relation is not None  # noqa: S101 - parents imply a relation
        target = parse_parent(parent)
        parent_repo = session.get_repo(RepoKind.MODEL, target) if target else None
        pinned = None
        if parent_repo is not None and access.can_read(principal, parent_repo):
            ref = session.get_ref(parent_repo, RefKind.BRANCH, parent_repo.default_branch)
            pinned = ref.target if ref else None
        else:
            parent_repo = None
        edges.append(
            LineageEdge(
                child_kind=child[0],
                child=child[1],
                child_commit=commit,
                parent=parent,
                relation=found.relation,
                origin=EdgeOrigin.DECLARED,
                parent_repo=parent_repo.repo_id if parent_repo else None,
                parent_commit=pinned,
                created_at=now,
            )
        )
    return edges


@dataclass
class LineageNode:
    """A repository at a revision in someone's tree, with how it relates to the node above."""

    kind: RepoKind
    repo_id: RepoId | None  # None: not on this hub (or not visible to the viewer)
    name: str  # as declared, or the repo id
    commit: str | None
    relation: Relation | None = None  # to the node this one hangs from
    origin: EdgeOrigin | None = None
    depth: int = 0
    children: list[LineageNode] = field(default_factory=list)  # parents (up) or children (down)
    cycle: bool = False  # seen higher up the same path: not expanded again
    licence: str | None = None  # as the revision's report recorded it


class LineageService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def ancestors(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        revision: str | None,
        depth: int = MAX_DEPTH,
    ) -> LineageNode:
        """The repository at `revision` with its parents, their parents, and so on."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            root = LineageNode(kind, repo.repo_id, str(repo.repo_id), commit.sha)
            root.licence = _licence(session, repo, commit.sha)
            self._expand_up(session, principal, repo, root, min(depth, MAX_DEPTH), set())
            return root

    def descendants(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, depth: int = MAX_DEPTH
    ) -> LineageNode:
        """The repository with the models whose current revision derives from it, recursively."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            ref = session.get_ref(repo, RefKind.BRANCH, repo.default_branch)
            root = LineageNode(kind, repo.repo_id, str(repo.repo_id), ref.target if ref else None)
            root.licence = _licence(session, repo, root.commit)
            self._expand_down(session, principal, repo, root, min(depth, MAX_DEPTH), {repo.pk})
            return root

    def _expand_up(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        node: LineageNode,
        depth: int,
        path: set[tuple[int, str]],
    ) -> None:
        if node.commit is None or depth <= 0:
            return
        path = path | {(repo.pk, node.commit)}
        for edge in session.lineage_edges(repo, node.commit):
            parent_repo = (
                session.get_repo(RepoKind.MODEL, edge.parent_repo) if edge.parent_repo else None
            )
            visible = parent_repo is not None and access.can_read(principal, parent_repo)
            child = LineageNode(
                RepoKind.MODEL,
                edge.parent_repo if visible else None,
                edge.parent,
                edge.parent_commit if visible else None,
                edge.relation,
                edge.origin,
                node.depth + 1,
            )
            node.children.append(child)
            if visible and parent_repo is not None:
                child.licence = _licence(session, parent_repo, child.commit)
            if visible and parent_repo is not None and child.commit is not None:
                if (parent_repo.pk, child.commit) in path:
                    child.cycle = True
                    continue
                self._expand_up(session, principal, parent_repo, child, depth - 1, path)

    def _expand_down(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        node: LineageNode,
        depth: int,
        path: set[int],
    ) -> None:
        if depth <= 0:
            return
        for edge in session.lineage_children(repo):
            child_repo = session.get_repo(edge.child_kind, edge.child)
            if child_repo is None or not access.can_read(principal, child_repo):
                continue
            child = LineageNode(
                edge.child_kind,
                edge.child,
                str(edge.child),
                edge.child_commit,
                edge.relation,
                edge.origin,
                node.depth + 1,
                licence=_licence(session, child_repo, edge.child_commit),
            )
            node.children.append(child)
            if child_repo.pk in path:
                child.cycle = True
                continue
            self._expand_down(
                session, principal, child_repo, child, depth - 1, path | {child_repo.pk}
            )


def _licence(session: MetadataSession, repo: Repo, commit: str | None) -> str | None:
    report = session.licence_report(repo, commit) if commit else None
    return report.licence if report else None
