"""Licences: the catalog, the report of a revision, a check before pushing, the policies.

- `GET /api/licences`, `GET /api/licences/{id}`: the catalog the checks use;
- `GET /api/licence-report/{models|datasets}/{ns}/{name}?revision=`: a revision's findings;
- `POST /api/licence-check`: the findings a push of a local folder would get (nothing stored);
- `GET /api/licence-policy[/{org}]`, `PUT /api/licence-policy/{org}`: off / warn / reject per
  check, for the hub (set by its operator: `kaiyuan admin licence-policy`) and per organisation.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError, NotFoundError
from kaiyuan.core.ids import RepoId, RepoKind, validate_path
from kaiyuan.core.lineage import CHECK_IDS, LicenceReport, PolicyAction
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, json_body, refuse_other_methods
from kaiyuan.http.context import caller, hub_of, read_json_object, read_model
from kaiyuan.services.licensing.policy import HUB_SCOPE
from kaiyuan.services.licensing.service import Draft

router = APIRouter(prefix="/api", tags=["licences"], responses=ERRORS)

MAX_DRAFT_PATHS = 25_000
MAX_DRAFT_TEXTS = 8
MAX_TEXT_CHARS = 256 * 1024
_LEGAL_NAME = "^(LICEN[CS]E|NOTICE|USE_POLICY|ADDENDUM)[A-Za-z0-9._-]{0,40}$"


class LicenceSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    hf_ids: list[str] = Field(alias="hfIds")
    commercial: bool
    flow_down: str = Field(alias="flowDown")
    naming_prefix: str | None = Field(alias="namingPrefix")
    confidence: str


class Catalog(BaseModel):
    version: str
    licences: list[LicenceSummary]


class LicenceEntry(BaseModel):
    """One licence with every fact the catalog holds, each with its source."""

    id: str
    facts: dict[str, Any]


class FindingBody(BaseModel):
    check: str = Field(description="LIC-001 … LIC-015.")
    severity: Literal["error", "warning", "info"]
    action: Literal["warn", "reject"] = Field(description="What the policy does with it.")
    message: str
    fix: str
    ancestor: str | None = Field(description="The repository whose licence causes it.")
    clause: str | None = Field(description="The licence (and clause) behind it.")


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    type: str
    revision: str = Field(description="The commit; empty for a check before pushing.")
    licence: str | None
    catalog_version: str = Field(alias="catalogVersion")
    rejected: bool = Field(description="A push with these findings is refused.")
    findings: list[FindingBody]
    openness: dict[str, Any] | None = Field(
        default=None,
        description="MOF class (1-3 or null), progress per class, components found, OSAID "
        "readiness and what it misses, the ancestor whose licence restricts the weights.",
    )

    @classmethod
    def of(cls, report: LicenceReport) -> Report:
        return cls(
            id=str(report.repo_id),
            type=report.kind.value,
            revision=report.commit,
            licence=report.licence,
            catalog_version=report.catalog_version,
            rejected=bool(report.rejected),
            openness=_openness(report.facts.get("openness")),
            findings=[
                FindingBody(
                    check=f.check,
                    severity=f.severity.value,
                    action="reject" if f.action is PolicyAction.REJECT else "warn",
                    message=f.message,
                    fix=f.fix,
                    ancestor=f.ancestor,
                    clause=f.clause,
                )
                for f in report.findings
            ],
        )


def _openness(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


class Policy(BaseModel):
    scope: str = Field(description="An organisation, or empty for the hub.")
    set: dict[str, Literal["off", "warn", "reject"]] = Field(description="What is set here.")
    effective: dict[str, Literal["off", "warn", "reject"]] = Field(
        description="What applies to the scope's repositories (the hub's, raised by the org's)."
    )


@router.get("/licences", response_model=Catalog, response_model_by_alias=True)
async def catalog(request: Request) -> Catalog:
    """Every licence the checks know."""
    await caller(request)
    known = hub_of(request).licensing.catalog
    return Catalog(
        version=known.version,
        licences=[
            LicenceSummary(
                id=licence.id,
                name=licence.name,
                hf_ids=list(licence.hf_ids),
                commercial=licence.commercial.allowed,
                flow_down=licence.flow_down,
                naming_prefix=licence.naming.prefix,
                confidence=licence.confidence,
            )
            for licence in known.licences()
        ],
    )


@router.get("/licences/{licence_id}", response_model=LicenceEntry)
async def licence(
    request: Request, licence_id: Annotated[str, Path(max_length=100)]
) -> LicenceEntry:
    """One licence: its facts and their sources."""
    await caller(request)
    known = hub_of(request).licensing.catalog
    found = known.find(licence_id) or known.for_hf_id(licence_id)
    if found is None:
        raise NotFoundError(f"no licence {licence_id!r} in the catalog")
    return LicenceEntry(id=found.id, facts=dataclasses.asdict(found))


@router.get(
    "/licence-report/{kind}/{namespace}/{name}",
    response_model=Report,
    response_model_by_alias=True,
)
async def report(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> Report:
    """The findings of a revision (default: the default branch's head)."""
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).licensing.report,
        principal,
        RepoKind.parse(kind),
        RepoId(namespace, name),
        revision,
    )
    return Report.of(found)


class DraftBody(BaseModel):
    """A local folder about to be pushed: its card, its file names, its legal files' text."""

    type: Literal["model", "dataset"] = "model"
    id: str = Field(
        max_length=200,
        description="The repository it is meant for (ns/name).",
        json_schema_extra={"format": "repo-id"},
    )
    card: str = Field(default="", max_length=1024 * 1024, description="README.md's text.")
    paths: list[Annotated[str, Field(json_schema_extra={"format": "repo-path"})]] = Field(
        default_factory=list, max_length=MAX_DRAFT_PATHS
    )
    texts: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_DRAFT_TEXTS,
        description="LICENSE, NOTICE, USE_POLICY… by file name (top-level names).",
        json_schema_extra={"propertyNames": {"pattern": _LEGAL_NAME}},
    )


_POLICY_BODY = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": len(CHECK_IDS),
    "propertyNames": {"enum": list(CHECK_IDS)},
    "additionalProperties": {"enum": ["off", "warn", "reject", None]},
}


@router.post(
    "/licence-check",
    response_model=Report,
    response_model_by_alias=True,
    openapi_extra=json_body(
        DraftBody.model_json_schema(ref_template="#/components/schemas/{model}")
    ),
)
async def check(request: Request) -> Report:
    """What a push of this folder would be told; nothing is stored."""
    principal = await caller(request)
    body = await read_model(request, DraftBody)
    if len(body.texts) > MAX_DRAFT_TEXTS or any(
        len(text) > MAX_TEXT_CHARS for text in body.texts.values()
    ):
        raise InvalidInputError(
            f"at most {MAX_DRAFT_TEXTS} legal files of {MAX_TEXT_CHARS} characters each"
        )
    for path in [*body.paths, *body.texts]:
        validate_path(path)
    draft = Draft(
        kind=RepoKind.parse(body.type),
        repo_id=RepoId.parse(body.id),
        card=body.card,
        paths=tuple(body.paths),
        texts=dict(body.texts),
    )
    found = await run_in_threadpool(hub_of(request).licensing.check_draft, principal, draft)
    return Report.of(found)


def _policy(request: Request, scope: str) -> Policy:
    hub = hub_of(request)
    own = hub.licensing.policy(scope)
    effective = hub.licensing.effective_policy(scope)
    return Policy(
        scope=scope,
        set={k: v.value for k, v in own.items()},
        effective={k: v.value for k, v in effective.items()},
    )


@router.get("/licence-policy", response_model=Policy)
async def hub_policy(request: Request) -> Policy:
    """The hub's policy."""
    await caller(request)
    return await run_in_threadpool(_policy, request, HUB_SCOPE)


@router.get("/licence-policy/{org}", response_model=Policy)
async def org_policy(request: Request, org: Annotated[str, Path(**NAME)]) -> Policy:
    """An organisation's policy and what applies to its repositories."""
    await caller(request)
    return await run_in_threadpool(_policy, request, org)


@router.put("/licence-policy/{org}", response_model=Policy, openapi_extra=json_body(_POLICY_BODY))
async def set_org_policy(request: Request, org: Annotated[str, Path(**NAME)]) -> Policy:
    """Set checks for an organisation: `{"LIC-006": "reject", "LIC-007": null}` (null: unset).

    For members with a write token. An organisation can make a check stricter than the hub's,
    never weaker.
    """
    principal = await caller(request)
    body = await read_json_object(request)
    if not body or len(body) > len(CHECK_IDS):
        raise InvalidInputError("send an object of check ids to off, warn, reject or null")
    changes: dict[str, PolicyAction | None] = {}
    for check, action in body.items():
        if action is not None and not isinstance(action, str):
            raise InvalidInputError(f"{check}: the action must be off, warn, reject or null")
        changes[check] = PolicyAction.parse(action) if action is not None else None
    await run_in_threadpool(hub_of(request).licensing.set_policy, principal, org, changes)
    return await run_in_threadpool(_policy, request, org)


class Acceptance(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user: str
    licence: str | None
    licence_version: str | None = Field(alias="licenceVersion")
    revision: str = Field(description="The commit whose card the user was shown.")
    accepted_at: str = Field(alias="acceptedAt", description="ISO 8601, UTC.")
    request_id: str = Field(alias="requestId")


@router.get(
    "/licence-acceptances/{kind}/{namespace}/{name}",
    response_model=list[Acceptance],
    response_model_by_alias=True,
)
async def acceptances(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
) -> list[Acceptance]:
    """Who accepted which licence of a gated repository, and when; for the namespace's writers."""
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).gating.acceptances, principal, RepoKind.parse(kind), RepoId(namespace, name)
    )
    return [
        Acceptance(
            user=a.user,
            licence=a.licence,
            licence_version=a.licence_version,
            revision=a.commit,
            accepted_at=a.accepted_at.isoformat(),
            request_id=a.request_id,
        )
        for a in found
    ]


refuse_other_methods(
    router,
    [
        "/licences",
        "/licences/{licence_id}",
        "/licence-report/{kind}/{namespace}/{name}",
        "/licence-acceptances/{kind}/{namespace}/{name}",
    ],
)
refuse_other_methods(router, ["/licence-check"], allowed="POST")
refuse_other_methods(router, ["/licence-policy/{org}"], allowed="GET, PUT")
refuse_other_methods(router, ["/licence-policy"])
