"""Co-built datasets and their curation: policy, contributions, review, curation jobs, report.

- `GET|PUT /api/cobuilding/datasets/{ns}/{name}`: who may contribute (PUT: maintainers).
- `POST .../contributions`: a contribution (multipart: `organisation`, `licence`, `title`,
  and one `files` part per file, named by its path); `GET .../contributions[/{n}]`.
- `POST .../contributions/{n}/accept|reject`: a maintainer's review.
- `POST /api/curation/datasets/{ns}/{name}`: queue a curation run; `GET .../jobs`; `GET
  .../report`: the curation report of a revision.
- `GET /api/jobs/{id}`, `POST /api/jobs/{id}/cancel`.

Part of the native API, described at `/api/openapi.json`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from kaiyuan.core.cobuilding import MAX_CONTRIBUTION_FILES, CoBuildPolicy, Contribution
from kaiyuan.core.errors import AccessDeniedError, InvalidInputError, TooLargeError
from kaiyuan.core.ids import RepoId
from kaiyuan.core.jobs import Job
from kaiyuan.http.api.schema import ERRORS, NAME, json_body, refuse_other_methods
from kaiyuan.http.context import caller, hub_of, read_model
from kaiyuan.services import access
from kaiyuan.services.curation.contributions import IncomingFile

router = APIRouter(prefix="/api", tags=["co-building"], responses=ERRORS)

_DATASET = "/cobuilding/datasets/{namespace}/{name}"
_CURATION = "/curation/datasets/{namespace}/{name}"
Namespace = Annotated[str, Path(**NAME)]
Name = Annotated[str, Path(**NAME)]
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]
_ACCOUNT = NAME["json_schema_extra"]["pattern"]
_LICENCE = r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$"


class PolicyBody(BaseModel):
    organisations: list[Annotated[str, Field(max_length=96, pattern=_ACCOUNT)]] = Field(
        min_length=1, max_length=100
    )
    licences: list[Annotated[str, Field(pattern=_LICENCE)]] = Field(
        default_factory=list, max_length=100, description="Accepted licences; empty: any."
    )


class PolicyOut(BaseModel):
    organisations: list[str]
    licences: list[str]
    updated_by: str
    updated_at: datetime | None


class FileOut(BaseModel):
    path: str
    sha256: str
    size: int
    rows: int


class ContributionOut(BaseModel):
    number: int
    organisation: str
    contributor: str
    licence: str
    title: str
    status: str
    branch: str
    commit: str
    files: list[FileOut]
    rows: int
    size: int
    created_at: datetime
    reviewed_by: str
    reviewed_at: datetime | None
    review_note: str
    merged_commit: str


class ReviewBody(BaseModel):
    note: str = Field(default="", max_length=2000)


class CurateBody(BaseModel):
    revision: str | None = Field(default=None, max_length=256)


class JobOut(BaseModel):
    id: str
    kind: str
    repo: str
    revision: str
    status: str
    progress: float
    stage: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    params: dict[str, Any]
    result: dict[str, Any]
    error: str
    log: str


def _policy(policy: CoBuildPolicy) -> PolicyOut:
    return PolicyOut(
        organisations=list(policy.organisations),
        licences=list(policy.licences),
        updated_by=policy.updated_by,
        updated_at=policy.updated_at,
    )


def _contribution(c: Contribution) -> ContributionOut:
    return ContributionOut(
        number=c.number,
        organisation=c.organisation,
        contributor=c.contributor,
        licence=c.licence,
        title=c.title,
        status=c.status.value,
        branch=c.branch,
        commit=c.commit,
        files=[FileOut(path=f.path, sha256=f.sha256, size=f.size, rows=f.rows) for f in c.files],
        rows=c.rows,
        size=c.size,
        created_at=c.created_at,
        reviewed_by=c.reviewed_by,
        reviewed_at=c.reviewed_at,
        review_note=c.review_note,
        merged_commit=c.merged_commit,
    )


def _job(job: Job, repo: str) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind.value,
        repo=repo,
        revision=job.revision,
        status=job.status.value,
        progress=job.progress,
        stage=job.stage,
        created_by=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        params=job.params,
        result=job.result,
        error=job.error,
        log=job.log,
    )


@router.get(_DATASET, response_model=PolicyOut | None)
async def get_policy(request: Request, namespace: Namespace, name: Name) -> PolicyOut | None:
    """Who may contribute to the dataset (null: it is not co-built)."""
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).contributions.policy, principal, RepoId(namespace, name)
    )
    return _policy(found) if found else None


@router.put(
    _DATASET,
    response_model=PolicyOut,
    openapi_extra=json_body(
        PolicyBody.model_json_schema(ref_template="#/components/schemas/{model}")
    ),
)
async def set_policy(request: Request, namespace: Namespace, name: Name) -> PolicyOut:
    """Make the dataset co-built by these organisations' members (its maintainers)."""
    principal = await caller(request)
    body = await read_model(request, PolicyBody)
    made = await run_in_threadpool(
        hub_of(request).contributions.set_policy,
        principal,
        RepoId(namespace, name),
        body.organisations,
        body.licences,
    )
    return _policy(made)


@router.post(
    f"{_DATASET}/contributions",
    response_model=ContributionOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["organisation", "licence", "title", "files"],
                        "additionalProperties": False,
                        "properties": {
                            "organisation": {"type": "string", "pattern": _ACCOUNT},
                            "licence": {"type": "string", "pattern": _LICENCE},
                            "title": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 200,
                                "pattern": r"\S",
                            },
                            "files": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_CONTRIBUTION_FILES,
                                "items": {"type": "string", "format": "binary"},
                            },
                        },
                    }
                }
            },
        }
    },
)
async def contribute(request: Request, namespace: Namespace, name: Name) -> ContributionOut:
    """Contribute data files (each a `files` part whose file name is its path)."""
    principal = await caller(request)
    hub = hub_of(request)
    if principal.user is None:
        # Refuse before reading a body an anonymous caller could make as large as it likes.
        access.require_write(principal, namespace)
    repo_id = RepoId(namespace, name)
    if await run_in_threadpool(hub.contributions.policy, principal, repo_id) is None:
        raise AccessDeniedError(f"{repo_id} is not a co-built dataset; it takes no contributions")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise InvalidInputError("a contribution needs a Content-Length header")
    if int(length) > hub.settings.max_contribution_bytes:
        raise TooLargeError(
            f"a contribution may be at most {hub.settings.max_contribution_bytes} bytes"
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInputError("a contribution is sent as multipart/form-data")
    try:
        form = await request.form(max_files=MAX_CONTRIBUTION_FILES, max_fields=10)
    except Exception as exc:  # noqa: BLE001 - the multipart parser's errors are several types
        raise InvalidInputError(f"the multipart body could not be read: {exc}") from None
    try:
        fields = {key: form.get(key) for key in ("organisation", "licence", "title")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise InvalidInputError("organisation, licence and title are required text fields")
        parts = form.getlist("files")
        if not parts or not all(isinstance(p, UploadFile) for p in parts):
            raise InvalidInputError("send each file as a 'files' part with its path as file name")
        files = [
            IncomingFile(str(p.filename or ""), p.file) for p in parts if isinstance(p, UploadFile)
        ]
        made = await run_in_threadpool(
            hub.contributions.contribute,
            principal,
            RepoId(namespace, name),
            str(fields["organisation"]),
            str(fields["licence"]),
            str(fields["title"]),
            files,
        )
    finally:
        await form.close()
    return _contribution(made)


@router.get(f"{_DATASET}/contributions", response_model=list[ContributionOut])
async def list_contributions(
    request: Request,
    namespace: Namespace,
    name: Name,
    status: Annotated[str | None, Query(pattern="^(pending|accepted|rejected)$")] = None,
) -> list[ContributionOut]:
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).contributions.list, principal, RepoId(namespace, name), status
    )
    return [_contribution(c) for c in found]


@router.get(f"{_DATASET}/contributions/{{number}}", response_model=ContributionOut)
async def get_contribution(
    request: Request, namespace: Namespace, name: Name, number: Number
) -> ContributionOut:
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).contributions.get, principal, RepoId(namespace, name), number
    )
    return _contribution(found)


async def _review(
    request: Request, namespace: str, name: str, number: int, accept: bool
) -> ContributionOut:
    principal = await caller(request)
    body = await read_model(request, ReviewBody)
    service = hub_of(request).contributions
    review = service.accept if accept else service.reject
    done = await run_in_threadpool(review, principal, RepoId(namespace, name), number, body.note)
    return _contribution(done)


_REVIEW = json_body(ReviewBody.model_json_schema(ref_template="#/components/schemas/{model}"))


@router.post(
    f"{_DATASET}/contributions/{{number}}/accept",
    response_model=ContributionOut,
    openapi_extra=_REVIEW,
)
async def accept(
    request: Request, namespace: Namespace, name: Name, number: Number
) -> ContributionOut:
    """Bring the contribution onto main (maintainers)."""
    return await _review(request, namespace, name, number, accept=True)


@router.post(
    f"{_DATASET}/contributions/{{number}}/reject",
    response_model=ContributionOut,
    openapi_extra=_REVIEW,
)
async def reject(
    request: Request, namespace: Namespace, name: Name, number: Number
) -> ContributionOut:
    """Turn the contribution down; main is untouched (maintainers)."""
    return await _review(request, namespace, name, number, accept=False)


@router.post(
    _CURATION,
    response_model=JobOut,
    status_code=202,
    openapi_extra=json_body(
        CurateBody.model_json_schema(ref_template="#/components/schemas/{model}")
    ),
)
async def curate(request: Request, namespace: Namespace, name: Name) -> JobOut:
    """Queue a curation run on a revision (default: main); its maintainers."""
    principal = await caller(request)
    body = await read_model(request, CurateBody)
    repo_id = RepoId(namespace, name)
    job = await run_in_threadpool(hub_of(request).curation.queue, principal, repo_id, body.revision)
    return _job(job, str(repo_id))


@router.get(f"{_CURATION}/jobs", response_model=list[JobOut])
async def jobs(request: Request, namespace: Namespace, name: Name) -> list[JobOut]:
    principal = await caller(request)
    repo_id = RepoId(namespace, name)
    found = await run_in_threadpool(hub_of(request).curation.jobs_of, principal, repo_id)
    return [_job(j, str(repo_id)) for j in found]


@router.get(f"{_CURATION}/report")
async def report(
    request: Request,
    namespace: Namespace,
    name: Name,
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    """The curation report committed with a revision (default: main)."""
    principal = await caller(request)
    return await run_in_threadpool(
        hub_of(request).curation.report, principal, RepoId(namespace, name), revision
    )


@router.get("/jobs/{job_id}", response_model=JobOut)
async def job(request: Request, job_id: JobId) -> JobOut:
    principal = await caller(request)
    found, repo_id = await run_in_threadpool(hub_of(request).curation.job, principal, job_id)
    return _job(found, str(repo_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel(request: Request, job_id: JobId) -> JobOut:
    """Cancel a queued job, or ask a running one to stop (maintainers)."""
    principal = await caller(request)
    found, repo_id = await run_in_threadpool(hub_of(request).curation.cancel, principal, job_id)
    return _job(found, str(repo_id))


refuse_other_methods(router, [_DATASET], "GET, PUT")
refuse_other_methods(router, [f"{_DATASET}/contributions"], "GET, POST")
refuse_other_methods(router, [f"{_DATASET}/contributions/{{number}}"])
refuse_other_methods(
    router,
    [f"{_DATASET}/contributions/{{number}}/accept", f"{_DATASET}/contributions/{{number}}/reject"],
    "POST",
)
refuse_other_methods(router, [_CURATION, "/jobs/{job_id}/cancel"], "POST")
refuse_other_methods(router, [f"{_CURATION}/jobs", f"{_CURATION}/report", "/jobs/{job_id}"])
