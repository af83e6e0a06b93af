"""`kaiyuan sealed ...`: seal a repository's files, load them in memory, audit and revoke.

- `kaiyuan sealed policy NS/NAME --pattern '*.safetensors' [--attestation required]
  [--allow USER_OR_ORG]`: seal matching files from the next commit on (`--show` prints it).
- `kaiyuan sealed load NS/NAME[@REV]`: download the ciphertext, get the keys, decrypt and
  authenticate every tensor in memory, and print what was loaded. Nothing in the clear is
  written anywhere; it is how a runtime checks it can load a sealed model.
- `kaiyuan sealed releases NS/NAME`: the key-release audit log.
- `kaiyuan sealed revoke NS/NAME SUBJECT` (`--restore` to undo).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.cli.lineage import Endpoint, Token, split_revision
from kaiyuan.client.api import DEFAULT_ENDPOINT, HubClient
from kaiyuan.core import errors

app = typer.Typer(no_args_is_help=True, help="Sealed models: policy, in-memory loading, audit.")

Repo = Annotated[str, typer.Argument(help="NS/NAME (or NS/NAME@REVISION for load)")]
Kind = Annotated[str, typer.Option("--type", help="model or dataset")]


@app.command("policy")
def policy(
    repo: Repo,
    pattern: Annotated[
        list[str] | None, typer.Option("--pattern", help="Files to seal (fnmatch); repeatable.")
    ] = None,
    attestation: Annotated[
        str, typer.Option(help="'required': keys only for attested runtimes.")
    ] = "none",
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Only these users/organisations get keys; repeatable."),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Print the policy, change nothing.")] = False,
    kind: Kind = "model",
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Set (or show) which files of a repository are sealed and who may have their keys."""
    client = HubClient(endpoint, token)
    try:
        if show:
            found = client.sealing(kind, repo, None).get("policy")
        else:
            if not pattern:
                fail(errors.InvalidInputError("name at least one --pattern"))
            found = client.set_sealing(
                kind,
                repo,
                {"patterns": pattern, "attestation": attestation, "allowed": allow or []},
            )
    except errors.HubError as exc:
        fail(exc)
    sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n")


@app.command("load")
def load(
    repo: Repo,
    device: Annotated[str, typer.Option(help="cpu, or a torch device such as cuda:0")] = "cpu",
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Decrypt every sealed tensor of a revision in memory and say what was loaded."""
    from kaiyuan.client.sealed import open_sealed  # noqa: PLC0415 - numpy/huggingface_hub

    repo_id, revision = split_revision(repo)
    started = time.perf_counter()
    try:
        with open_sealed(
            repo_id,
            revision=revision,
            endpoint=endpoint or DEFAULT_ENDPOINT,
            token=token,
            framework="np" if device == "cpu" else "pt",
            device=device,
        ) as model:
            tensors = model.load()
            total = sum(int(t.nbytes) for t in tensors.values())
            paths, commit = model.paths, model.revision
    except errors.HubError as exc:
        fail(exc)
    seconds = time.perf_counter() - started
    sys.stdout.write(
        f"loaded {len(tensors)} tensors ({total / 1e6:.1f} MB) from {len(paths)} sealed files "
        f"of {repo_id}@{commit[:12]} in {seconds:.2f} s; every chunk authenticated\n"
    )


@app.command("releases")
def releases(
    repo: Repo,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    kind: Kind = "model",
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """The key-release audit log, newest first."""
    try:
        found = HubClient(endpoint, token).key_releases(kind, repo, limit)
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
        return
    for item in found:
        reason = f"  {item['reason']}" if item.get("reason") else ""
        sys.stdout.write(
            f"{item['at']}  {item['outcome']:8}  {item['user']:16}  "
            f"{str(item['revision'])[:12]}  {len(item['paths'])} files{reason}\n"
        )


@app.command("revoke")
def revoke(
    repo: Repo,
    subject: Annotated[str, typer.Argument(help="The user or organisation")],
    restore: Annotated[bool, typer.Option("--restore", help="Undo a revocation.")] = False,
    kind: Kind = "model",
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Refuse a user's or organisation's key requests from now on (or, --restore, again allow)."""
    try:
        HubClient(endpoint, token).revoke_keys(kind, repo, subject, restore=restore)
    except errors.HubError as exc:
        fail(exc)
    sys.stdout.write(f"{'restored' if restore else 'revoked'} key release for {subject}\n")
