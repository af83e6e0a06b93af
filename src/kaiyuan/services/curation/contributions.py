"""Contributions to co-built datasets: intake on their own branch, review, and the card.

A member of an organisation the repository's policy names contributes files with a licence.
They are checked by the same reader curation uses (every row must be readable), stored, and
committed by the hub on the contributor's behalf to the branch `contrib/<number>`, under the
area `contributions/<organisation>/<number>/`; the contributor needs no write access to the
repository. A maintainer accepts a contribution (its files land on `main` in one commit, with
the card's contributor list regenerated) or rejects it (main is untouched).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from kaiyuan.core.cobuilding import (
    MAX_CONTRIBUTION_FILES,
    MAX_NOTE,
    MAX_TITLE,
    CoBuildPolicy,
    ContributedFile,
    Contribution,
    ContributionStatus,
    checked_licence,
    checked_policy,
    contribution_area,
    contribution_branch,
)
from kaiyuan.core.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_path
from kaiyuan.core.models import Principal, Ref, RefKind, Repo, Scope
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services import access, cards, revisions
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.commits import CommitRequest, CommitService, PutLfsFile, PutRegularFile
from kaiyuan.services.curation.card import render_card
from kaiyuan.services.curation.records import is_data_file, read_records
from kaiyuan.services.reads import ReadService
from kaiyuan.services.uploads import UploadService

MAX_CARD_BYTES = 1024 * 1024
MAX_REPORT_BYTES = 16 * 1024 * 1024
REPORT_FILE = "curation/report.json"
_CLAIM_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """A file a contributor sent: its path inside the contribution and a seekable stream."""

    path: str
    stream: IO[bytes]


class ContributionService:
    def __init__(
        self,
        store: MetadataStore,
        commits: CommitService,
        uploads: UploadService,
        reads: ReadService,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._commits = commits
        self._uploads = uploads
        self._reads = reads
        self._clock = clock

    # --- policy -------------------------------------------------------------------------------
    def set_policy(
        self, principal: Principal, repo_id: RepoId, organisations: object, licences: object
    ) -> CoBuildPolicy:
        """Make a dataset co-built (or change who may contribute); for its maintainers."""
        policy = checked_policy(organisations, licences, principal.user or "", self._clock())
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            access.require_write(principal, repo_id.namespace)
            session.set_cobuild_policy(repo, policy, self._clock())
        return policy

    def policy(self, principal: Principal, repo_id: RepoId) -> CoBuildPolicy | None:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            return session.cobuild_policy(repo)

    # --- intake ---------------------------------------------------------------------------------
    def contribute(
        self,
        principal: Principal,
        repo_id: RepoId,
        organisation: str,
        licence: str,
        title: str,
        files: Sequence[IncomingFile],
    ) -> Contribution:
        """Check, store and commit a contribution to its own branch; it waits for review."""
        if principal.user is None:
            raise AuthenticationError(
                "contributing needs a token: send 'Authorization: Bearer <token>'"
            )
        if principal.scope is not Scope.WRITE:
            raise AccessDeniedError("this token has read scope; contributing needs a write token")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            raise InvalidInputError(f"a contribution needs a title of 1 to {MAX_TITLE} characters")
        if not files or len(files) > MAX_CONTRIBUTION_FILES:
            raise InvalidInputError(f"a contribution holds 1 to {MAX_CONTRIBUTION_FILES} files")
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            access.require_files(session, principal, repo)
            policy = session.cobuild_policy(repo)
        if policy is None:
            raise AccessDeniedError(
                f"{repo_id} is not a co-built dataset; it takes no contributions"
            )
        if organisation not in policy.organisations:
            raise AccessDeniedError(
                f"{repo_id} takes contributions from {', '.join(policy.organisations)}"
            )
        if organisation not in principal.orgs:
            raise AccessDeniedError(f"user {principal.user!r} is not a member of {organisation!r}")
        checked_licence(licence, policy.licences)
        checked = self._check_files(files)
        stored = [
            (path, self._uploads.adopt(repo, f.stream), rows)
            for (path, rows), f in zip(checked, files, strict=True)
        ]
        number, base = self._claim_branch(repo)
        area = contribution_area(organisation, number)
        try:
            commit = self._commits.commit(
                principal,
                RepoKind.DATASET,
                repo_id,
                contribution_branch(number),
                CommitRequest(
                    f"Contribution {number} from {organisation}: {title.strip()}",
                    f"Licence: {licence}",
                    [PutLfsFile(f"{area}/{p}", info.sha256, info.size) for p, info, _ in stored],
                    parent_commit=base,  # exactly on the head the branch was made at
                ),
                write_checked=True,
            )
            contribution = Contribution(
                number=number,
                organisation=organisation,
                contributor=principal.user,
                licence=licence,
                title=title.strip(),
                status=ContributionStatus.PENDING,
                branch=contribution_branch(number),
                commit=commit.sha,
                files=tuple(
                    ContributedFile(f"{area}/{path}", info.sha256, info.size, rows)
                    for path, info, rows in stored
                ),
                created_at=self._clock(),
            )
            with self._store.session(write=True) as session:
                session.add_contribution(repo, contribution)
        except BaseException:
            # A refused commit (a scan verdict, say) leaves no branch behind.
            with self._store.session(write=True) as session:
                session.delete_ref(repo, RefKind.BRANCH, contribution_branch(number))
            raise
        return contribution

    def _check_files(self, files: Sequence[IncomingFile]) -> list[tuple[str, int]]:
        seen: set[str] = set()
        checked: list[tuple[str, int]] = []
        for incoming in files:
            path = incoming.path.strip("/")
            validate_path(path)
            if path in seen:
                raise InvalidInputError(f"{path!r} appears twice in the contribution")
            seen.add(path)
            clash = next(
                (p for p in seen if p.startswith(path + "/") or path.startswith(p + "/")), None
            )
            if clash is not None:
                raise InvalidInputError(f"{path!r} and {clash!r}: a file cannot also be a folder")
            if not is_data_file(path):
                raise InvalidInputError(
                    f"{path!r}: contributions are .jsonl, .json, .parquet or .txt files"
                )
            rows = sum(1 for _ in read_records(path, incoming.stream))
            if rows == 0:
                raise InvalidInputError(f"{path!r} holds no records")
            incoming.stream.seek(0)
            checked.append((path, rows))
        return checked

    def _claim_branch(self, repo: Repo) -> tuple[int, str]:
        """The next contribution number, with its branch made at main's head (and that head)."""
        for _ in range(_CLAIM_ATTEMPTS):
            with self._store.session(write=True) as session:
                number = session.next_contribution_number(repo)
                while session.get_ref(repo, RefKind.BRANCH, contribution_branch(number)):
                    number += 1
                head = revisions.resolve(session, repo, repo.default_branch)
                try:
                    session.add_ref(
                        repo, Ref(RefKind.BRANCH, contribution_branch(number), head.sha)
                    )
                except AlreadyExistsError:
                    continue  # another contribution took the number meanwhile
                return number, head.sha
        raise ConflictError("could not number the contribution; try again")

    # --- review ---------------------------------------------------------------------------------
    def list(
        self, principal: Principal, repo_id: RepoId, status: str | None = None
    ) -> list[Contribution]:
        wanted = None
        if status is not None:
            try:
                wanted = ContributionStatus(status)
            except ValueError:
                raise InvalidInputError("status must be pending, accepted or rejected") from None
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            return session.contributions(repo, wanted)

    def get(self, principal: Principal, repo_id: RepoId, number: int) -> Contribution:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            found = session.contribution(repo, number)
        if found is None:
            raise NotFoundError(f"contribution {number} not found in {repo_id}")
        return found

    def accept(
        self, principal: Principal, repo_id: RepoId, number: int, note: str = ""
    ) -> Contribution:
        """Bring the contribution's files onto main, with the card's contributors regenerated."""
        contribution = self._pending(principal, repo_id, number, note)
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            accepted = [*session.contributions(repo, ContributionStatus.ACCEPTED), contribution]
        operations: list[PutLfsFile | PutRegularFile] = [
            PutLfsFile(f.path, f.sha256, f.size) for f in contribution.files
        ]
        card = read_card(self._reads, principal, repo_id, "main")
        if card.readable:  # a card the hub cannot read is the maintainers' to fix, not to lose
            report = read_report(self._reads, principal, repo_id, "main")
            text = render_card(card.text, accepted, report, "data" if report else None)
            operations.append(PutRegularFile("README.md", text.encode()))
        commit = self._commits.commit(
            principal,
            RepoKind.DATASET,
            repo_id,
            "main",
            CommitRequest(
                f"Accept contribution {number} from {contribution.organisation}",
                f"{contribution.title}\n\nLicence: {contribution.licence}",
                list(operations),
            ),
        )
        self._review(repo_id, principal, number, ContributionStatus.ACCEPTED, note, commit.sha)
        return self.get(principal, repo_id, number)

    def reject(
        self, principal: Principal, repo_id: RepoId, number: int, note: str = ""
    ) -> Contribution:
        self._pending(principal, repo_id, number, note)
        self._review(repo_id, principal, number, ContributionStatus.REJECTED, note, "")
        return self.get(principal, repo_id, number)

    def _pending(
        self, principal: Principal, repo_id: RepoId, number: int, note: str
    ) -> Contribution:
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise InvalidInputError(f"a review note is at most {MAX_NOTE} characters")
        contribution = self.get(principal, repo_id, number)
        access.require_write(principal, repo_id.namespace)
        if contribution.status is not ContributionStatus.PENDING:
            raise ConflictError(f"contribution {number} was already {contribution.status.value}")
        return contribution

    def _review(
        self,
        repo_id: RepoId,
        principal: Principal,
        number: int,
        status: ContributionStatus,
        note: str,
        merged: str,
    ) -> None:
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
            done = session.review_contribution(
                repo, number, status, principal.user or "", self._clock(), note, merged
            )
        if not done:
            raise ConflictError(f"contribution {number} was reviewed by someone else meanwhile")


@dataclass(frozen=True, slots=True)
class Card:
    text: str | None  # None: there is none
    readable: bool  # False: one exists but cannot be read, and must not be replaced


def read_card(reads: ReadService, principal: Principal, repo_id: RepoId, revision: str) -> Card:
    """The dataset card at a revision, if there is one the hub can read and rewrite."""
    at = reads.resolve(principal, RepoKind.DATASET, repo_id, revision, files=True)
    try:
        entry = reads.file(at, "README.md")
    except NotFoundError:
        return Card(None, readable=True)
    try:
        text = reads.read_small(entry, MAX_CARD_BYTES).decode("utf-8")
        cards.parse_card(text)
    except (InvalidInputError, UnicodeDecodeError):
        return Card(None, readable=False)
    return Card(text, readable=True)


def read_report(
    reads: ReadService, principal: Principal, repo_id: RepoId, revision: str
) -> dict[str, Any] | None:
    """The curation report committed at a revision, or None."""
    at = reads.resolve(principal, RepoKind.DATASET, repo_id, revision, files=True)
    try:
        data = json.loads(reads.read_small(reads.file(at, REPORT_FILE), MAX_REPORT_BYTES))
    except NotFoundError:
        return None
    except (InvalidInputError, ValueError):
        raise InvalidInputError(f"{REPORT_FILE} at {revision} is not a report") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{REPORT_FILE} at {revision} is not a report")
    return data
