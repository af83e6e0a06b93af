"""What every native API operation may answer besides success, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Path parameters as the document declares them. Only declared: the services validate names
# themselves (so that a bad one is our 400, not a framework's 422). The pattern is a little
# stricter than the rule (no two separators in a row); the `repo-name` format says the rest
# (at most 96 characters, not ending in `.git`, not a reserved word as a namespace).
NAME: dict[str, Any] = {
    "json_schema_extra": {
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9_]*([._-][A-Za-z0-9_]+)*$",
        "maxLength": 96,
        "format": "repo-name",
    }
}
REPO_KIND: dict[str, Any] = {"json_schema_extra": {"enum": ["models", "datasets"]}}


class ErrorBody(BaseModel):
    """Every error: a message for people; the status says the family."""

    error: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid input (a bad name, kind or parameter)."),
    401: _error("A token is needed, or the one sent is not valid."),
    403: _error("The token may not do this."),
    404: _error("No such thing, or not visible to this caller."),
    429: _error("Over the rate limit; see Retry-After."),
    503: _error("The database or the object store is unavailable; see Retry-After."),
}


def refuse_other_methods(router: APIRouter, paths: list[str], allowed: str = "GET") -> None:
    """405 with `Allow` for methods a path does not take (the HF catch-all would say 404)."""

    async def not_allowed() -> JSONResponse:
        return JSONResponse(
            {"error": f"method not allowed; this path takes {allowed}"},
            status_code=405,
            headers={"Allow": allowed},
        )

    taken = {method.strip() for method in allowed.split(",")}
    others = [method for method in METHODS if method not in taken]
    for path in paths:
        router.add_api_route(path, not_allowed, methods=others, include_in_schema=False)


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI request body for a handler that reads (and bounds) the JSON itself.

    Such handlers answer a body that is not JSON with the one error envelope (a declared body
    would be refused by the framework in its own format).
    """
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
