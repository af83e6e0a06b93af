"""Web pages on a large repository: the page vs the JSON API answering the same question.

The script starts ``kaiyuan serve`` (embedded defaults), commits ``--files`` small files into one
folder of a model repository with the stock ``huggingface_hub`` client, and then times, over
``--repeat`` requests each (median, milliseconds, server and client on the same machine):

* the files page ``/{repo}/tree/main/{folder}`` vs the API listing of that folder
  (``/api/models/{repo}/tree/main/{folder}``, following its ``Link`` pages as the clients do);
* the commit page of the commit that added them (the diff of the file list) vs the API's
  ``/api/models/{repo}/commits/main``;
* the card page vs ``/api/models/{repo}`` (model info).

Target (issue 3): the files page of a 5,000-file folder renders in under a second. The ratio
says what the HTML costs over the API's JSON for the same listing.

Run::

    python benchmarks/web_pages.py                    # 5,000 files, 15 requests each
    python benchmarks/web_pages.py --files 20000 --repeat 5
    python benchmarks/web_pages.py --json web.json --check   # exit 1 when the target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the server runner of the test suite

os.environ.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})

TARGET_MS = 1000.0
REPO = "acme/many-files"
FOLDER = "shards"


def timed(call: Callable[[], int], repeat: int) -> float:
    """Median milliseconds of `call` (which returns the bytes it received, checked non-empty)."""
    call()  # warm: the first request fills the tree cache, as any later visitor finds it
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        received = call()
        samples.append((time.perf_counter() - start) * 1000)
        if received <= 0:
            raise SystemExit("an empty answer")
    return statistics.median(samples)


def api_listing(client: httpx.Client, url: str) -> int:
    total = 0
    while url:
        answer = client.get(url)
        answer.raise_for_status()
        total += len(answer.content)
        url = answer.links.get("next", {}).get("url", "")
    return total


def page(client: httpx.Client, url: str, must_contain: str) -> int:
    answer = client.get(url)
    answer.raise_for_status()
    if must_contain not in answer.text:
        raise SystemExit(f"{url} lacks {must_contain!r}")
    return len(answer.content)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()

    from huggingface_hub import CommitOperationAdd, HfApi  # noqa: PLC0415
    from tests.support.hubs import start_server  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="kaiyuan-web-bench-") as tmp,
        start_server(Path(tmp), "sqlite", None) as server,
    ):
        api = HfApi(endpoint=server.url, token=server.alice)
        api.create_repo(REPO)
        last = f"{FOLDER}/part-{args.files - 1:06d}.txt"
        started = time.perf_counter()
        commit = api.create_commit(
            REPO,
            [
                CommitOperationAdd(f"{FOLDER}/part-{i:06d}.txt", f"{i}\n".encode())
                for i in range(args.files)
            ],
            commit_message=f"{args.files} files",
        )
        print(f"committed {args.files} files in {time.perf_counter() - started:.1f} s")
        with httpx.Client(base_url=server.url, timeout=120) as client:
            pairs = [
                (
                    f"files page, {args.files}-file folder",
                    lambda: page(client, f"/{REPO}/tree/main/{FOLDER}", last),
                    "API tree listing (all pages)",
                    lambda: api_listing(client, f"/api/models/{REPO}/tree/main/{FOLDER}"),
                ),
                (
                    f"commit page, {args.files} files added",
                    lambda: page(client, f"/{REPO}/commit/{commit.oid}", last),
                    "API commit list",
                    lambda: api_listing(client, f"/api/models/{REPO}/commits/main"),
                ),
                (
                    "card page",
                    lambda: page(client, f"/{REPO}", "Metadata"),
                    "API model info",
                    lambda: api_listing(client, f"/api/models/{REPO}"),
                ),
            ]
            rows = [
                (name, timed(ours, args.repeat), reference, timed(theirs, args.repeat))
                for name, ours, reference, theirs in pairs
            ]
    print()
    print("| page | median ms | reference | median ms | ratio | target |")
    print("|---|---|---|---|---|---|")
    results = []
    for name, ours, reference, theirs in rows:
        target = f"< {TARGET_MS:.0f} ms" if name.startswith("files page") else ""
        ratio = f"{ours / theirs:.2f}\N{MULTIPLICATION SIGN}"
        print(f"| {name} | {ours:.0f} | {reference} | {theirs:.0f} | {ratio} | {target} |")
        results.append({"page": name, "ms": ours, "reference": reference, "reference_ms": theirs})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = rows[0][1] >= TARGET_MS
    if missed:
        print(f"target missed: the files page took {rows[0][1]:.0f} ms")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
