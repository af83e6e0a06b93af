"""Licence commands: `kaiyuan licence check` and `kaiyuan admin licence-policy`.

`check` prints a revision's findings, or a local folder's before it is pushed;
`licence-policy` sets what each check does on a push.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.cli.lineage import Endpoint, Kind, Token, split_revision
from kaiyuan.client.api import HubClient
from kaiyuan.core import errors

app = typer.Typer(no_args_is_help=True, help="Licence compliance (ask a running hub).")
policy_app = typer.Typer(no_args_is_help=True, help="What each licence check does on a push.")

_FINDINGS = 1  # exit code when a finding of severity `error` remains
_LEGAL_PREFIXES = (
    "license",
    "licence",
    "notice",
    "use_policy",
    "use-policy",
    "addendum",
    "acceptable",
    "responsible",
)
_MAX_TEXT = 256 * 1024
_MAX_PATHS = 25_000


@app.command("check")
def check(
    target: Annotated[str, typer.Argument(help="NS/NAME[@REVISION] on the hub, or a local folder")],
    kind: Kind = "model",
    as_repo: Annotated[
        str | None,
        typer.Option("--as", help="For a folder: the repository it is meant for (NS/NAME)."),
    ] = None,
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable findings.")] = False,
) -> None:
    """Print the findings (LIC-001 … LIC-015); exit 1 when any is an error."""
    client = HubClient(endpoint, token)
    folder = Path(target)
    try:
        if folder.is_dir():
            if not as_repo:
                fail(errors.InvalidInputError("checking a folder needs --as NS/NAME"))
            report = client.licence_check(draft(folder, kind, as_repo))
        else:
            repo_id, revision = split_revision(target)
            report = client.licence_report(kind, repo_id, revision)
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(render(report)) + "\n")
    if any(f["severity"] == "error" for f in report["findings"]):
        raise typer.Exit(_FINDINGS)


def draft(folder: Path, kind: str, repo_id: str) -> dict[str, Any]:
    """What the hub needs to judge a folder: the card, the file names, the legal files' text."""
    paths = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and ".git" not in p.relative_to(folder).parts
        and ".cache" not in p.relative_to(folder).parts
    )
    if len(paths) > _MAX_PATHS:
        raise errors.InvalidInputError(f"{folder} holds more than {_MAX_PATHS} files")
    card = folder / "README.md"
    texts = {
        name: (folder / name).read_bytes()[:_MAX_TEXT].decode("utf-8", "replace")
        for name in paths
        if "/" not in name and name.lower().startswith(_LEGAL_PREFIXES)
    }
    return {
        "type": kind,
        "id": repo_id,
        "card": card.read_text(encoding="utf-8", errors="replace") if card.is_file() else "",
        "paths": paths,
        "texts": dict(list(texts.items())[:8]),
    }


def render(report: dict[str, Any]) -> list[str]:
    where = f"{report['id']} @ {report['revision'][:12]}" if report["revision"] else report["id"]
    lines = [f"{where}: licence {report['licence'] or '(none)'}"]
    findings = report["findings"]
    if not findings:
        lines.append("no findings")
    for finding in findings:
        source = f" [{finding['ancestor']}]" if finding.get("ancestor") else ""
        action = " REJECTED" if finding["action"] == "reject" else ""
        lines.append(
            f"{finding['check']} {finding['severity']}{action}{source}: {finding['message']}"
        )
        lines.append(f"    fix: {finding['fix']}")
        if finding.get("clause"):
            lines.append(f"    from: {finding['clause']}")
    return lines


@policy_app.command("show")
def policy_show(
    org: Annotated[str | None, typer.Option(help="An organisation (default: the hub).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Print what each check does (the effective action; `*` marks one set in this scope)."""
    from kaiyuan.cli.main import _admin  # noqa: PLC0415 - the admin wiring lives there

    with _admin(data_dir) as hub:
        own = hub.licensing.policy(org or "")
        effective = hub.licensing.effective_policy(org or "")
    for check, action in effective.items():
        sys.stdout.write(f"{check} {action.value}{' *' if check in own else ''}\n")


@policy_app.command("set")
def policy_set(
    check_id: Annotated[str, typer.Argument(metavar="CHECK", help="LIC-001 … LIC-015")],
    action: Annotated[str, typer.Argument(help="off, warn, reject, or default")],
    org: Annotated[str | None, typer.Option(help="An organisation (default: the hub).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Set what a check does on a push, for the hub or an organisation (`default` unsets)."""
    from kaiyuan.cli.main import _admin  # noqa: PLC0415
    from kaiyuan.core.lineage import PolicyAction  # noqa: PLC0415

    with _admin(data_dir) as hub:
        chosen = None if action == "default" else PolicyAction.parse(action)
        hub.licensing.set_policy(None, org or "", {check_id: chosen})
    typer.echo(f"{check_id.upper()}: {action} for {org or 'the hub'}", err=True)
