"""What the licence review costs a commit: the same commits with and without it.

Every commit to a model runs the compliance checks inside its transaction (read the card and
the licence files, walk the ancestry, evaluate LIC-001 … LIC-015, store the report and the
edges). This script measures that cost in-process, on the embedded defaults (SQLite and a local
blob directory): a repository three generations down a Llama family (with a card, LICENSE and
NOTICE) takes `--commits` one-file commits through the commit service with the review hook, and
the same number through a commit service without it (the reference), interleaved. It prints the
median and p90 of both, and the ratio.

Run::

    python benchmarks/commit_review.py                 # 200 commits each
    python benchmarks/commit_review.py --files 2000    # into a repository of 2,000 files
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kaiyuan.bootstrap import build_hub  # noqa: E402
from kaiyuan.config import Settings  # noqa: E402
from kaiyuan.core.ids import RepoId, RepoKind  # noqa: E402
from kaiyuan.core.models import Scope  # noqa: E402
from kaiyuan.services.commits import (  # noqa: E402
    CommitLimits,
    CommitRequest,
    CommitService,
    PutRegularFile,
)
from kaiyuan.services.trees import TreeCache  # noqa: E402

NOTICE = b"Llama 3.1 is licensed under the Llama 3.1 Community License"
MODEL = RepoKind.MODEL


def card(**meta: str) -> bytes:
    lines = "".join(f"{key}: {value}\n" for key, value in meta.items())
    return f"---\n{lines}---\n# Model\n\nBuilt with Llama.\n".encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--files", type=int, default=50, help="files in the repository")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kaiyuan-review-bench-") as tmp:
        hub = build_hub(Settings(data_dir=Path(tmp), fsync=False))
        hub.accounts.create_user("alice")
        hub.accounts.create_org("acme", ["alice"])
        alice = hub.accounts.authenticate(hub.accounts.create_token("alice", Scope.WRITE))
        parent = None
        for name in ("Llama-base", "Llama-base-instruct", "Llama-base-instruct-support"):
            repo = RepoId("acme", name)
            hub.repos.create(alice, MODEL, repo, private=False)
            meta = {"license": "llama3.1", **({"base_model": str(parent)} if parent else {})}
            files = [
                PutRegularFile("README.md", card(**meta)),
                PutRegularFile("LICENSE", b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT"),
                PutRegularFile("NOTICE", NOTICE),
            ]
            files += [PutRegularFile(f"shards/f{i:05d}.txt", b"x") for i in range(args.files)]
            hub.commits.commit(alice, MODEL, repo, "main", CommitRequest("publish", "", files))
            parent = repo
        if parent is None:
            raise SystemExit("no repository was made")
        # The reference: the same stores, a commit service without the review hook.
        plain = CommitService(hub.metadata, hub.blobs, hub.contents, TreeCache(), CommitLimits())
        reviewed: list[float] = []
        reference: list[float] = []
        for index in range(args.commits):
            for service, samples in ((hub.commits, reviewed), (plain, reference)):
                change = [PutRegularFile(f"notes/n{index}.txt", str(index).encode())]
                started = time.perf_counter()
                service.commit(alice, MODEL, parent, "main", CommitRequest("n", "", change))
                samples.append((time.perf_counter() - started) * 1000)
        hub.close()
    print(
        f"{args.commits} one-file commits each, repository of {args.files + 3} files, "
        "3 generations of ancestry"
    )
    print("| commit | median ms | p90 ms |")
    print("|---|---|---|")
    for name, samples in (
        ("with the licence review", reviewed),
        ("without (reference)", reference),
    ):
        ordered = sorted(samples)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        print(f"| {name} | {statistics.median(samples):.1f} | {p90:.1f} |")
    ratio = statistics.median(reviewed) / statistics.median(reference)
    print(f"ratio (median): {ratio:.2f}\N{MULTIPLICATION SIGN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
