"""`kaiyuan data ...`: co-built datasets — contribute, review, curate, report.

- `kaiyuan data policy NS/NAME --org A --org B [--licence cc-by-4.0]`: make a dataset
  co-built by these organisations' members (`--show` prints the policy).
- `kaiyuan data contribute NS/NAME FILE_OR_FOLDER... --org A --licence L --title T`: send data
  files (.jsonl, .json, .parquet, .txt) as one contribution; it lands on its own branch.
- `kaiyuan data contributions NS/NAME [--status pending]`; `kaiyuan data accept|reject NS/NAME N`.
- `kaiyuan data curate NS/NAME[@REV] [--wait]`: queue the curation pipeline (`--wait` follows
  the job); `kaiyuan data job ID [--cancel]`.
- `kaiyuan data report NS/NAME[@REV] [--json]`: the curation report of a revision.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.cli.lineage import Endpoint, Token, split_revision
from kaiyuan.client.api import HubClient
from kaiyuan.core import errors

app = typer.Typer(no_args_is_help=True, help="Co-built datasets: contribute, review, curate.")

Repo = Annotated[str, typer.Argument(help="NS/NAME of a dataset")]
_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
_FINISHED = {"succeeded", "failed", "cancelled"}


def _print(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


@app.command("policy")
def policy(
    repo: Repo,
    org: Annotated[
        list[str] | None, typer.Option("--org", help="May contribute; repeatable.")
    ] = None,
    licence: Annotated[
        list[str] | None, typer.Option("--licence", help="An accepted licence; repeatable.")
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Print the policy, change nothing.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Make a dataset co-built by the members of these organisations (or show who may)."""
    client = HubClient(endpoint, token)
    try:
        if show:
            _print(client.cobuild_policy(repo, None))
            return
        if not org:
            fail(errors.InvalidInputError("name at least one --org"))
        _print(client.cobuild_policy(repo, {"organisations": org, "licences": licence or []}))
    except errors.HubError as exc:
        fail(exc)


def _data_files(paths: list[Path]) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                (file.relative_to(path).as_posix(), file)
                for file in sorted(path.rglob("*"))
                if file.is_file() and file.suffix.lower() in _SUFFIXES
            )
        elif path.is_file():
            found.append((path.name, path))
        else:
            fail(errors.InvalidInputError(f"{path} is neither a file nor a folder"))
    if not found:
        fail(errors.InvalidInputError(f"no data files ({', '.join(_SUFFIXES)}) found"))
    return found


@app.command("contribute")
def contribute(
    repo: Repo,
    paths: Annotated[list[Path], typer.Argument(help="Data files or folders of them.")],
    org: Annotated[str, typer.Option("--org", help="The organisation you contribute for.")],
    licence: Annotated[str, typer.Option("--licence", help="Your licence for this part.")],
    title: Annotated[str, typer.Option("--title", help="What the contribution is.")],
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Send data files as one contribution; it waits for a maintainer's review."""
    client = HubClient(endpoint, token)
    files = _data_files(paths)
    try:
        made = client.contribute(
            repo, {"organisation": org, "licence": licence, "title": title}, files
        )
    except errors.HubError as exc:
        fail(exc)
    _print(made)


@app.command("contributions")
def contributions(
    repo: Repo,
    status: Annotated[str | None, typer.Option(help="pending, accepted or rejected")] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """List a dataset's contributions."""
    try:
        found = HubClient(endpoint, token).contributions(repo, status)
    except errors.HubError as exc:
        fail(exc)
    for c in found:
        sys.stdout.write(
            f"#{c['number']:<4} {c['status']:<9} {c['organisation']}/{c['contributor']} "
            f"{c['licence']} {c['rows']} records  {c['title']}\n"
        )


def _review(
    repo: str, number: int, verdict: str, note: str, endpoint: str | None, token: str | None
) -> None:
    try:
        _print(HubClient(endpoint, token).review(repo, number, verdict, note))
    except errors.HubError as exc:
        fail(exc)


Note = Annotated[str, typer.Option("--note", help="Why; kept with the review.")]


@app.command("accept")
def accept(
    repo: Repo, number: int, note: Note = "", endpoint: Endpoint = None, token: Token = None
) -> None:
    """Accept a contribution: its files land on main."""
    _review(repo, number, "accept", note, endpoint, token)


@app.command("reject")
def reject(
    repo: Repo, number: int, note: Note = "", endpoint: Endpoint = None, token: Token = None
) -> None:
    """Reject a contribution; main is untouched."""
    _review(repo, number, "reject", note, endpoint, token)


def _follow(client: HubClient, job: dict[str, Any]) -> dict[str, Any]:
    shown = ""
    while job["status"] not in _FINISHED:
        line = f"{job['status']} {job['progress']:.0%} {job['stage']}"
        if line != shown:
            sys.stderr.write(line + "\n")
            shown = line
        time.sleep(1.0)
        job = client.job(job["id"])
    return job


@app.command("curate")
def curate(
    repo: Annotated[str, typer.Argument(help="NS/NAME or NS/NAME@REVISION")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Queue the curation pipeline (curation.yaml in the repository) on a revision."""
    repo_id, revision = split_revision(repo)
    client = HubClient(endpoint, token)
    try:
        job = client.curate(repo_id, revision)
        if wait:
            job = _follow(client, job)
    except errors.HubError as exc:
        fail(exc)
    _print({k: job[k] for k in ("id", "status", "revision", "result", "error")})
    if job["status"] == "failed":
        raise typer.Exit(1)


@app.command("job")
def job(
    job_id: str,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel it.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Show a job (its log too), or cancel it."""
    client = HubClient(endpoint, token)
    try:
        _print(client.cancel_job(job_id) if cancel else client.job(job_id))
    except errors.HubError as exc:
        fail(exc)


@app.command("report")
def report(
    repo: Annotated[str, typer.Argument(help="NS/NAME or NS/NAME@REVISION")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """The curation report: records per stage, removals per contributor, PII counts."""
    repo_id, revision = split_revision(repo)
    try:
        found = HubClient(endpoint, token).curation_report(repo_id, revision)
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        _print(found)
        return
    out = sys.stdout.write
    out(f"{repo_id} at {found.get('revision', '')[:12]}: pipeline {found['config_hash'][:16]}\n")
    out(f"{found['records_in']} records in, {found['records_out']} kept\n\n")
    out(f"{'stage':<14}{'in':>9}{'removed':>9}{'out':>9}  by organisation\n")
    for name, stage in found["stages"].items():
        by = ", ".join(f"{k} {v}" for k, v in stage["removed_by_organisation"].items())
        out(f"{name:<14}{stage['input']:>9}{stage['removed']:>9}{stage['output']:>9}  {by}\n")
    if found.get("pii_redacted"):
        out(
            "\nPII redacted: "
            + ", ".join(f"{k} {v}" for k, v in found["pii_redacted"].items())
            + "\n"
        )
    out("\ncontributors:\n")
    for c in found["contributors"]:
        out(
            f"  {c['organisation']}/{c['contributor']} #{c['contribution']}: "
            f"{c['kept']}/{c['records']} kept, share {c['share']:.1%}\n"
        )
