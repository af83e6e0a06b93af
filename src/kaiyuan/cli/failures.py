"""How a command fails: one line on stderr with a next step, and an exit code per family."""

from __future__ import annotations

from typing import NoReturn

import typer

from kaiyuan.client.api import HubUnreachableError
from kaiyuan.core import errors

# Exit codes per error family, so scripts can tell them apart.
_EXIT_CODES: list[tuple[type[errors.HubError], int, str]] = [
    (errors.NotFoundError, 3, "check the name with the listing commands"),
    (errors.ConflictError, 4, "pick another name, or use the existing one"),
    (errors.AuthenticationError, 5, "create a token: kaiyuan admin token create USER"),
    (errors.AccessDeniedError, 5, "use a token of a namespace member with write scope"),
    (errors.InvalidInputError, 2, "see `kaiyuan --help` for the accepted forms"),
    (errors.StorageUnavailableError, 6, "check KAIYUAN_DATABASE_URL and that the database runs"),
]


def fail(error: errors.HubError) -> NoReturn:
    if isinstance(error, HubUnreachableError):
        typer.echo(f"error: {error.message} (next: check --endpoint or $HF_ENDPOINT)", err=True)
        raise typer.Exit(6)
    for cls, code, hint in _EXIT_CODES:
        if isinstance(error, cls):
            typer.echo(f"error: {error.message} (next: {hint})", err=True)
            raise typer.Exit(code)
    typer.echo(f"error: {error.message}", err=True)
    raise typer.Exit(1)
