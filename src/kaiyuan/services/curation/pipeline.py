"""The curation driver: records in, stages in passes on an engine, dedup across everything, out.

Per-record stages run batch by batch on the engine; a dedup stage ends a pass, and the driver
then decides over all records still kept, across every contributor: the first copy of a text
is kept (exact), and in each near-duplicate cluster the earliest record is kept. Records are
ordered by source file and row, so "earliest" is the same on every run. Nothing is dropped on
the way: a removed record keeps the stage and reason that removed it and, for duplicates, the
record kept in its place; the report counts all of it per stage and per contributor.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa

from kaiyuan.services.curation import stages as st
from kaiyuan.services.curation.config import CurationConfig, StageConfig
from kaiyuan.services.curation.engines import Engine
from kaiyuan.services.curation.neardup import cluster
from kaiyuan.services.curation.records import read_records

BATCH_ROWS = 5000
ATTRIBUTION: dict[str, pa.DataType] = {
    "organisation": pa.string(),
    "contributor": pa.string(),
    "licence": pa.string(),
    "contribution": pa.int64(),
    "source_file": pa.string(),
    "source_row": pa.int64(),
}
OUTPUT_COLUMNS = (
    "id",
    "text",
    "lang",
    "lang_score",
    "domain",
    "domain_score",
    "quality",
    "pii",
    *ATTRIBUTION,
    "config_hash",
)


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str
    sha256: str
    size: int
    organisation: str
    contributor: str
    licence: str
    contribution: int | None


@dataclass(frozen=True, slots=True)
class CurationResult:
    kept: pa.Table  # OUTPUT_COLUMNS
    removed: pa.Table  # where each removed record went and why
    report: dict[str, Any]


Progress = Callable[[float, str], None]


def _batches(
    sources: Sequence[SourceFile],
    opener: Callable[[SourceFile], IO[bytes]],
    batch_rows: int,
) -> Iterator[pa.Table]:
    rows: dict[str, list[Any]] = {name: [] for name in ("text", *ATTRIBUTION)}

    def flush() -> pa.Table:
        size = len(rows["text"])
        columns: dict[str, pa.Array] = {"text": pa.array(rows["text"], pa.string())}
        for name, kind in ATTRIBUTION.items():
            columns[name] = pa.array(rows[name], kind)
        for name, kind in st.WORK_COLUMNS.items():
            empty = "" if name in {st.REMOVED, st.REASON} else None
            columns[name] = pa.array([empty] * size, kind)
        for values in rows.values():
            values.clear()
        return pa.table(columns)

    for source in sorted(sources, key=lambda s: s.path):
        with opener(source) as stream:
            for row, text in read_records(source.path, stream):
                rows["text"].append(text)
                rows["organisation"].append(source.organisation)
                rows["contributor"].append(source.contributor)
                rows["licence"].append(source.licence)
                rows["contribution"].append(source.contribution)
                rows["source_file"].append(source.path)
                rows["source_row"].append(row)
                if len(rows["text"]) >= batch_rows:
                    yield flush()
    if rows["text"]:
        yield flush()


def _passes(config: CurationConfig) -> list[list[StageConfig]]:
    passes: list[list[StageConfig]] = [[]]
    for stage in config.stages:
        passes[-1].append(stage)
        if st.stage(stage.name).global_step:
            passes.append([])
    return [p for p in passes if p]


def curate(
    config: CurationConfig,
    sources: Sequence[SourceFile],
    opener: Callable[[SourceFile], IO[bytes]],
    engine: Engine,
    progress: Progress,
    batch_rows: int = BATCH_ROWS,
) -> CurationResult:
    """Run the configured stages over every record of `sources`."""
    progress(0.0, "reading")
    batches = list(_batches(sources, opener, batch_rows))
    total = sum(b.num_rows for b in batches)
    kept_as: dict[int, tuple[str, int]] = {}  # removed duplicate -> (file, row) kept instead
    passes = _passes(config)
    for number, stage_pass in enumerate(passes):
        names = ", ".join(s.name for s in stage_pass)
        progress(0.05 + 0.85 * number / len(passes), names)
        batches = engine.map(st.run_batch, batches, stage_pass)
        last = stage_pass[-1]
        if st.stage(last.name).global_step and batches:
            table = pa.concat_tables(batches)
            table = _dedup(table, last, kept_as)
            batches = [
                table.slice(start, batch_rows) for start in range(0, table.num_rows, batch_rows)
            ]
    progress(0.92, "writing")
    table = pa.concat_tables(batches) if batches else _empty()
    return CurationResult(
        _output(table, config.hash),
        _removed_records(table, kept_as),
        _report(table, config, total, kept_as),
    )


def _empty() -> pa.Table:
    fields = {"text": pa.string(), **ATTRIBUTION, **st.WORK_COLUMNS}
    return pa.table({name: pa.array([], kind) for name, kind in fields.items()})


def _dedup(table: pa.Table, stage: StageConfig, kept_as: dict[int, tuple[str, int]]) -> pa.Table:
    removed = table.column(st.REMOVED).to_pylist()
    reasons = table.column(st.REASON).to_pylist()
    files = table.column("source_file").to_pylist()
    rows = table.column("source_row").to_pylist()
    alive = [i for i, r in enumerate(removed) if not r]
    if stage.name == "exact_dedup":
        digests = table.column("_digest").to_pylist()
        first: dict[bytes, int] = {}
        for i in alive:
            keeper = first.setdefault(digests[i], i)
            if keeper != i:
                removed[i], reasons[i] = "exact_dedup", "duplicate"
                kept_as[i] = (files[keeper], rows[keeper])
    else:
        params = st.minhash_params(stage.options)
        raw = table.column("_signature").to_pylist()
        sigs = np.frombuffer(b"".join(raw[i] for i in alive), dtype=np.uint32).reshape(
            len(alive), params.permutations
        )
        clusters = cluster(sigs, params)
        for position, keeper in enumerate(clusters.kept_as.tolist()):
            if keeper != position:
                i, k = alive[position], alive[keeper]
                removed[i], reasons[i] = "near_dedup", "near_duplicate"
                kept_as[i] = (files[k], rows[k])
    table = table.set_column(
        table.schema.get_field_index(st.REMOVED), st.REMOVED, pa.array(removed, pa.string())
    )
    return table.set_column(
        table.schema.get_field_index(st.REASON), st.REASON, pa.array(reasons, pa.string())
    )


def record_id(source_file: str, row: int) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(f"{source_file}\n{row}".encode()).hexdigest()[:24]


def _output(table: pa.Table, config_hash: str) -> pa.Table:
    mask = pa.compute.equal(table.column(st.REMOVED), "")
    kept = table.filter(mask)
    ids = [
        record_id(f, r)
        for f, r in zip(
            kept.column("source_file").to_pylist(),
            kept.column("source_row").to_pylist(),
            strict=True,
        )
    ]
    kept = kept.append_column("id", pa.array(ids, pa.string()))
    kept = kept.append_column("config_hash", pa.array([config_hash] * kept.num_rows, pa.string()))
    return kept.select(list(OUTPUT_COLUMNS))


def _removed_records(table: pa.Table, kept_as: dict[int, tuple[str, int]]) -> pa.Table:
    removed = table.column(st.REMOVED).to_pylist()
    indices = [i for i, r in enumerate(removed) if r]
    take = table.take(pa.array(indices, pa.int64())) if indices else table.slice(0, 0)
    kept_file = [kept_as.get(i, ("", -1))[0] or None for i in indices]
    kept_row = [kept_as[i][1] if i in kept_as else None for i in indices]
    return pa.table(
        {
            "source_file": take.column("source_file"),
            "source_row": take.column("source_row"),
            "organisation": take.column("organisation"),
            "contributor": take.column("contributor"),
            "stage": take.column(st.REMOVED),
            "reason": take.column(st.REASON),
            "kept_file": pa.array(kept_file, pa.string()),
            "kept_row": pa.array(kept_row, pa.int64()),
        }
    )


def _report(
    table: pa.Table, config: CurationConfig, total: int, kept_as: dict[int, tuple[str, int]]
) -> dict[str, Any]:
    removed = table.column(st.REMOVED).to_pylist()
    reasons = table.column(st.REASON).to_pylist()
    orgs = table.column("organisation").to_pylist()
    people = table.column("contributor").to_pylist()
    contributions = table.column("contribution").to_pylist()
    langs = table.column("lang").to_pylist()
    domains = table.column("domain").to_pylist()
    pii_column = table.column("pii").to_pylist()
    chars = [len(t) for t in table.column("text").to_pylist()]
    stages: dict[str, dict[str, Any]] = {}
    remaining = total
    for stage in config.stages:
        name = stage.name
        gone = [i for i, r in enumerate(removed) if r == name]
        by_org: Counter[str] = Counter(orgs[i] for i in gone)
        stages[name] = {
            "input": remaining,
            "removed": len(gone),
            "output": remaining - len(gone),
            "removed_by_organisation": dict(sorted(by_org.items())),
            "reasons": dict(sorted(Counter(reasons[i] for i in gone).items())),
        }
        remaining -= len(gone)
    kept = [i for i, r in enumerate(removed) if not r]
    pii_total: Counter[str] = Counter()
    pii_by_org: dict[str, Counter[str]] = defaultdict(Counter)
    for i in range(len(removed)):
        if pii_column[i]:
            counts = json.loads(pii_column[i])
            pii_total.update(counts)
            pii_by_org[orgs[i]].update(counts)
    contributors: dict[tuple[str, str, Any], dict[str, int]] = {}
    for i in range(len(removed)):
        entry = contributors.setdefault(
            (orgs[i], people[i], contributions[i]), {"records": 0, "kept": 0, "kept_chars": 0}
        )
        entry["records"] += 1
        if not removed[i]:
            entry["kept"] += 1
            entry["kept_chars"] += chars[i]
    kept_chars = sum(chars[i] for i in kept) or 1
    kept_for_others = Counter(orgs[i] for i in kept_as)
    return {
        "config_hash": config.hash,
        "config": config.canonical,
        "records_in": total,
        "records_out": len(kept),
        "stages": stages,
        "languages": dict(sorted(Counter(langs[i] or "und" for i in kept).items())),
        "domains": dict(sorted(Counter(domains[i] or "unlabelled" for i in kept).items())),
        "pii_redacted": dict(sorted(pii_total.items())),
        "pii_redacted_by_organisation": {
            o: dict(sorted(c.items())) for o, c in sorted(pii_by_org.items())
        },
        "duplicates_removed_by_organisation": dict(sorted(kept_for_others.items())),
        "contributors": [
            {
                "organisation": org,
                "contributor": person,
                "contribution": number,
                **entry,
                "share": round(entry["kept_chars"] / kept_chars, 6),
            }
            for (org, person, number), entry in sorted(
                contributors.items(), key=lambda x: (x[0][0], x[0][1], x[0][2] or 0)
            )
        ],
    }
