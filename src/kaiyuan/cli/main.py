"""`kaiyuan`: serve the hub and administer accounts. Errors print one line and a next step."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from kaiyuan.bootstrap import Hub, build_hub, migrate_database
from kaiyuan.cli import data, licence, lineage, provenance, sealed, verify
from kaiyuan.cli.failures import fail as _fail
from kaiyuan.config import Settings, load_settings
from kaiyuan.core import errors
from kaiyuan.services.accounts import parse_scope

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
admin = typer.Typer(no_args_is_help=True, help="Administer the hub's data directly.")
users = typer.Typer(no_args_is_help=True, help="Users.")
orgs = typer.Typer(no_args_is_help=True, help="Organisations.")
tokens = typer.Typer(no_args_is_help=True, help="Access tokens.")
app.add_typer(admin, name="admin")
admin.add_typer(users, name="user")
admin.add_typer(orgs, name="org")
admin.add_typer(tokens, name="token")
app.add_typer(lineage.app, name="lineage")
app.add_typer(licence.app, name="licence")
app.add_typer(provenance.app, name="provenance")
app.add_typer(sealed.app, name="sealed")
app.add_typer(data.app, name="data")
app.command("verify")(verify.verify)
admin.add_typer(licence.policy_app, name="licence-policy")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $KAIYUAN_DATA_DIR or ~/.kaiyuan)."),
]


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return load_settings(**values)
    except errors.HubError as exc:
        _fail(exc)


@contextlib.contextmanager
def _admin(data_dir: Path | None) -> Iterator[Hub]:
    """The hub over the data directory for one admin command; domain errors end the command."""
    hub = _build(_settings(data_dir))
    try:
        yield hub
    except errors.HubError as exc:
        _fail(exc)
    finally:
        hub.close()


def _build(settings: Settings) -> Hub:
    try:
        return build_hub(settings)
    except errors.HubError as exc:
        _fail(exc)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8000).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Start the hub; creates or migrates the database first."""
    from kaiyuan.http import serving  # noqa: PLC0415 - only the server needs uvicorn
    from kaiyuan.http.app import create_app  # noqa: PLC0415

    settings = _settings(data_dir, host=host, port=port)
    hub = _build(settings)
    try:
        hub.sealing.check_keys()  # a process given another key ring than the others stops here
    except errors.HubError as exc:
        hub.close()
        _fail(exc)
    typer.echo(
        f"Kaiyuan serving {settings.data_dir} on http://{settings.host}:{settings.port} "
        f"(database: {hub.settings.effective_database_url.split('://', 1)[0]})",
        err=True,
    )
    try:
        serving.run(
            create_app(hub),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    finally:
        hub.close()


@users.command("create")
def user_create(name: str, data_dir: DataDir = None) -> None:
    """Create a user (their name is also their namespace)."""
    with _admin(data_dir) as hub:
        hub.accounts.create_user(name)
    typer.echo(f"created user {name}", err=True)


@orgs.command("create")
def org_create(
    name: str,
    member: Annotated[
        list[str] | None, typer.Option("--member", help="A member (repeatable).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an organisation with existing users as members."""
    with _admin(data_dir) as hub:
        hub.accounts.create_org(name, member or [])
    typer.echo(f"created organisation {name}", err=True)


@orgs.command("add-member")
def org_add_member(name: str, user: str, data_dir: DataDir = None) -> None:
    """Add an existing user to an organisation."""
    with _admin(data_dir) as hub:
        hub.accounts.add_member(name, user)


@tokens.command("create")
def token_create(
    user: str,
    scope: Annotated[str, typer.Option(help="read or write")] = "write",
    name: Annotated[str, typer.Option(help="A label shown by whoami.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an access token; prints only the token on stdout."""
    with _admin(data_dir) as hub:
        secret = hub.accounts.create_token(user, parse_scope(scope), name)
    sys.stdout.write(secret + "\n")


@tokens.command("delete")
def token_delete(token: str, data_dir: DataDir = None) -> None:
    """Revoke a token (its secret or the 16 hex characters after `ky_`); it stops at once."""
    with _admin(data_dir) as hub:
        hub.accounts.delete_token(token)
    typer.echo("token deleted")


_KIB = 1024
_FSCK_PROBLEMS = 7


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < _KIB:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.2f} {unit}"
        amount /= _KIB
    return f"{amount:.2f} TiB"


@admin.command("migrate")
def admin_migrate(data_dir: DataDir = None) -> None:
    """Bring the database schema to this version's newest revision (safe to run repeatedly).

    `serve` does this at start too; in a fleet, run it once before rolling out a new version.
    """
    settings = _settings(data_dir)
    try:
        before, after, known = migrate_database(settings)
    except errors.HubError as exc:
        _fail(exc)
    if not known:
        sys.stdout.write(f"schema at {after}, newer than this version knows: left as it is\n")
    elif before == after:
        sys.stdout.write(f"schema already at {after}\n")
    else:
        sys.stdout.write(f"schema migrated from {before or 'empty'} to {after}\n")


@admin.command("storage")
def admin_storage(
    repo: Annotated[
        str | None, typer.Option("--repo", help="One repository, NAMESPACE/NAME.")
    ] = None,
    repo_type: Annotated[str, typer.Option("--type", help="model or dataset")] = "model",
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Every repository of a user or org.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Logical bytes (what is held) vs stored bytes (what it occupies), hub-wide by default."""
    from kaiyuan.core.ids import RepoId, RepoKind  # noqa: PLC0415

    with _admin(data_dir) as hub:
        if repo is not None:
            usage = hub.usage.of_repo(RepoKind.parse(repo_type), RepoId.parse(repo))
            rows: dict[str, object] = {"scope": f"{repo_type} {repo}"}
        elif namespace is not None:
            usage = hub.usage.of_namespace(namespace)
            rows = {"scope": f"namespace {namespace}"}
        else:
            total = hub.usage.hub()
            usage = total.held
            rows = {
                "scope": "hub",
                "physical_bytes": total.physical_bytes,
                "unreferenced_bytes": total.unreferenced_bytes,
                **total.totals,
            }
    report: dict[str, object] = {
        **rows,
        "files": usage.files,
        "logical_bytes": usage.logical_bytes,
        "stored_bytes": usage.stored_bytes,
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    ratio = usage.logical_bytes / usage.stored_bytes if usage.stored_bytes else 1.0
    for key, value in report.items():
        shown = _size(value) if key.endswith("_bytes") and isinstance(value, int) else value
        sys.stdout.write(f"{key:20} {shown}\n")
    sys.stdout.write(f"{'dedup_ratio':20} {ratio:.2f}x\n")


@admin.command("gc")
def admin_gc(
    grace_hours: Annotated[
        float,
        typer.Option(help="Spare anything younger than this (uploads may be in flight)."),
    ] = 24.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, delete nothing.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete content no repository holds, xorbs nothing reads and blobs nothing names."""
    if grace_hours < 0:
        _fail(errors.InvalidInputError("--grace-hours must not be negative"))
    with _admin(data_dir) as hub:
        plaintexts = 0 if dry_run else hub.sealing.sweep_plaintexts()
        report = hub.garbage.collect(timedelta(hours=grace_hours), dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    sys.stdout.write(
        f"{verb} {_size(report.bytes_freed)} in {report.blobs} blobs; "
        f"{report.contents} content records and {report.xorbs} xorbs unreferenced; "
        f"{_size(report.abandoned_bytes)} of abandoned uploads removed"
        + (f"; {plaintexts} plaintext uploads of sealed files deleted" if plaintexts else "")
        + "\n"
    )


@admin.command("scan")
def admin_scan(data_dir: DataDir = None) -> None:
    """Scan every stored file that has no verdict yet (or one by an older scanner)."""
    with _admin(data_dir) as hub:
        counts = hub.scanning.backfill()
    shown = ", ".join(f"{counts[s]} {s.value}" for s in sorted(counts, key=lambda s: s.rank))
    sys.stdout.write(f"verdicts: {shown or 'no files'}\n")


@admin.command("sealing-rotate")
def admin_sealing_rotate(
    retire_after_hours: Annotated[
        float,
        typer.Option(help="Delete old KEKs only this long after they stopped being current."),
    ] = 1.0,
    data_dir: DataDir = None,
) -> None:
    """Make a new key-encryption key current, rewrap every sealed file's key, retire old KEKs."""
    if retire_after_hours < 0:
        _fail(errors.InvalidInputError("--retire-after-hours must not be negative"))
    with _admin(data_dir) as hub:
        done = hub.sealing.rotate(timedelta(hours=retire_after_hours))
    retired = ", ".join(done.retired) or "none"
    sys.stdout.write(
        f"current KEK {done.kek_id}; {done.rewrapped} keys rewrapped; retired {retired}\n"
    )


@admin.command("fsck")
def admin_fsck(
    repair: Annotated[
        bool, typer.Option("--repair", help="Remove index rows that point at nothing.")
    ] = False,
    verify_data: Annotated[
        bool, typer.Option("--verify-data", help="Also read every content back and re-hash it.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Check metadata against blobs; exit 7 when problems remain."""
    with _admin(data_dir) as hub:
        report = hub.fsck.check(repair=repair, verify_data=verify_data)
    checked = ", ".join(f"{count} {what}" for what, count in report.checked.items())
    sys.stdout.write(f"checked {checked}\n")
    for kind, count in report.repaired.items():
        sys.stdout.write(f"repaired {kind}: {count} rows removed\n")
    for kind, count in report.counts.items():
        sys.stdout.write(f"{kind}: {count}\n")
        for example in report.problems[kind]:
            sys.stdout.write(f"  {example}\n")
    if not report.clean:
        raise typer.Exit(_FSCK_PROBLEMS)
    sys.stdout.write("clean\n")


def main() -> None:
    app()
