"""`kaiyuan verify`: check a model's files against the hub's signature, offline or from the hub.

Three ways:

- `kaiyuan verify NS/NAME[@REV] --key hub.pem` downloads the revision into a temporary folder
  and checks every file against the hub's OMS signature of that revision, made with the key you
  pinned (`--key`). Without `--key` the hub's own key is fetched and its id printed: that proves
  only that the files are what the hub signed, not that the hub is the one you trust.
- `kaiyuan verify NS/NAME[@REV] --local-dir DIR --key hub.pem` checks a copy you already have
  against the hub's signature (nothing is downloaded).
- `kaiyuan verify --local-dir DIR --signature model.sig --key hub.pem` is fully offline.

Every file counts: a changed, missing or extra file fails (exit 8); files OMS ignores (the
signature, git's files, a download's `.cache` folder) are not part of the check.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.cli.lineage import Endpoint, Token, split_revision
from kaiyuan.client.api import HubClient
from kaiyuan.core import errors
from kaiyuan.core.ids import is_full_sha, validate_path
from kaiyuan.services.distribution.signing import (
    SIGNATURE_FILE,
    manifest_of,
    subject_of,
    verify_directory,
)

_FAILED = 8


def verify(
    repo: Annotated[
        str | None, typer.Argument(help="NS/NAME or NS/NAME@REVISION on the hub")
    ] = None,
    local_dir: Annotated[
        Path | None, typer.Option("--local-dir", help="Check this folder instead of downloading.")
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(help=f"An OMS bundle (offline; default: DIR/{SIGNATURE_FILE})."),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="The signer's public key (PEM) you trust.")
    ] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Check a model's files against an OMS signature: every file, nothing extra."""
    try:
        if repo is None:
            _offline(local_dir, signature, key)
        else:
            _from_hub(HubClient(endpoint, token), repo, local_dir, key)
    except errors.IntegrityError as exc:
        sys.stderr.write(f"verification FAILED: {exc}\n")
        raise typer.Exit(_FAILED) from None
    except (errors.HubError, OSError) as exc:
        fail(exc if isinstance(exc, errors.HubError) else errors.InvalidInputError(str(exc)))


def _offline(local_dir: Path | None, signature: Path | None, key: Path | None) -> None:
    if local_dir is None or key is None:
        raise errors.InvalidInputError("offline, name the folder (--local-dir) and key (--key)")
    bundle = (signature or local_dir / SIGNATURE_FILE).read_bytes()
    verify_directory(local_dir, bundle, key.read_bytes())
    sys.stdout.write(
        f"verified: {len(manifest_of(bundle))} files in {local_dir} "
        f"as signed for {subject_of(bundle)}\n"
    )


def _from_hub(client: HubClient, repo: str, local_dir: Path | None, key: Path | None) -> None:
    repo_id, revision = split_revision(repo)
    found = client.signature("model", repo_id, revision)
    bundle = json.dumps(found["bundle"]).encode()
    if key is not None:
        public = key.read_bytes()
    else:
        answer = client.signing_key()
        public = str(answer["public_key"]).encode()
        sys.stderr.write(
            f"warning: using the key the hub itself serves (id {answer['key_id'][:16]}…); "
            "pin it with --key to check the hub too\n"
        )
    files = manifest_of(bundle)
    # The signed statement names the repository and commit: an answer carrying another
    # repository's bundle, or another commit's than the one asked for, is refused. (These are
    # the payload bytes the signature check below authenticates.)
    wanted = f"{repo_id}@{found['revision']}"
    if subject_of(bundle) != wanted or (
        revision is not None and is_full_sha(revision) and found["revision"] != revision
    ):
        raise errors.IntegrityError(f"the signature is of {subject_of(bundle)}, not {wanted}")
    if local_dir is not None:
        verify_directory(local_dir, bundle, public)
        where = str(local_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kaiyuan-verify-") as tmp:
            folder = Path(tmp) / repo_id.replace("/", "--")
            for path in files:
                validate_path(path)  # names from the bundle: no `..`, no absolute paths
                client.download(repo_id, found["revision"], path, folder / path)
            verify_directory(folder, bundle, public)
        where = "the downloaded copy"
    sys.stdout.write(
        f"verified: {repo_id}@{found['revision'][:12]}, {len(files)} files in {where}, "
        f"signed by key {found['key_id'][:16]}…\n"
    )
    own = found.get("publisher")
    if isinstance(own, dict):
        # The hub's check of the publisher's own model.sig (against the namespace's keys);
        # check it yourself with --local-dir DIR --signature DIR/model.sig --key THEIR.pem.
        key_id = f" by key {str(own.get('key_id'))[:16]}…" if own.get("key_id") else ""
        sys.stdout.write(f"publisher signature: {own.get('status')}{key_id}: {own.get('detail')}\n")
