"""The hub's signatures of revisions: made at each commit, handed out with the hub's key.

A commit is signed inside its transaction (`review`), so a revision never exists unsigned;
revisions committed before signing existed are signed the first time someone asks.
"""

from __future__ import annotations

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Commit, FileEntry, Principal, Repo
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.core.scanning import RevisionSignature
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.distribution.signing import HubKey, sign_revision

HUB = "hub"


class SigningService:
    def __init__(
        self, store: MetadataStore, cache: trees.TreeCache, key: HubKey, clock: Clock = utc_now
    ) -> None:
        self._store = store
        self._cache = cache
        self._key = key
        self._clock = clock

    @property
    def key(self) -> HubKey:
        return self._key

    def review(
        self,
        session: MetadataSession,
        principal: Principal,  # noqa: ARG002 - the CommitReview protocol
        repo: Repo,
        branch: str,  # noqa: ARG002
        files: dict[str, FileEntry],
        commit: Commit,
    ) -> None:
        """Sign the commit about to land (part of its transaction)."""
        session.save_signature(repo, self._sign(repo, commit.sha, files))

    def signature(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> RevisionSignature:
        """The hub's bundle for a revision the caller may read (default: the default branch)."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            found = session.signature(repo, commit.sha, HUB)
            if found is not None:
                return found
            files = trees.flatten(session, self._cache, commit.tree)
        made = self._sign(repo, commit.sha, files)
        with self._store.session(write=True) as session:
            if not session.save_signature(repo, made):  # another request signed it first
                stored = session.signature(repo, commit.sha, HUB)
                return stored if stored is not None else made
        return made

    def _sign(self, repo: Repo, sha: str, files: dict[str, FileEntry]) -> RevisionSignature:
        # The statement's subject names the repository and commit, so a bundle cannot be
        # passed off as another repository's or another revision's.
        bundle = sign_revision(
            self._key, f"{repo.repo_id}@{sha}", {p: e.sha256 for p, e in files.items()}
        )
        return RevisionSignature(sha, HUB, self._key.key_id, bundle, self._clock())
