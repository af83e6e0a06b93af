"""Near-duplicate removal on a synthetic corpus: Kaiyuan vs datatrove vs datasketch, one run.

What it measures. The script writes a seeded corpus as jsonl shards (default 200,000 documents):

* English-like documents of 40-160 words drawn Zipf-style from a random vocabulary;
* a Chinese share (``--zh-share``, default 20%) of 100-300 Han characters drawn Zipf-style
  from a fixed set of 3,500 code points of the CJK block, cut into clauses by Chinese
  punctuation, with no spaces;
* about 10% planted near-duplicates in each language, each an edit of an earlier original
  (1-2 word edits in English, 2-4 character edits in Chinese), the source in
  ``metadata.dup_of``.

Then, in fresh child processes, each engine removes near-duplicates from the jsonl shards and
writes the kept documents back out (jsonl in, jsonl out; corpus generation is not timed):

* ``kaiyuan@T``: ``neardup.signatures`` over batches of 5,000 documents in a
  ``ProcessPoolExecutor(--workers)`` (the numba cache warmed in every worker before the clock
  starts), then ``neardup.cluster`` with ``threshold=T`` (``--threshold``, several allowed;
  ``--bands``/``--rows`` change Kaiyuan's LSH layout only); language "zh" for the Chinese
  documents, "en" for the rest;
* ``datatrove-ws``: datatrove's four MinHash stages (signature, buckets, cluster, filter) with
  ``LocalPipelineExecutor(workers=--workers)`` and a whitespace-split word tokenizer,
  5-grams, 14 bands x 8 rows: the set-up of the research note;
* ``datatrove-han``: the same, its tokenizer also splitting Han text into characters (datatrove
  has no character-shingle option; a custom ``WordTokenizer`` is its extension point);
* ``datasketch``: ``MinHash(num_perm=112)`` with xxh32 and ``MinHashLSH(params=(14, 8))`` in
  one process, each document queried before it is inserted, the same shingles as Kaiyuan
  (word 5-grams; character 5-grams for Chinese);
* the datatrove Chinese finding: the four stages on the Chinese shards alone with
  ``Languages.chinese`` and datatrove's own tokenizer: how many Chinese documents get a
  signature at all, and the recall of those that do.

Per run: wall seconds of the dedup in the child (imports and warm-up excluded), docs/s, the peak
resident memory of the child's process tree (psutil every 50 ms, the RSS of every process
summed, so pages a forked worker shares with its parent count in both), recall per language and
false removals. Recall is scored per planted group (an original and its planted copies): a group
of ``k`` documents can contribute up to ``k - 1`` found duplicates, whichever member is kept;
removals beyond that, and any removal of a document that has no planted copy, are false
removals. The ratio columns compare the first ``--threshold`` Kaiyuan row with each reference
(docs/s ratio, recall difference in points). A diagnostic table then shows, for the planted
pairs, their true shingle Jaccard, how often they share an LSH band, and how often Kaiyuan's
signature estimate clears each threshold, which is what separates its recall from pure LSH.

Target (the issue): Kaiyuan >= datatrove's docs/s at >= its recall, and Chinese deduplicated.

Run (about 5-8 minutes at the default size on a 2-core machine)::

    python benchmarks/curation.py --datatrove-python /work/bench-venv/bin/python
    python benchmarks/curation.py --docs 20000 --out /tmp/cur        # quick; corpus kept
    python benchmarks/curation.py --threshold 0.7 0.6 0.5 --json out.json --check
    python benchmarks/curation.py --skip-datatrove --skip-datasketch --bands 28 --rows 4

Needs ``kaiyuan`` importable (the checkout's ``src`` is put on the path), ``psutil`` and
``datasketch==2.0.0`` with ``xxhash`` in this interpreter, and ``datatrove[processing]==0.10.1``
with ``orjson`` (its ``JsonlReader``) and ``spacy`` (its tokenizer for ``Languages.chinese``) in
``--datatrove-python``, which defaults to this interpreter. datatrove pins ``xxhash<4``, so a
separate virtual environment keeps it from downgrading the hub's own ``xxhash``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
BANDS, ROWS, NGRAM = 14, 8, 5
PERMUTATIONS = BANDS * ROWS
BATCH = 5_000
SHARD_DOCS = 25_000
DUP_SHARE = 0.10
VOCABULARY = 30_000
HAN_COUNT = 3_500
CORPUS_VERSION = 1
MB = 1_000_000
# Chinese punctuation as escapes: clause breaks are mostly commas, sentence ends vary.
ZH_COMMA, ZH_STOP = "\uff0c", "\u3002"
ZH_BREAKS = [ZH_COMMA] * 6 + [ZH_STOP, "\uff1b", "\u3001", "\uff01", "\uff1f", "\uff1a"]
ZH_PUNCT = frozenset(ZH_BREAKS)
WORD_RE = re.compile(r"\w+")
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
ENGINES = ("kaiyuan", "datatrove-ws", "datatrove-han", "datatrove-zh-default", "datasketch")


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[curation] {message}", file=sys.stderr, flush=True)


# --- the corpus ---------------------------------------------------------------------------------
def _zipf_cdf(count: int, exponent: float = 1.0) -> Any:
    import numpy as np  # noqa: PLC0415 - the datatrove child runs without the hub's stack

    weights = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _english_vocabulary(rng: Any, size: int) -> list[str]:
    """Random lower-case words, the shortest first: rank 1 of the Zipf draw is a short word."""
    import numpy as np  # noqa: PLC0415

    lengths = rng.integers(2, 11, size * 2)
    letters = rng.integers(97, 123, int(lengths.sum()), dtype=np.uint8).tobytes().decode()
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    words = list(dict.fromkeys(letters[s:e] for s, e in zip(starts, ends, strict=True)))[:size]
    return sorted(words, key=len)


def _han_characters(rng: Any, size: int) -> list[str]:
    """A fixed list of distinct CJK code points; the list order is the Zipf rank."""
    import numpy as np  # noqa: PLC0415

    points = rng.choice(np.arange(0x4E00, 0x9FA6), size=size, replace=False)
    return [chr(int(p)) for p in points]


class _Zipf:
    """Zipf-ranked draws from a list, refilled in bulk from a numpy generator."""

    def __init__(self, items: list[str], rng: Any) -> None:
        self.items = items
        self.cdf = _zipf_cdf(len(items))
        self.rng = rng
        self.buffer: list[int] = []
        self.at = 0

    def draw(self, count: int) -> list[str]:
        import numpy as np  # noqa: PLC0415

        if self.at + count > len(self.buffer):
            fresh = np.searchsorted(self.cdf, self.rng.random(max(count, 1 << 20)))
            self.buffer = self.buffer[self.at :] + np.minimum(fresh, len(self.items) - 1).tolist()
            self.at = 0
        taken = self.buffer[self.at : self.at + count]
        self.at += count
        return [self.items[i] for i in taken]

    def other(self, current: str) -> str:
        while True:
            (pick,) = self.draw(1)
            if pick != current:
                return pick


def _english_text(words: list[str], pick: random.Random) -> str:
    out = list(words)
    i = 0
    while i < len(out):
        out[i] = out[i].capitalize()
        i += pick.randint(6, 20)
        out[min(i, len(out)) - 1] += "."
    return " ".join(out)


def _edit_english(text: str, edits: int, words: _Zipf, pick: random.Random) -> str:
    tokens = text.split(" ")
    for _ in range(edits):
        pos = pick.randrange(len(tokens))
        op = pick.choice(("substitute", "insert", "delete"))
        if op == "substitute":
            tokens[pos] = words.other(tokens[pos].lower().rstrip("."))
        elif op == "insert":
            tokens.insert(pos, words.draw(1)[0])
        elif len(tokens) > 1:
            del tokens[pos]
    return " ".join(tokens)


def _chinese_text(chars: list[str], pick: random.Random) -> str:
    out: list[str] = []
    i = 0
    while i < len(chars):
        step = pick.randint(4, 16)
        out.extend(chars[i : i + step])
        i += step
        out.append(ZH_STOP if i >= len(chars) else pick.choice(ZH_BREAKS))
    return "".join(out)


def _edit_chinese(text: str, edits: int, chars: _Zipf, pick: random.Random) -> str:
    out = list(text)
    for _ in range(edits):
        han = [i for i, c in enumerate(out) if c not in ZH_PUNCT]
        pos = pick.choice(han)
        op = pick.choice(("substitute", "insert", "delete"))
        if op == "substitute":
            out[pos] = chars.other(out[pos])
        elif op == "insert":
            out.insert(pos, chars.draw(1)[0])
        elif len(han) > 1:
            del out[pos]
    return "".join(out)


def _language_docs(lang: str, count: int, seed: int) -> Iterator[dict[str, Any]]:
    """Originals and planted near-duplicates of one language, in corpus order."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng([seed, 1 if lang == "en" else 2])
    pick = random.Random(f"{seed}-{lang}")
    if lang == "en":
        units = _Zipf(_english_vocabulary(rng, VOCABULARY), rng)
    else:
        units = _Zipf(_han_characters(rng, HAN_COUNT), rng)
    texts: list[str] = []
    originals: list[int] = []
    for i in range(count):
        dup_of = None
        if originals and pick.random() < DUP_SHARE:
            src = originals[pick.randrange(len(originals))]
            dup_of = f"{lang}-{src:07d}"
            if lang == "en":
                text = _edit_english(texts[src], pick.randint(1, 2), units, pick)
            else:
                text = _edit_chinese(texts[src], pick.randint(2, 4), units, pick)
        else:
            originals.append(i)
            if lang == "en":
                text = _english_text(units.draw(pick.randint(40, 160)), pick)
            else:
                text = _chinese_text(units.draw(pick.randint(100, 300)), pick)
        texts.append(text)
        yield {
            "id": f"{lang}-{i:07d}",
            "text": text,
            "metadata": {"language": lang, "dup_of": dup_of},
        }


def _corpus(out: Path, docs: int, zh_share: float, seed: int) -> Path:
    """Write (or reuse) the seeded corpus: ``en-*.jsonl`` then ``zh-*.jsonl``, in that order."""
    corpus = out / "corpus"
    manifest = {"version": CORPUS_VERSION, "docs": docs, "zh_share": zh_share, "seed": seed}
    stamp = corpus / "manifest.json"
    if stamp.is_file() and json.loads(stamp.read_text())["config"] == manifest:
        log(f"reusing the corpus in {corpus}")
        return corpus
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    zh = round(docs * zh_share)
    counts = {"en": docs - zh, "zh": zh}
    started = time.perf_counter()
    size = 0
    for lang, count in counts.items():
        shard, handle = -1, None
        for i, record in enumerate(_language_docs(lang, count, seed)):
            if i % SHARD_DOCS == 0:
                if handle:
                    handle.close()
                shard += 1
                handle = (corpus / f"{lang}-{shard:05d}.jsonl").open("w", encoding="utf-8")
            line = json.dumps(record, ensure_ascii=False) + "\n"
            size += len(line.encode())
            handle.write(line)  # type: ignore[union-attr]
        if handle:
            handle.close()
    stamp.write_text(json.dumps({"config": manifest, "counts": counts, "bytes": size}))
    log(f"wrote {docs:,} docs ({size / MB:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return corpus


def _shards(corpus: Path, pattern: str = "*.jsonl") -> list[Path]:
    return sorted(corpus.glob(pattern))


@dataclass(frozen=True, slots=True)
class Truth:
    ids: list[str]
    dup_of: dict[str, str]  # planted copy -> its original

    @property
    def planted(self) -> dict[str, int]:
        counts = {"en": 0, "zh": 0}
        for doc in self.dup_of:
            counts[doc[:2]] += 1
        return counts


def _truth(corpus: Path) -> Truth:
    ids: list[str] = []
    dup_of: dict[str, str] = {}
    for shard in _shards(corpus):
        with shard.open(encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                ids.append(record["id"])
                if record["metadata"]["dup_of"]:
                    dup_of[record["id"]] = record["metadata"]["dup_of"]
    return Truth(ids, dup_of)


def _score(
    truth: Truth, removed: set[str], langs: tuple[str, ...] = ("en", "zh")
) -> dict[str, Any]:
    """Recall per language, scored per planted group; false removals beyond one kept copy."""
    size: dict[str, int] = defaultdict(int)
    gone: dict[str, int] = defaultdict(int)
    for doc in truth.ids:
        if doc[:2] not in langs:
            continue
        root = truth.dup_of.get(doc, doc)
        size[root] += 1
        gone[root] += doc in removed
    found = dict.fromkeys(langs, 0)
    false = 0
    for root, members in size.items():
        found[root[:2]] += min(gone[root], members - 1)
        false += max(0, gone[root] - (members - 1))
    planted = truth.planted
    score: dict[str, Any] = {"false_removals": false, "removed": len(removed)}
    score["removed_not_planted"] = sum(1 for doc in removed if doc not in truth.dup_of)
    for lang in langs:
        score[f"found_{lang}"] = found[lang]
        score[f"planted_{lang}"] = planted[lang]
        score[f"recall_{lang}"] = found[lang] / planted[lang] if planted[lang] else None
    return score


# --- measuring a child ----------------------------------------------------------------------
class _TreeSampler:
    """Peak RSS of a process and all its descendants, summed, sampled every ``interval``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_single = 0
        self.cpu: dict[int, float] = {}  # the last CPU seconds seen per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil  # noqa: PLC0415

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                self.cpu[proc.pid] = times.user + times.system
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)


@dataclass(slots=True)
class Run:
    name: str
    engine: str
    result: dict[str, Any]
    score: dict[str, Any]
    process_s: float
    cpu_s: float
    peak_mb: float
    peak_single_mb: float
    load: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        return float(self.result["wall_s"])

    @property
    def docs_per_s(self) -> float:
        return self.result["docs"] / self.wall_s


def _run_child(
    args: argparse.Namespace, engine: str, corpus: Path, work: Path, threshold: float
) -> dict[str, Any]:
    name = engine
    if engine == "kaiyuan":
        name = f"kaiyuan@{threshold:g}"
        if (args.bands, args.rows) != (BANDS, ROWS):
            name += f"/{args.bands}x{args.rows}"
    python = args.datatrove_python if engine.startswith("datatrove") else sys.executable
    place = work / name
    shutil.rmtree(place, ignore_errors=True)
    place.mkdir(parents=True)
    result_path = place / "result.json"
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--engine-child",
        engine,
        "--corpus",
        str(corpus),
        "--child-dir",
        str(place),
        "--workers",
        str(args.workers),
        "--threshold",
        str(threshold),
        "--bands",
        str(args.bands),
        "--rows",
        str(args.rows),
    ]
    log_path = work / f"{name}.log"
    log(f"running {name} ...")
    started = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        with _TreeSampler(proc.pid) as sampler:
            code = proc.wait()
    elapsed = time.perf_counter() - started
    if code != 0 or not result_path.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise BenchError(f"{name} failed (exit {code}); log {log_path}:\n{tail}")
    result = json.loads(result_path.read_text())
    shutil.rmtree(place, ignore_errors=True)  # signatures, outputs: not needed any more
    return {
        "name": name,
        "result": result,
        "process_s": elapsed,
        "cpu_s": sum(sampler.cpu.values()),
        "peak_mb": sampler.peak / MB,
        "peak_single_mb": sampler.peak_single / MB,
    }


# --- engine: Kaiyuan ----------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _kaiyuan_init(threshold: float, bands: int, rows: int) -> None:
    """Pool initializer: import and run the compiled code once, so timing sees no compile."""
    from kaiyuan.services.curation.neardup import MinHashParams, signatures  # noqa: PLC0415

    params = MinHashParams(bands=bands, rows=rows, threshold=threshold)
    signatures(["warm up the numba cache now", "\u4e2d\u6587" * 8], ["en", "zh"], params)
    _STATE["params"] = params
    _STATE["signatures"] = signatures


def _kaiyuan_ready(_: int) -> int:
    time.sleep(0.3)
    return os.getpid()


def _kaiyuan_batch(lines: list[bytes]) -> tuple[list[str], Any]:
    records = [json.loads(line) for line in lines]
    texts = [r["text"] for r in records]
    langs = ["zh" if r["metadata"].get("language") == "zh" else "en" for r in records]
    return [r["id"] for r in records], _STATE["signatures"](texts, langs, _STATE["params"])


def _batches(shards: list[Path]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for shard in shards:
        with shard.open("rb") as f:
            for line in f:
                batch.append(line)
                if len(batch) == BATCH:
                    yield batch
                    batch = []
    if batch:
        yield batch


def _write_kept(shards: list[Path], removed: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    i = 0
    for shard in shards:
        with shard.open("rb") as f, (out / shard.name).open("wb") as g:
            for line in f:
                if not removed[i]:
                    g.write(line)
                i += 1


def _child_kaiyuan(args: argparse.Namespace) -> dict[str, Any]:
    from concurrent.futures import Future, ProcessPoolExecutor  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np  # noqa: PLC0415

    from kaiyuan.services.curation.neardup import MinHashParams, cluster  # noqa: PLC0415

    threshold = args.threshold[0]
    params = MinHashParams(bands=args.bands, rows=args.rows, threshold=threshold)
    init = (threshold, args.bands, args.rows)
    _kaiyuan_init(*init)
    cluster(_STATE["signatures"](["a b c d e f"] * 2, ["en"] * 2, params), params)
    shards = _shards(Path(args.corpus))
    workers = args.workers
    with ProcessPoolExecutor(workers, initializer=_kaiyuan_init, initargs=init) as pool:
        for _ in range(10):  # every worker started and warmed before the clock starts
            if len(set(pool.map(_kaiyuan_ready, range(workers)))) == workers:
                break
        started = time.perf_counter()
        pending: list[Future[tuple[list[str], Any]]] = []
        ids: list[str] = []
        parts: list[Any] = []
        for batch in _batches(shards):
            pending.append(pool.submit(_kaiyuan_batch, batch))
            while len(pending) > 2 * workers:  # bounded: the corpus is never all in flight
                got_ids, sigs = pending.pop(0).result()
                ids += got_ids
                parts.append(sigs)
        for job in pending:
            got_ids, sigs = job.result()
            ids += got_ids
            parts.append(sigs)
        sigs = np.concatenate(parts)
        signed = time.perf_counter()
        removed = cluster(sigs, params).removed
        clustered = time.perf_counter()
        _write_kept(shards, removed, Path(args.child_dir) / "output")
        done = time.perf_counter()
    return {
        "wall_s": done - started,
        "stages": {
            "read+signatures": signed - started,
            "cluster": clustered - signed,
            "write": done - clustered,
        },
        "docs": len(ids),
        "removed": [doc for doc, gone in zip(ids, removed.tolist(), strict=True) if gone],
    }


# --- engine: datasketch -------------------------------------------------------------------
def _shingles(text: str, chinese: bool) -> list[bytes]:
    """Word 5-grams (character 5-grams for Chinese) of the lower-cased word characters."""
    if chinese:
        units = [c for c in text.lower() if c.isalnum()]
        glue = ""
    else:
        units = WORD_RE.findall(text.lower())
        glue = " "
    if len(units) <= NGRAM:
        return [glue.join(units).encode()] if units else []
    return [glue.join(units[i : i + NGRAM]).encode() for i in range(len(units) - NGRAM + 1)]


def _child_datasketch(args: argparse.Namespace) -> dict[str, Any]:
    import xxhash  # noqa: PLC0415
    from datasketch import MinHash, MinHashLSH  # noqa: PLC0415

    hashfunc = xxhash.xxh32_intdigest
    base = MinHash(num_perm=PERMUTATIONS, seed=1, hashfunc=hashfunc)
    shards = _shards(Path(args.corpus))
    out = Path(args.child_dir) / "output"
    out.mkdir(parents=True)
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=PERMUTATIONS, params=(BANDS, ROWS))
    removed: list[str] = []
    docs = 0
    for shard in shards:
        with shard.open("rb") as f, (out / shard.name).open("wb") as g:
            for line in f:
                record = json.loads(line)
                docs += 1
                chinese = record["metadata"].get("language") == "zh"
                grams = _shingles(record["text"], chinese)
                if not grams:
                    g.write(line)
                    continue
                sketch = MinHash(
                    num_perm=PERMUTATIONS,
                    hashfunc=hashfunc,
                    permutations=base.permutations,
                    scheme=base.scheme,
                )
                sketch.update_batch(grams)
                if lsh.query(sketch):
                    removed.append(record["id"])
                else:
                    g.write(line)
                lsh.insert(record["id"], sketch, check_duplication=False)
    return {"wall_s": time.perf_counter() - started, "docs": docs, "removed": removed}


# --- engine: datatrove --------------------------------------------------------------------
def _datatrove_tokenizer(kind: str) -> Any:
    from datatrove.utils.word_tokenizers import WordTokenizer  # noqa: PLC0415

    class Whitespace(WordTokenizer):
        """Split on whitespace; with ``han`` also split Han text into single characters."""

        def __init__(self, han: bool) -> None:
            super().__init__("eng")
            self.han = re.compile(HAN_RE.pattern) if han else None

        def word_tokenize(self, text: str) -> list[str]:
            words = text.split()
            if not self.han:
                return words
            out: list[str] = []
            for word in words:
                if word.isascii() or not self.han.search(word):
                    out.append(word)
                else:
                    out.extend(word)
            return out

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    return Whitespace(han=kind == "han")


def _child_datatrove(args: argparse.Namespace) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor  # noqa: PLC0415
    from datatrove.pipeline.dedup.minhash import (  # noqa: PLC0415
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader  # noqa: PLC0415
    from datatrove.pipeline.writers import JsonlWriter  # noqa: PLC0415
    from datatrove.utils.typeshelper import Languages  # noqa: PLC0415

    engine = args.engine_child
    pattern = "zh-*.jsonl" if engine == "datatrove-zh-default" else "*.jsonl"
    corpus = Path(args.corpus)
    files = len(_shards(corpus, pattern))
    if engine == "datatrove-zh-default":
        language: Any = Languages.chinese
    else:
        language = _datatrove_tokenizer("han" if engine == "datatrove-han" else "ws")
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=1)
    work = Path(args.child_dir)
    workers = args.workers

    def reader() -> Any:
        return JsonlReader(str(corpus), glob_pattern=pattern, compression=None)

    stages = {
        "signatures": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupSignature(str(work / "sigs"), config=config, language=language),
            ],
            tasks=files,
            workers=workers,
            logging_dir=str(work / "logs" / "1"),
        ),
        "buckets": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)
            ],
            tasks=BANDS,
            workers=workers,
            logging_dir=str(work / "logs" / "2"),
        ),
        "cluster": LocalPipelineExecutor(
            pipeline=[MinhashDedupCluster(str(work / "buckets"), str(work / "ids"), config=config)],
            tasks=1,
            logging_dir=str(work / "logs" / "3"),
        ),
        "filter": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupFilter(
                    str(work / "ids"),
                    exclusion_writer=JsonlWriter(str(work / "removed"), compression=None),
                ),
                JsonlWriter(str(work / "output"), compression=None),
            ],
            tasks=files,
            workers=workers,
            logging_dir=str(work / "logs" / "4"),
        ),
    }
    times: dict[str, float] = {}
    started = time.perf_counter()
    for name, executor in stages.items():
        begun = time.perf_counter()
        executor.run()
        times[name] = time.perf_counter() - begun
    wall = time.perf_counter() - started
    record = struct.calcsize(f"<{ROWS}{config.hash_config.struct_format}I")
    signed = sum(p.stat().st_size for p in (work / "sigs" / "bucket_000").glob("*.sig")) // record
    removed: list[str] = []
    for part in sorted((work / "removed").glob("*.jsonl")):
        with part.open(encoding="utf-8") as f:
            removed += [json.loads(line)["id"] for line in f]
    docs = sum(1 for shard in _shards(corpus, pattern) for _ in shard.open("rb"))
    return {"wall_s": wall, "stages": times, "docs": docs, "signed": signed, "removed": removed}


def _child(args: argparse.Namespace) -> None:
    engine = args.engine_child
    if engine == "kaiyuan":
        result = _child_kaiyuan(args)
    elif engine == "datasketch":
        result = _child_datasketch(args)
    else:
        result = _child_datatrove(args)
    (Path(args.child_dir) / "result.json").write_text(json.dumps(result))


# --- why recall differs: the planted pairs under each rule --------------------------------
def _diagnose(corpus: Path, truth: Truth, thresholds: list[float]) -> dict[str, Any]:
    """For every planted pair: true shingle Jaccard, LSH band collision, Kaiyuan's estimate."""
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np  # noqa: PLC0415

    from kaiyuan.services.curation.neardup import MinHashParams, signatures  # noqa: PLC0415

    wanted = set(truth.dup_of) | set(truth.dup_of.values())
    texts: dict[str, str] = {}
    for shard in _shards(corpus):
        with shard.open(encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record["id"] in wanted:
                    texts[record["id"]] = record["text"]
    params = MinHashParams()
    report: dict[str, Any] = {}
    for lang in ("en", "zh"):
        pairs = [(src, dup) for dup, src in truth.dup_of.items() if dup.startswith(lang)]
        if not pairs:
            continue
        chinese = lang == "zh"
        langs = [lang] * len(pairs)
        a = signatures([texts[s] for s, _ in pairs], langs, params)
        b = signatures([texts[d] for _, d in pairs], langs, params)
        estimate = (a == b).mean(axis=1)
        band = (a == b).reshape(len(pairs), BANDS, ROWS).all(axis=2).any(axis=1)
        true = []
        for src, dup in pairs:
            x, y = set(_shingles(texts[src], chinese)), set(_shingles(texts[dup], chinese))
            true.append(len(x & y) / len(x | y))
        jaccard = np.array(true)
        row: dict[str, Any] = {
            "pairs": len(pairs),
            "jaccard_mean": float(jaccard.mean()),
            "jaccard_p10": float(np.percentile(jaccard, 10)),
            "band_collision": float(band.mean()),
        }
        for t in thresholds:
            row[f"jaccard>={t:g}"] = float((jaccard >= t).mean())
            row[f"band&estimate>={t:g}"] = float((band & (estimate >= t)).mean())
        report[lang] = row
    return report


# --- the report ---------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def _pts(ours: float | None, ref: float | None) -> str:
    if ours is None or ref is None:
        return "     -"
    return f"{100 * (ours - ref):+6.1f}"


def _table(runs: list[Run], ours: Run) -> list[str]:
    head = (
        f"{'engine':<18}{'wall s':>8}{'docs/s':>9}{'peak MB':>9}{'recall en':>10}"
        f"{'recall zh':>10}{'false rm':>9}{'ours/ref docs/s':>16}{'d rec en':>9}{'d rec zh':>9}"
    )
    lines = [head, "-" * len(head)]
    for run in runs:
        s = run.score
        ratio = dren = drzh = ""
        if run.engine != "kaiyuan":
            ratio = f"{ours.docs_per_s / run.docs_per_s:.2f}x"
            dren = _pts(ours.score["recall_en"], s["recall_en"])
            drzh = _pts(ours.score["recall_zh"], s["recall_zh"])
        lines.append(
            f"{run.name:<18}{run.wall_s:8.1f}{run.docs_per_s:9,.0f}{run.peak_mb:9.0f}"
            f"{_pct(s['recall_en']):>10}{_pct(s['recall_zh']):>10}{s['false_removals']:9,d}"
            f"{ratio:>16}{dren:>9}{drzh:>9}"
        )
    return lines


def _median(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def _stage_line(run: Run) -> str:
    stages = run.result.get("stages") or {}
    parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    if "signed" in run.result:
        parts += f"; {run.result['signed']:,} docs signed"
    return (
        f"  {run.name:<16} stages s: {parts or '-'}; child process {run.process_s:.1f} s, "
        f"CPU ~{run.cpu_s:.1f} s, largest process {run.peak_single_mb:.0f} MB, "
        f"load before {run.load[0]:.2f}"
    )


def _diagnostic_lines(diag: dict[str, Any], thresholds: list[float]) -> list[str]:
    head = f"{'lang':<6}{'pairs':>7}{'J mean':>8}{'J p10':>7}{'band':>8}"
    for t in thresholds:
        head += f"{f'J>={t:g}':>9}{f'Ky@{t:g}':>9}"
    lines = [head, "-" * len(head)]
    for lang, row in diag.items():
        line = (
            f"{lang:<6}{row['pairs']:>7,}{row['jaccard_mean']:8.3f}{row['jaccard_p10']:7.3f}"
            f"{_pct(row['band_collision']):>8}"
        )
        for t in thresholds:
            line += f"{_pct(row[f'jaccard>={t:g}']):>9}{_pct(row[f'band&estimate>={t:g}']):>9}"
        lines.append(line)
    return lines


def _targets(ours: Run, refs: list[Run]) -> tuple[bool, list[str]]:
    ok = True
    lines = []
    for ref in refs:
        faster = ours.docs_per_s >= ref.docs_per_s
        rec = [ours.score[f"recall_{x}"] or 0.0 for x in ("en", "zh")]
        base = [ref.score[f"recall_{x}"] or 0.0 for x in ("en", "zh")]
        recall = all(o >= r for o, r in zip(rec, base, strict=True))
        zh = ours.score["planted_zh"] == 0 or rec[1] >= rec[0] - 0.05
        met = faster and recall and zh
        ok &= met
        lines.append(
            f"  vs {ref.name}: docs/s {ours.docs_per_s / ref.docs_per_s:.2f}x "
            f"({'ok' if faster else 'MISSED'}), recall >= reference "
            f"({'ok' if recall else 'MISSED'}), Chinese deduplicated like English "
            f"({'ok' if zh else 'MISSED'}) -> {'MET' if met else 'MISSED'}"
        )
    return ok, lines


def _measure(args: argparse.Namespace, corpus: Path, truth: Truth, work: Path) -> list[Run]:
    plan: list[tuple[str, float]] = [("kaiyuan", t) for t in args.threshold]
    if not args.skip_datatrove:
        plan += [("datatrove-ws", 0.0), ("datatrove-han", 0.0)]
        if truth.planted["zh"]:
            plan.append(("datatrove-zh-default", 0.0))
    if not args.skip_datasketch:
        plan.append(("datasketch", 0.0))
    runs: list[Run] = []
    for _ in range(args.repeat):
        for engine, threshold in plan:
            load = os.getloadavg()
            got = _run_child(args, engine, corpus, work, threshold)
            langs = ("zh",) if engine == "datatrove-zh-default" else ("en", "zh")
            score = _score(truth, set(got["result"].pop("removed")), langs)
            run = Run(engine=engine, score=score, load=load, **got)
            log(
                f"{run.name}: {run.wall_s:.1f} s, {run.docs_per_s:,.0f} docs/s, "
                f"{run.peak_mb:.0f} MB, recall {score}"
            )
            runs.append(run)
    return runs


def _report(args: argparse.Namespace, corpus: Path, truth: Truth, runs: list[Run]) -> int:
    names = list(dict.fromkeys(r.name for r in runs))
    best = {name: _median([r for r in runs if r.name == name]) for name in names}
    zh_default = best.pop("datatrove-zh-default", None)
    table_runs = list(best.values())
    ours = table_runs[0]
    refs = [r for r in table_runs if r.engine.startswith("datatrove")]
    manifest = json.loads((corpus / "manifest.json").read_text())
    print()
    print(
        f"corpus: {len(truth.ids):,} docs ({manifest['counts']['en']:,} en, "
        f"{manifest['counts']['zh']:,} zh, {manifest['bytes'] / MB:.0f} MB jsonl), planted "
        f"near-dups en {truth.planted['en']:,}, zh {truth.planted['zh']:,}; workers "
        f"{args.workers}; {BANDS} bands x {ROWS} rows (Kaiyuan {args.bands} x {args.rows}), "
        f"{NGRAM}-grams; "
        f"median of {args.repeat} run(s); ratios: {ours.name} / row"
    )
    print("\n".join(_table(table_runs, ours)))
    print("\n".join(_stage_line(r) for r in [*table_runs, *([zh_default] if zh_default else [])]))
    if zh_default:
        s = zh_default.score
        docs = zh_default.result["docs"]
        print(
            f"\ndatatrove with Languages.chinese (default tokenizer) on the Chinese part only: "
            f"{zh_default.result['signed']:,} of {docs:,} Chinese docs got a signature "
            f"({docs - zh_default.result['signed']:,} silently skipped); recall zh "
            f"{_pct(s['recall_zh']).strip()} ({s['found_zh']:,} of {s['planted_zh']:,}), "
            f"false removals {s['false_removals']:,}, {zh_default.wall_s:.1f} s"
        )
    ok, lines = _targets(ours, refs) if refs else (True, [])
    if lines:
        print(f"\ntarget: {ours.name} >= datatrove docs/s at >= its recall, Chinese deduplicated")
        print("\n".join(lines))
    diag: dict[str, Any] = {}
    if not args.no_diagnose:
        thresholds = sorted({0.5, 0.6, 0.7, *args.threshold})
        diag = _diagnose(corpus, truth, thresholds)
        print(
            "\nplanted pairs: true shingle Jaccard J; 'band' = the pair shares an LSH band "
            "(what datatrove and datasketch remove on); 'Ky@t' = shares a band and Kaiyuan's "
            "signature estimate >= t (the pair-level rule of neardup.cluster)"
        )
        print("\n".join(_diagnostic_lines(diag, thresholds)))
    if args.json:
        payload = {
            "config": {**manifest["config"], "workers": args.workers, "repeat": args.repeat},
            "corpus": manifest,
            "runs": [
                {k: getattr(r, k) for k in Run.__slots__} | {"docs_per_s": r.docs_per_s}
                for r in runs
            ],
            "diagnostics": diag,
            "target_met": ok,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    return 0 if ok or not args.check else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--zh-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="working folder (corpus kept for reuse); default a temp dir")
    parser.add_argument(
        "--threshold", type=float, nargs="+", default=[0.7], help="Kaiyuan thresholds, a run each"
    )
    parser.add_argument("--bands", type=int, default=BANDS, help="Kaiyuan's LSH bands")
    parser.add_argument("--rows", type=int, default=ROWS, help="Kaiyuan's rows per band")
    parser.add_argument("--skip-datasketch", action="store_true")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the planted-pair table")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--datatrove-python", default=sys.executable)
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--engine-child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine_child:
        _child(args)
        return 0
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kaiyuan-curation-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        log(f"load average {os.getloadavg()}, working in {out}")
        corpus = _corpus(out, args.docs, args.zh_share, args.seed)
        truth = _truth(corpus)
        runs = _measure(args, corpus, truth, out / "work")
        code = _report(args, corpus, truth, runs)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    else:
        log(f"load average after {os.getloadavg()}")
        return code
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
