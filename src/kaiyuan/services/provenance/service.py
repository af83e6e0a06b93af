"""Weight provenance on the hub: queue after each push, fingerprint, scan, record, report.

A push that adds or changes weights queues its revision (in the same transaction as the commit);
a worker fingerprints it, shortlists related models among every fingerprinted model on the hub
(shared tensor digests, declared bases, sketch similarity), verifies each candidate by reading
both models, stores the matches, records measured lineage edges to the models it derives from,
and has the licence report judged again with that ancestry and the PROV findings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from kaiyuan.core.errors import AccessDeniedError, HubError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import EdgeOrigin, LineageEdge
from kaiyuan.core.lineage import Relation as LineageRelation
from kaiyuan.core.models import Commit, FileEntry, Principal, Repo
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.core.provenance import Fingerprint, FingerprintStatus, ProvenanceMatch
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.distribution.sealing import SealedReader
from kaiyuan.services.licensing.service import LicensingService
from kaiyuan.services.provenance import evidence
from kaiyuan.services.provenance.compare import METHOD, Comparison, Relation, compare
from kaiyuan.services.provenance.fingerprint import fingerprint
from kaiyuan.services.provenance.model import (
    OpenedModel,
    choose_files,
    is_weight_path,
    open_model,
)
from kaiyuan.services.provenance.sketch import Sketch, similarity
from kaiyuan.services.provenance.source import LocalWeightFile, RangedWeightFile, WeightFile

log = logging.getLogger("kaiyuan.provenance")

_HISTORY = 64  # commits walked back to find the fingerprint of an unchanged revision


@dataclass(frozen=True, slots=True)
class ProvenanceLimits:
    candidates: int = 5  # verified per revision, besides byte-identical and declared ones
    shortlist_floor: float = 0.05  # sketch similarity below this is not worth a verification
    stale_after_seconds: int = 3600  # a running job older than this was abandoned
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class ProvenanceView:
    """What the hub knows of a revision's weights, as a viewer may see it."""

    kind: RepoKind
    repo_id: RepoId
    commit: str  # the revision asked about
    fingerprint: Fingerprint | None  # of `commit`, or of the nearest earlier one with its weights
    matches: list[ProvenanceMatch] = field(default_factory=list)
    edges: list[LineageEdge] = field(default_factory=list)  # measured
    declared: list[LineageEdge] = field(default_factory=list)


class ProvenanceService:
    def __init__(
        self,
        store: MetadataStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        licensing: LicensingService,
        limits: ProvenanceLimits = ProvenanceLimits(),
        *,
        clock: Clock = utc_now,
        on_queued: Callable[[], None] = lambda: None,
        unseal: Callable[[str, Repo], SealedReader | None] = lambda _sha, _repo: None,
    ) -> None:
        self._store = store
        self._unseal = unseal
        self._contents = contents
        self._cache = cache
        self._licensing = licensing
        self._limits = limits
        self._clock = clock
        self.on_queued = on_queued

    # --- the commit hook ---------------------------------------------------------------------
    def review(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        branch: str,
        files: dict[str, FileEntry],
        commit: Commit,
    ) -> None:
        """Queue the new revision when it adds or changes weights (model repositories only)."""
        del principal, branch
        if repo.kind is not RepoKind.MODEL:
            return
        weights = {p: e.sha256 for p, e in files.items() if is_weight_path(p)}
        if not weights:
            return
        if commit.parents:
            parent = session.get_commit(repo, commit.parents[0])
            if parent is not None:
                before = trees.flatten(session, self._cache, parent.tree)
                if weights == {p: e.sha256 for p, e in before.items() if is_weight_path(p)}:
                    return
        session.queue_fingerprint(repo, commit.sha, self._clock())
        self.on_queued()

    # --- the worker's job --------------------------------------------------------------------
    def process_next(self) -> bool:
        """Fingerprint and scan the oldest queued revision; False when the queue is empty."""
        now = self._clock()
        stale = now - timedelta(seconds=self._limits.stale_after_seconds)
        with self._store.session() as session:  # idle polling takes no write lock
            if not session.fingerprint_waiting(stale, self._limits.max_attempts):
                return False
        with self._store.session(write=True) as session:
            claimed = session.claim_fingerprint(now, stale, self._limits.max_attempts)
        if claimed is None:
            return False
        repo, sha = claimed
        try:
            opened = self._fingerprint(repo, sha)
            if opened is not None:
                self._scan(repo, sha, opened)
        except HubError as exc:
            log.info("fingerprint of %s@%s failed: %s", repo.repo_id, sha[:12], exc)
            self._failed(repo, sha, str(exc))
        except Exception as exc:  # a bug must not kill the worker, nor be retried forever
            log.exception("fingerprint of %s@%s crashed", repo.repo_id, sha[:12])
            self._failed(repo, sha, f"internal error ({type(exc).__name__}); see the hub's log")
        return True

    def _failed(self, repo: Repo, sha: str, error: str) -> None:
        with self._store.session(write=True) as session:
            session.finish_fingerprint(
                repo,
                sha,
                FingerprintStatus.FAILED,
                self._clock(),
                method=METHOD,
                error=error[:2000],
            )

    def run_pending(self) -> int:
        """Process the whole queue in this thread (tests, `kaiyuan admin provenance run`)."""
        done = 0
        while self.process_next():
            done += 1
        return done

    def _fingerprint(self, repo: Repo, sha: str) -> OpenedModel | None:
        """Store the revision's fingerprint (still running); the opened model, if it has one."""
        opened = self._open(repo, sha)
        if opened is None:
            with self._store.session(write=True) as session:
                session.finish_fingerprint(
                    repo, sha, FingerprintStatus.NO_WEIGHTS, self._clock(), method=METHOD
                )
            return None
        result = fingerprint(opened)
        with self._store.session(write=True) as session:
            session.finish_fingerprint(  # done once the scan has stored what it found
                repo,
                sha,
                FingerprintStatus.RUNNING,
                self._clock(),
                method=METHOD,
                summary=result.summary,
                sketch=result.sketch,
                tensors=result.tensors,
            )
        return opened

    def _scan(self, repo: Repo, sha: str, mine: OpenedModel) -> None:
        """Verify the shortlisted models, store matches, edges and the judged report."""
        with self._store.session() as session:
            own_sketch = _sketch(session.fingerprint_sketch(repo, sha))
            shared = session.shared_digests(repo, sha)
            others = [(r, f) for r, f in session.fingerprinted_models() if r.pk != repo.pk]
            commit = session.get_commit(repo, sha)
            declared = [
                e for e in session.lineage_edges(repo, sha) if e.origin is EdgeOrigin.DECLARED
            ]
            sketches = {r.pk: _sketch(session.fingerprint_sketch(r, f.commit)) for r, f in others}
        named = {e.parent_repo for e in declared if e.parent_repo is not None}
        scored = []
        for other, found in others:
            theirs = sketches[other.pk]
            closeness = similarity(own_sketch, theirs) if own_sketch and theirs else 0.0
            scored.append((other, found, closeness, shared.get((other.pk, found.commit), 0)))
        scored.sort(key=lambda s: (-(s[3] > 0), -(s[0].repo_id in named), -s[2]))
        shortlist = [
            s
            for i, s in enumerate(scored)
            if s[3] > 0
            or s[0].repo_id in named
            or (i < self._limits.candidates and s[2] >= self._limits.shortlist_floor)
        ]
        matches: list[tuple[Repo, ProvenanceMatch]] = []
        for other, found, closeness, identical in shortlist:
            try:
                theirs_opened = self._open(other, found.commit)
            except HubError:
                continue
            if theirs_opened is None:
                continue
            result = compare(mine.layout, theirs_opened.layout)
            match = evidence.match_of(
                other.repo_id, found.commit, result, closeness, identical, self._clock()
            )
            matches.append((other, match))
        if commit is None:
            raise InvalidInputError(f"{repo.repo_id}@{sha[:12]} is gone")
        self._record(repo, commit, mine, matches, declared, others)

    def _record(
        self,
        repo: Repo,
        commit: Commit,
        mine: OpenedModel,
        matches: list[tuple[Repo, ProvenanceMatch]],
        declared: list[LineageEdge],
        others: list[tuple[Repo, Fingerprint]],
    ) -> None:
        total = sum(len(p.tensors) for p in mine.parsed)
        queued = {r.pk: f for r, f in others}
        parents: list[tuple[ProvenanceMatch, LineageRelation]] = []
        with self._store.session(write=True) as session:
            for other, match in matches:
                if match.relation != Relation.DERIVED.value:
                    continue
                if not self._is_parent(session, repo, commit, other, queued[other.pk], declared):
                    continue
                same_format = queued[other.pk].summary.get("format") == mine.files.format
                parents.append((match, evidence.relation_of(match, total, same_format)))
            now = self._clock()
            session.save_provenance_matches(repo, commit.sha, matches)
            edges = evidence.measured_edges((repo.kind, repo.repo_id, commit.sha), parents, now)
            session.set_lineage_edges(repo, commit.sha, EdgeOrigin.MEASURED, edges)
            verified = {m.candidate: m for _, m in matches}
            found = evidence.findings(declared, [m for m, _ in parents], verified)
            self._licensing.reassess(session, repo, commit, found)
            session.mark_fingerprint(repo, commit.sha, FingerprintStatus.DONE, now)

    def _is_parent(
        self,
        session: MetadataSession,
        repo: Repo,
        commit: Commit,
        other: Repo,
        theirs: Fingerprint,
        declared: list[LineageEdge],
    ) -> bool:
        """Whether `other` is the parent: declared so, or there first and not declaring us."""
        if any(e.parent_repo == other.repo_id for e in declared):
            return True
        if any(e.parent_repo == repo.repo_id for e in session.lineage_edges(other, theirs.commit)):
            return False
        their_commit = session.get_commit(other, theirs.commit)
        return their_commit is not None and their_commit.created_at <= commit.created_at

    # --- reading models ----------------------------------------------------------------------
    def _open(self, repo: Repo, sha: str) -> OpenedModel | None:
        with self._store.session() as session:
            commit = session.get_commit(repo, sha)
            if commit is None:
                raise InvalidInputError(f"{repo.repo_id}@{sha[:12]} is gone")
            files = trees.flatten(session, self._cache, commit.tree)
        chosen = choose_files({p: e.size for p, e in files.items()})
        if chosen is None:
            return None

        def open_file(path: str) -> WeightFile:
            entry = files[path]
            sealed = self._unseal(entry.sha256, repo) if entry.lfs else None
            if sealed is not None:  # decrypted in memory as it is read
                return RangedWeightFile(path, sealed.size, sealed.ranges)
            local = self._contents.whole_local_file(entry.sha256, entry.size)
            if local is not None:  # mapped in place: no copy out of the page cache
                return LocalWeightFile(local, path)
            return RangedWeightFile(
                path, entry.size, lambda s, e: self._contents.open(entry.sha256, s, e)
            )

        def read_small(path: str, limit: int) -> bytes:
            entry = files[path]
            sealed = self._unseal(entry.sha256, repo) if entry.lfs else None
            if sealed is not None:
                if sealed.size > limit:
                    raise InvalidInputError(f"{path} is larger than {limit} bytes")
                return sealed.read(0, sealed.size)
            if entry.size > limit:
                raise InvalidInputError(f"{path} is larger than {limit} bytes")
            return b"".join(self._contents.open(entry.sha256))

        return open_model(chosen, open_file, read_small, files.__contains__)

    # --- what viewers see --------------------------------------------------------------------
    def view(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> ProvenanceView:
        """The fingerprint, verified matches and measured edges of a revision.

        Matches and edges to repositories the viewer may not read are left out.
        """
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            _require_sealed_access(session, principal, repo)
            found, at = self._nearest(session, repo, commit)
            matches = session.provenance_matches(repo, at) if found else []
            edges = session.lineage_edges(repo, at) if found else []
            visible = [m for m in matches if _readable(session, principal, m.candidate)]
            return ProvenanceView(
                kind,
                repo.repo_id,
                commit.sha,
                found,
                visible,
                [
                    e
                    for e in edges
                    if e.origin is EdgeOrigin.MEASURED
                    and e.parent_repo is not None
                    and _readable(session, principal, e.parent_repo)
                ],
                [e for e in edges if e.origin is EdgeOrigin.DECLARED],
            )

    def _nearest(
        self, session: MetadataSession, repo: Repo, commit: Commit
    ) -> tuple[Fingerprint | None, str]:
        """The revision's fingerprint, or that of the newest ancestor with the same weights."""
        current: Commit | None = commit
        for _ in range(_HISTORY):
            if current is None:
                break
            found = session.fingerprint(repo, current.sha)
            if found is not None:
                return found, current.sha
            current = session.get_commit(repo, current.parents[0]) if current.parents else None
        return None, commit.sha

    def compare_revisions(
        self,
        principal: Principal,
        a: tuple[RepoId, str | None],
        b: tuple[RepoId, str | None],
    ) -> tuple[Comparison, tuple[str, str]]:
        """Compare two model revisions on the hub now (both must be readable by the caller)."""
        opened = []
        shas = []
        for repo_id, revision in (a, b):
            with self._store.session() as session:
                repo = access.visible_repo(session, principal, RepoKind.MODEL, repo_id)
                access.require_files(session, principal, repo)  # the weights are read
                commit = revisions.resolve(session, repo, revision or repo.default_branch)
                _require_sealed_access(session, principal, repo)
            model = self._open(repo, commit.sha)
            if model is None:
                raise InvalidInputError(f"{repo_id}@{commit.sha[:12]} holds no readable weights")
            opened.append(model)
            shas.append(commit.sha)
        return compare(opened[0].layout, opened[1].layout), (shas[0], shas[1])


def _sketch(raw: bytes | None) -> Sketch | None:
    if raw is None:
        return None
    try:
        return Sketch.from_bytes(raw)
    except InvalidInputError:
        return None


def _require_sealed_access(session: MetadataSession, principal: Principal, repo: Repo) -> None:
    """A sealed model's fingerprints (its tensors' names and shapes) are for its namespace only.

    Judged by the repository, not the revision: an older revision's fingerprint may be shown
    for a newer one. Its matches are still shown from the other side, to those who may read the
    other model.
    """
    if repo.repo_id.namespace in access.namespaces_of(principal):
        return
    if session.repo_has_sealed_files(repo):
        raise AccessDeniedError(
            f"{repo.repo_id} is sealed: the fingerprints of its weights are shown to the members "
            f"of {repo.repo_id.namespace} only"
        )


def _readable(session: MetadataSession, principal: Principal, repo_id: RepoId) -> bool:
    repo = session.get_repo(RepoKind.MODEL, repo_id)
    return repo is not None and access.can_read(principal, repo)
