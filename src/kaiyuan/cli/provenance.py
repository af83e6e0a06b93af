"""`kaiyuan provenance compare A B` and `kaiyuan provenance scan REPO`: what the weights say.

`compare` takes each model as a local path (a folder laid out like a repository, or one weight
file) or a hub reference `NS/NAME[@REV]`. Two hub references are compared by the hub; otherwise
the comparison runs here, reading a hub model with HTTP range requests (only the bytes it needs:
headers, embedding rows, attention matrices), never downloading it whole. `scan` asks the hub
what a revision's fingerprint matched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.cli.lineage import Endpoint, Token, split_revision
from kaiyuan.client.api import HubClient
from kaiyuan.core import errors
from kaiyuan.services.provenance.model import OpenedModel, choose_files, open_local, open_model
from kaiyuan.services.provenance.source import RangedWeightFile, WeightFile

app = typer.Typer(no_args_is_help=True, help="Weight provenance: compare models, scan the hub.")

Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="A local path, or NS/NAME[@REVISION] on the hub")],
    b: Annotated[str, typer.Argument(help="The model A is compared against (same forms)")],
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Is A derived from B? Score, null level, threshold, relation and the layer map."""
    from kaiyuan.services.provenance.compare import compare as compare_models  # noqa: PLC0415

    client = HubClient(endpoint, token)
    try:
        if not _is_local(a) and not _is_local(b):
            answer = client.compare(a, b)
            result = answer["result"]
        else:
            model_a, model_b = _open(client, a), _open(client, b)
            result = compare_models(model_a.layout, model_b.layout).as_json()
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps({"a": a, "b": b, **result}, indent=2) + "\n")
        return
    sys.stdout.write("\n".join(render_comparison(a, b, result)) + "\n")


@app.command("scan")
def scan(
    repo: Annotated[str, typer.Argument(help="NS/NAME, or NS/NAME@REVISION")],
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """The models on the hub nearest to a revision's weights, with their scores."""
    repo_id, revision = split_revision(repo)
    try:
        answer = HubClient(endpoint, token).provenance(repo_id, revision)
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
        return
    sys.stdout.write("\n".join(render_scan(answer)) + "\n")


def _is_local(target: str) -> bool:
    return Path(target).exists()


def _open(client: HubClient, target: str) -> OpenedModel:
    if _is_local(target):
        return open_local(Path(target))
    repo_id, revision = split_revision(target)
    sha, sizes = client.model_files(repo_id, revision)
    chosen = choose_files(sizes)
    if chosen is None:
        raise errors.InvalidInputError(f"{target}: no safetensors, GGUF or ONNX weights")

    def open_file(path: str) -> WeightFile:
        return RangedWeightFile(
            path, sizes[path], lambda s, e: client.read_range(repo_id, sha, path, s, e)
        )

    def read_small(path: str, limit: int) -> bytes:
        if sizes[path] > limit:
            raise errors.InvalidInputError(f"{path} is larger than {limit} bytes")
        return b"".join(client.read_range(repo_id, sha, path, 0, sizes[path]))

    return open_model(chosen, open_file, read_small, sizes.__contains__)


def render_comparison(a: str, b: str, result: dict[str, Any]) -> list[str]:
    lines = [
        f"{a}  vs  {b}",
        f"relation:   {result['relation']}",
        (
            f"score:      {result['score']:.4f}   (threshold {result['threshold']:.4f}, "
            f"null level {result['null_level']:.4f})"
        ),
    ]
    for name, method in (result.get("methods") or {}).items():
        lines.append(
            f"  {name:<16} {method['value']:.4f}   null {method['null_mean']:+.4f} "
            f"± {method['null_sd']:.4f} (max {method['null_max']:.4f})"
        )
    lines.append(
        f"shared tokens: {result.get('shared_tokens', 0)}   "
        f"embedding match: {result.get('embedding_match', 0):.4f}"
    )
    near = result.get("near_copy")
    if near:
        lines.append(
            f"near copy: direct cosine {near['direct_cosine']:.4f}, "
            f"relative difference {near['relative_noise']:.4f}"
        )
    layer_map = result.get("layer_map") or []
    if layer_map and result["relation"] != "independent":
        lines.append(
            "layer map (A <- B, CKA): " + ", ".join(f"{i}<-{j} {s:.2f}" for i, j, s in layer_map)
        )
        if result.get("absent_layers"):
            lines.append(f"layers of B absent from A: {result['absent_layers']}")
        if result.get("repeated_layers"):
            lines.append(f"layers of B repeated in A: {result['repeated_layers']}")
    lines.extend(f"note: {note}" for note in result.get("notes") or [])
    return lines


def render_scan(answer: dict[str, Any]) -> list[str]:
    status = answer.get("status")
    revision = str(answer.get("fingerprinted_revision") or answer.get("revision") or "")[:12]
    lines = [f"{answer['id']} @ {revision}: fingerprint {status}"]
    if answer.get("error"):
        lines.append(f"error: {answer['error']}")
    matches = answer.get("matches") or []
    if status == "done" and not matches:
        lines.append("no related model on this hub")
    lines.extend(_match_line(match) for match in matches)
    lines.extend(
        f"measured parent: {edge['parent']} ({edge['relation']})"
        for edge in answer.get("measured_parents") or []
    )
    return lines


def _match_line(match: dict[str, Any]) -> str:
    identical = match["shared_tensors"]
    return (
        f"  {match['relation']:<16} {match['id']} @ {match['revision'][:12]}  "
        f"score {match['score']:.4f} (threshold {match['threshold']:.4f}, "
        f"null {match['null_level']:.4f})"
        + (f", {identical} identical tensors" if identical else "")
    )
