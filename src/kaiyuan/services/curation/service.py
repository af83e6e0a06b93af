"""Curation jobs: queue a run on a dataset revision, run it, commit the curated revision.

A run reads the pipeline config and every input file at one commit (resolved when the job is
queued), attributes each file to the accepted contribution whose area holds it, runs the
stages on the configured engine and commits, on the output branch, the curated Parquet
shards, the removed-record list, the report and the regenerated card, replacing the previous
output. The commit is made as the user who queued the job, if they may still write.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from kaiyuan.core.cobuilding import CONTRIBUTION_ROOT, ContributionStatus
from kaiyuan.core.errors import (
    EntryNotFoundError,
    InvalidInputError,
    NotFoundError,
    StaleParentError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.jobs import Job, JobKind
from kaiyuan.core.models import Principal, Repo, Scope
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.commits import (
    CommitRequest,
    CommitService,
    DeleteFolder,
    Operation,
    PutLfsFile,
    PutRegularFile,
)
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.curation import stages
from kaiyuan.services.curation.card import render_card
from kaiyuan.services.curation.config import (
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    CurationConfig,
    parse_config,
)
from kaiyuan.services.curation.contributions import REPORT_FILE, read_card, read_report
from kaiyuan.services.curation.engines import Engine
from kaiyuan.services.curation.pipeline import SourceFile, curate
from kaiyuan.services.curation.records import is_data_file
from kaiyuan.services.jobs import JobContext, JobService
from kaiyuan.services.reads import ReadService
from kaiyuan.services.uploads import UploadService

REMOVED_FILE = "curation/removed.parquet"
_AREA_DEPTH = 3
_COMMIT_ATTEMPTS = 3


class CurationService:
    def __init__(
        self,
        store: MetadataStore,
        cache: trees.TreeCache,
        contents: ContentStore,
        reads: ReadService,
        commits: CommitService,
        uploads: UploadService,
        jobs: JobService,
        engine: Callable[[], Engine],
        batch_rows: int = 5000,
    ) -> None:
        self._batch_rows = batch_rows
        self._store = store
        self._cache = cache
        self._contents = contents
        self._reads = reads
        self._commits = commits
        self._uploads = uploads
        self._jobs = jobs
        self._engine = engine

    def queue(self, principal: Principal, repo_id: RepoId, revision: str | None) -> Job:
        """Queue a run on the commit `revision` names now; the config is checked first."""
        at = self._reads.resolve(principal, RepoKind.DATASET, repo_id, revision, files=True)
        access.require_write(principal, repo_id.namespace)
        config = self._config(at.repo, at.commit.tree)
        with self._store.session() as session:
            revisions.resolve(session, at.repo, config.output_branch)  # exists, or 404 now
        return self._jobs.queue(
            JobKind.CURATION,
            at.repo,
            at.commit.sha,
            {"config_hash": config.hash, "output_branch": config.output_branch},
            principal.user or "",
        )

    def _config(self, repo: Repo, tree: str) -> CurationConfig:
        with self._store.session() as session:
            entry = trees.find(session, self._cache, tree, CONFIG_FILE)
        if entry is None or entry.is_dir or entry.sha256 is None:
            return parse_config(None, stages.checkers())
        del repo
        if entry.size is not None and entry.size > MAX_CONFIG_BYTES:
            raise InvalidInputError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
        raw = b"".join(self._contents.open(entry.sha256))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{CONFIG_FILE} is not UTF-8") from None
        return parse_config(text, stages.checkers(), source=entry.sha256)

    def run(self, job: Job, repo: Repo, context: JobContext) -> dict[str, Any]:
        """The job handler: curate the job's revision and commit the result."""
        with self._store.session() as session:
            commit = session.get_commit(repo, job.revision)
            if commit is None:
                raise NotFoundError(f"commit {job.revision} is gone from {repo.repo_id}")
            files = trees.flatten(session, self._cache, commit.tree)
            accepted = {
                c.number: c for c in session.contributions(repo, ContributionStatus.ACCEPTED)
            }
            principal = Principal(
                job.created_by, Scope.WRITE, tuple(session.orgs_of(job.created_by))
            )
        access.require_write(principal, repo.repo_id.namespace)
        config = self._config(repo, commit.tree)
        sources = []
        for path, entry in sorted(files.items()):
            if not config.selects(path) or not is_data_file(path):
                continue
            sources.append(_source(path, entry.sha256, entry.size, accepted, repo))
        context.log(
            f"{len(sources)} input files, config {config.hash[:16]}, engine {self._engine().name}"
        )

        def opener(source: SourceFile) -> IO[bytes]:
            return self._contents.reader(source.sha256, source.size)

        result = curate(config, sources, opener, self._engine(), context.progress, self._batch_rows)
        context.log(
            f"{result.report['records_in']} records in, {result.report['records_out']} kept"
        )
        stored: list[Operation] = []
        for number, start in enumerate(range(0, max(result.kept.num_rows, 1), config.shard_rows)):
            shard = result.kept.slice(start, config.shard_rows)
            name = f"{config.output_path}/part-{number:05d}.parquet"
            stored.append(self._stored(repo, name, shard))
        stored.append(self._stored(repo, REMOVED_FILE, result.removed))
        report = {
            **result.report,
            "revision": job.revision,
            "job": job.id,
            "engine": self._engine().name,
        }
        stored.append(
            PutRegularFile(
                REPORT_FILE,
                json.dumps(report, indent=1, ensure_ascii=False, sort_keys=True).encode(),
            )
        )
        context.progress(0.97, "committing")
        contributions = sorted(accepted.values(), key=lambda c: c.number)
        for _ in range(_COMMIT_ATTEMPTS):
            # Against the output branch as it is now: its previous output goes, its card stays.
            with self._store.session() as session:
                head = revisions.resolve(session, repo, config.output_branch)
                present = trees.flatten(session, self._cache, head.tree)
            operations = list(stored)
            if any(p.startswith(config.output_path + "/") for p in present):
                operations.insert(0, DeleteFolder(config.output_path + "/"))
            card = read_card(self._reads, principal, repo.repo_id, head.sha)
            if card.readable:
                text = render_card(card.text, contributions, report, config.output_path)
                operations.append(PutRegularFile("README.md", text.encode()))
            else:
                context.log("the card could not be read; it was left as it is")
            try:
                done = self._commits.commit(
                    principal,
                    RepoKind.DATASET,
                    repo.repo_id,
                    config.output_branch,
                    CommitRequest(
                        f"Curate {job.revision[:12]} with pipeline {config.hash[:12]}",
                        f"{result.report['records_in']} records in, "
                        f"{result.report['records_out']} kept (job {job.id})",
                        operations,
                        parent_commit=head.sha,
                    ),
                )
                break
            except StaleParentError:
                continue
        else:
            raise StaleParentError(f"{config.output_branch!r} kept moving; run again")
        return {
            "commit": done.sha,
            "branch": config.output_branch,
            "config_hash": config.hash,
            "records_in": result.report["records_in"],
            "records_out": result.report["records_out"],
        }

    def _stored(self, repo: Repo, path: str, table: pa.Table) -> PutLfsFile:
        with tempfile.TemporaryDirectory(prefix="kaiyuan-curate-") as folder:
            target = Path(folder) / "part.parquet"
            # Fixed writer settings: the same records give the same bytes on every run.
            pq.write_table(
                table, target, compression="zstd", use_dictionary=True, write_statistics=True
            )
            with target.open("rb") as handle:
                info = self._uploads.adopt(repo, handle, max_bytes=1 << 62)
        return PutLfsFile(path, info.sha256, info.size)

    def jobs_of(self, principal: Principal, repo_id: RepoId) -> list[Job]:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, RepoKind.DATASET, repo_id)
        return self._jobs.of_repo(repo, JobKind.CURATION)

    def job(self, principal: Principal, job_id: str) -> tuple[Job, RepoId]:
        """A job, for whoever may see its repository (others are told it does not exist)."""
        job = self._jobs.get(job_id)
        with self._store.session() as session:
            repo = session.repo_by_pk(job.repo_pk)
            if repo is None or not access.can_read(principal, repo):
                raise NotFoundError(f"job {job_id} not found")
        return job, repo.repo_id

    def cancel(self, principal: Principal, job_id: str) -> tuple[Job, RepoId]:
        _, repo_id = self.job(principal, job_id)
        access.require_write(principal, repo_id.namespace)
        self._jobs.cancel(job_id)
        return self.job(principal, job_id)

    def report(self, principal: Principal, repo_id: RepoId, revision: str | None) -> dict[str, Any]:
        """The report committed at a revision (default: the default branch)."""
        at = self._reads.resolve(principal, RepoKind.DATASET, repo_id, revision, files=True)
        found = read_report(self._reads, principal, repo_id, at.commit.sha)
        if found is None:
            raise EntryNotFoundError(f"{REPORT_FILE} not found at {at.commit.sha}", at.commit.sha)
        return found


def _source(path: str, sha256: str, size: int, accepted: dict[int, Any], repo: Repo) -> SourceFile:
    parts = path.split("/")
    # contributions/<organisation>/<number>/<file...>
    if len(parts) > _AREA_DEPTH and parts[0] == CONTRIBUTION_ROOT and parts[2].isdigit():
        contribution = accepted.get(int(parts[2]))
        if contribution is not None and contribution.organisation == parts[1]:
            return SourceFile(
                path,
                sha256,
                size,
                contribution.organisation,
                contribution.contributor,
                contribution.licence,
                contribution.number,
            )
    # Files the maintainers committed directly are the namespace's own.
    return SourceFile(path, sha256, size, repo.repo_id.namespace, repo.repo_id.namespace, "", None)
