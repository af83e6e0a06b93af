"""Content scans: `GET /api/scans/{kind}/{namespace}/{name}`, every file's verdict at a revision.

Part of the native API, described at `/api/openapi.json`. The same verdicts reach the stock
clients as `securityFileStatus` in expanded tree listings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry
from kaiyuan.core.scanning import FileScan, ScanStatus
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, refuse_other_methods
from kaiyuan.http.context import caller, hub_of

router = APIRouter(prefix="/api/scans", tags=["scans"], responses=ERRORS)


class PickleImportOut(BaseModel):
    module: str
    name: str
    safety: str = Field(description="innocuous, suspicious or dangerous.")
    member: str = Field(description="Where in an archive; empty for the file itself.")


class FileVerdict(BaseModel):
    path: str
    sha256: str
    status: str = Field(description="safe, caution, unsafe, error or unscanned.")
    format: str | None = Field(description="What the bytes are (safetensors, pickle, …).")
    findings: list[str] = Field(description="Why the file is not safe, in words.")
    imports: list[PickleImportOut]
    scanner: str | None


class RevisionScans(BaseModel):
    id: str
    revision: str
    files: list[FileVerdict]


def _verdict(entry: FileEntry, scan: FileScan | None) -> FileVerdict:
    if scan is None:
        return FileVerdict(
            path=entry.path,
            sha256=entry.sha256,
            status=ScanStatus.UNSCANNED.value,
            format=None,
            findings=[],
            imports=[],
            scanner=None,
        )
    return FileVerdict(
        path=entry.path,
        sha256=entry.sha256,
        status=scan.status.value,
        format=scan.format,
        findings=list(scan.findings),
        imports=[
            PickleImportOut(module=i.module, name=i.name, safety=i.safety.value, member=i.member)
            for i in scan.imports
        ],
        scanner=scan.scanner,
    )


@router.get("/{kind}/{namespace}/{name}", response_model=RevisionScans)
async def scans(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> RevisionScans:
    """Every file of a revision (default: the default branch) with its scan verdict."""
    principal = await caller(request)
    hub = hub_of(request)
    repo_id = RepoId(namespace, name)

    def run() -> RevisionScans:
        at = hub.reads.resolve(principal, RepoKind.parse(kind), repo_id, revision)
        files = [e for e in hub.reads.list_tree(at, "", recursive=True) if isinstance(e, FileEntry)]
        verdicts = hub.scanning.verdicts(e.sha256 for e in files)
        return RevisionScans(
            id=str(repo_id),
            revision=at.commit.sha,
            files=[_verdict(e, verdicts.get(e.sha256)) for e in files],
        )

    return await run_in_threadpool(run)


refuse_other_methods(router, ["/{kind}/{namespace}/{name}"])
