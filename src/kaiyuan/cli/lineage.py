"""`kaiyuan lineage show REPO`: a model's ancestors and descendants, as a tree, from a hub."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from kaiyuan.cli.failures import fail
from kaiyuan.client.api import HubClient
from kaiyuan.core import errors

app = typer.Typer(no_args_is_help=True, help="The model tree (ask a running hub).")

Endpoint = Annotated[
    str | None,
    typer.Option(
        envvar=["KAIYUAN_ENDPOINT", "HF_ENDPOINT"],
        help="The hub (default: $KAIYUAN_ENDPOINT, $HF_ENDPOINT, http://127.0.0.1:8000).",
    ),
]
Token = Annotated[
    str | None, typer.Option(envvar="HF_TOKEN", help="Access token (default: $HF_TOKEN).")
]
Kind = Annotated[str, typer.Option("--type", help="model or dataset")]


def split_revision(target: str) -> tuple[str, str | None]:
    """`ns/name@rev` into the id and the revision (None when absent)."""
    repo, _, revision = target.partition("@")
    return repo, revision or None


@app.command("show")
def show(
    repo: Annotated[str, typer.Argument(help="NS/NAME, or NS/NAME@REVISION")],
    kind: Kind = "model",
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Print a revision's ancestors and the models derived from the repository.

    Each ancestor is shown at the revision the edge was declared against.
    """
    repo_id, revision = split_revision(repo)
    try:
        tree = HubClient(endpoint, token).lineage(kind, repo_id, revision)
    except errors.HubError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(tree, indent=2) + "\n")
        return
    sys.stdout.write("\n".join(render(tree)) + "\n")


def render(tree: dict[str, Any]) -> list[str]:
    """The tree as text: the repository, then its ancestors above and descendants below."""
    head = f"{tree['id']} @ {_short(tree.get('revision'))}"
    licence = tree.get("licence")
    lines = [head + (f"  [{licence}]" if licence else "")]
    ancestors = tree.get("ancestors") or []
    lines.append("ancestors:" if ancestors else "ancestors: none declared")
    lines.extend(_branch(ancestors, "  ", up=True))
    descendants = tree.get("descendants") or []
    lines.append("descendants:" if descendants else "descendants: none on this hub")
    lines.extend(_branch(descendants, "  ", up=False))
    return lines


def _branch(nodes: list[dict[str, Any]], indent: str, *, up: bool) -> list[str]:
    lines: list[str] = []
    for index, node in enumerate(nodes):
        last = index == len(nodes) - 1
        label = node["id"] or f"{node['name']} (not on this hub)"
        relation = node.get("relation") or "?"
        what = f"{relation} of" if up else f"{relation}:"
        revision = f" @ {_short(node.get('revision'))}" if node.get("revision") else ""
        licence = f"  [{node['licence']}]" if node.get("licence") else ""
        origin = " (measured)" if node.get("origin") == "measured" else ""
        cycle = " (cycle)" if node.get("cycle") else ""
        lines.append(
            f"{indent}{'└─' if last else '├─'} {what} {label}{revision}{licence}{origin}{cycle}"
        )
        lines.extend(_branch(node.get("nodes") or [], indent + ("   " if last else "│  "), up=up))
    return lines


def _short(revision: object) -> str:
    return str(revision)[:12] if revision else "?"
