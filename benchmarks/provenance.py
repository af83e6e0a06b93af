"""What weight provenance costs, and how well it tells derivatives from independent models.

1. Fingerprint vs plain read. For each model file, the time to fingerprint it (every tensor
   hashed, the sketch computed) against the time to read the same file once sequentially (the
   reference), both with the file in the page cache, medians of `--repeat` runs; the ratio's
   target is ≤ 2. Each run is a fresh process, whose peak resident memory above a bare
   interpreter with the same imports is reported: the target is ≤ 1 GB whatever the model's
   size, shown on a synthetic llama-shaped checkpoint of `--large-gb` gigabytes besides the real
   models.
2. Pairwise verification: the time of one `compare` (alignment, layer grid, invariants, nulls).
3. `--suite`: the accuracy table of the derivative suite (real models, real training), the
   same cases `tests/integration/test_provenance_suite.py` asserts on.

Run::

    python benchmarks/provenance.py                  # 1 and 2 on the real models + a 2 GB model
    python benchmarks/provenance.py --large-gb 8     # a larger synthetic checkpoint
    python benchmarks/provenance.py --suite          # also the accuracy table
    sudo python benchmarks/provenance.py --cold      # also from disk, the page cache dropped
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

BLOCK = 16 * 1024 * 1024


def _child(mode: str, target: str) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    # A hub worker is a long-lived process: the format readers (and the libraries they pull in,
    # `gguf` and `onnx`) are imported once, not for every model, so not while timing.
    from kaiyuan.services.provenance import gguffile, onnxfile  # noqa: F401, PLC0415
    from kaiyuan.services.provenance.fingerprint import fingerprint  # noqa: PLC0415
    from kaiyuan.services.provenance.model import open_local  # noqa: PLC0415

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if mode == "read":
        with Path(target).open("rb") as handle:
            while handle.read(BLOCK):
                pass
    else:
        fingerprint(open_local(Path(target)))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps({"seconds": seconds, "extra_mb": (peak - base) / 1024}) + "\n")


def drop_page_cache() -> None:
    """Empty the kernel's page cache (needs root), so the next read comes from the disk."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def measure(mode: str, target: Path, repeat: int, *, cold: bool = False) -> tuple[float, float]:
    """Median seconds and the largest extra peak memory (MB) over `repeat` fresh processes."""
    times, peaks = [], []
    for _ in range(repeat):
        if cold:
            drop_page_cache()
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(target)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        times.append(result["seconds"])
        peaks.append(result["extra_mb"])
    return statistics.median(times), max(peaks)


def synthetic_checkpoint(folder: Path, gigabytes: float) -> Path:
    """A llama-shaped bf16 checkpoint of about `gigabytes`, written tensor by tensor."""
    width, heads, kv, ffn, vocab = 2048, 16, 4, 5632, 64000
    per_layer = 2 * (2 * width * width + 2 * width * width * kv // heads + 3 * width * ffn)
    layers = max(2, int((gigabytes * 1e9 - 4 * vocab * width) / per_layer))
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, width))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (width,)),
            (p + "self_attn.q_proj.weight", (width, width)),
            (p + "self_attn.k_proj.weight", (width * kv // heads, width)),
            (p + "self_attn.v_proj.weight", (width * kv // heads, width)),
            (p + "self_attn.o_proj.weight", (width, width)),
            (p + "mlp.gate_proj.weight", (ffn, width)),
            (p + "mlp.up_proj.weight", (ffn, width)),
            (p + "mlp.down_proj.weight", (width, ffn)),
        ]
    shapes.append(("lm_head.weight", (vocab, width)))
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes:
        size = 2 * math.prod(shape)
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    pattern = (rng.normal(0, 0.02, 1 << 22).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16
    )
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "model.safetensors").open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for _, shape in shapes:
            left = math.prod(shape)
            while left:
                take = min(left, len(pattern))
                out.write(pattern[:take].tobytes())
                left -= take
    config = {"model_type": "llama", "num_attention_heads": heads, "num_key_value_heads": kv}
    (folder / "config.json").write_text(json.dumps(config))
    vocabulary = {token: i for i, token in enumerate(_byte_level_tokens(vocab))}
    (folder / "tokenizer.json").write_text(  # written as tokenizers writes it: plain UTF-8
        json.dumps({"model": {"type": "BPE", "vocab": vocabulary}}, ensure_ascii=False),
        encoding="utf-8",
    )
    return folder


def _byte_level_tokens(count: int) -> list[str]:
    """A GPT-2-style vocabulary of `count` tokens holding the sketch's canonical tokens.

    The synthetic model then gets a sketch, as a real one does.
    """
    from kaiyuan.services.provenance.sketch import CANONICAL_TOKENS  # noqa: PLC0415
    from kaiyuan.services.provenance.vocab import spellings  # noqa: PLC0415

    tokens = list(dict.fromkeys(spellings(t, "bpe-bytes")[0] for t in CANONICAL_TOKENS))
    tokens += [f"Ġw{i}" for i in range(count - len(tokens))]
    return tokens[:count]


def weights_file(target: Path) -> Path:
    if target.is_file():
        return target
    return target / "model.safetensors"


def fingerprint_table(targets: list[tuple[str, Path]], repeat: int, *, cold: bool = False) -> None:
    where = "from disk (page cache dropped before each run)" if cold else "from the page cache"
    print(f"fingerprint vs plain read, both {where}")
    print(f"{'model':<34}{'size':>9}{'read s':>9}{'fprint s':>10}{'ratio':>7}{'peak MB':>9}")
    for label, target in targets:
        size = weights_file(target).stat().st_size
        measure("read", weights_file(target), 1)  # into the page cache
        read, _ = measure("read", weights_file(target), repeat, cold=cold)
        took, peak = measure("fingerprint", target, repeat, cold=cold)
        print(
            f"{label:<34}{size / 1e6:>8.0f}M{read:>9.3f}{took:>10.3f}{took / read:>7.2f}"
            f"{peak:>9.0f}"
        )


def compare_table(pairs: list[tuple[str, Path, Path]], repeat: int) -> None:
    from kaiyuan.services.provenance.compare import compare  # noqa: PLC0415
    from kaiyuan.services.provenance.model import open_local  # noqa: PLC0415

    print(f"\n{'pair':<44}{'verify s':>10}{'score':>8}{'thresh':>8}  relation")
    for label, a, b in pairs:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            result = compare(open_local(a).layout, open_local(b).layout)
            times.append(time.perf_counter() - started)
        print(
            f"{label:<44}{statistics.median(times):>10.2f}{result.score:>8.3f}"
            f"{result.threshold:>8.3f}  {result.relation.value}"
        )


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large-gb", type=float, default=2.0)
    parser.add_argument("--suite", action="store_true", help="also print the accuracy table")
    parser.add_argument(
        "--cold", action="store_true", help="also measure from disk (drops the page cache: root)"
    )
    args = parser.parse_args()
    from tests.provenance_models.real import fetch_real_models  # noqa: PLC0415

    real = fetch_real_models()
    with tempfile.TemporaryDirectory(prefix="kaiyuan-provenance-bench-") as tmp:
        large = synthetic_checkpoint(Path(tmp) / "large", args.large_gb)
        fingerprint_table(
            [
                ("all-MiniLM-L6-v2 (safetensors F32)", real.minilm),
                ("SmolLM2-135M (GGUF Q4_1)", real.smollm2),
                ("Gemma-3-270M (GGUF Q4_K_M)", real.gemma3),
                (f"synthetic llama ({args.large_gb:g} GB BF16)", large),
            ],
            args.repeat,
        )
        if args.cold:
            fingerprint_table(
                [
                    ("SmolLM2-135M (GGUF Q4_1)", real.smollm2),
                    (f"synthetic llama ({args.large_gb:g} GB BF16)", large),
                ],
                args.repeat,
                cold=True,
            )
        compare_table(
            [
                ("MiniLM vs itself", real.minilm, real.minilm),
                ("SmolLM2 vs Gemma-3 (independent)", real.smollm2, real.gemma3),
                ("SmolLM2 vs itself", real.smollm2, real.smollm2),
            ],
            args.repeat,
        )
    if args.suite:
        from tests.provenance_models.suite import accuracy_table  # noqa: PLC0415

        print()
        print(accuracy_table(real))
    return 0


if __name__ == "__main__":
    sys.exit(main())
