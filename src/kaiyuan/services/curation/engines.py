"""Where the per-record stages run: a local process pool by default, Ray Data when configured.

An engine maps one function over a list of batches and returns the results in the same order.
Stages are pure functions of their batch and options, so every engine gives the same bits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Protocol

import pyarrow as pa

BatchRunner = Callable[[pa.Table, Any], pa.Table]


class Engine(Protocol):
    name: str

    def map(
        self, function: BatchRunner, batches: Sequence[pa.Table], argument: Any
    ) -> list[pa.Table]:
        """`function(batch, argument)` for every batch, results in the batches' order."""
        ...


class LocalEngine:
    """A pool of worker processes on this machine (one process: run inline)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))

    def map(
        self, function: BatchRunner, batches: Sequence[pa.Table], argument: Any
    ) -> list[pa.Table]:
        if self.workers == 1 or len(batches) <= 1:
            return [function(batch, argument) for batch in batches]
        # "spawn": the hub process holds threads and database connections a fork would copy.
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) as pool:
            return list(pool.map(function, batches, [argument] * len(batches)))


class RayEngine:
    """Ray Data over a Ray cluster (`address`), or a local Ray started on first use.

    The Ray driver is a child process, one per map: a Ray driver process exits when its cluster
    goes away, and the hub must not go with it.
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def map(
        self, function: BatchRunner, batches: Sequence[pa.Table], argument: Any
    ) -> list[pa.Table]:
        if not batches:
            return []
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as driver:
            return driver.submit(_ray_map, self.address, function, list(batches), argument).result()


def _ray_map(
    address: str | None,
    function: BatchRunner,
    batches: list[pa.Table],
    argument: Any,
) -> list[pa.Table]:
    import ray  # noqa: PLC0415 - Ray is optional and heavy
    import ray.data  # noqa: PLC0415

    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        sizes = [b.num_rows for b in batches]
        tagged = [
            b.append_column("_batch", pa.array([i] * b.num_rows, pa.int32()))
            for i, b in enumerate(batches)
        ]
        dataset = ray.data.from_arrow(tagged).map_batches(
            _by_batch,  # type: ignore[arg-type] # Ray's stubs cannot express fn_kwargs
            fn_kwargs={"function": function, "argument": argument},
            batch_format="pyarrow",
            batch_size=None,
            zero_copy_batch=True,
        )
        table = pa.concat_tables(ray.get(list(dataset.to_arrow_refs())))
    finally:
        ray.shutdown()
    ids = table.column("_batch").to_pylist()
    table = table.drop_columns(["_batch"])
    results: list[pa.Table] = []
    start = 0
    for index, size in enumerate(sizes):
        if size and (ids[start] != index or ids[start + size - 1] != index):
            raise RuntimeError("ray returned batches out of order")
        results.append(table.slice(start, size))
        start += size
    return results


def _by_batch(table: pa.Table, function: BatchRunner, argument: Any) -> pa.Table:
    # Ray may merge or split blocks: run the stages per original batch so results match the
    # local engine's batch for batch (near-dup signatures do not depend on it; this keeps
    # every stage free to).
    ids = table.column("_batch")
    parts = []
    start = 0
    values = ids.to_pylist()
    while start < len(values):
        stop = start
        while stop < len(values) and values[stop] == values[start]:
            stop += 1
        part = table.slice(start, stop - start)
        done = function(part.drop_columns(["_batch"]), argument)
        parts.append(done.append_column("_batch", part.column("_batch")))
        start = stop
    return pa.concat_tables(parts) if parts else table
