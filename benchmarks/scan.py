"""What scanning a pushed file costs, against reading the same file once (the reference).

For each kind of file a hub receives, a file of `--gb` gigabytes (smaller for the compressed
one) is scanned by `kaiyuan.services.distribution.scan` and read once sequentially, both from
the page cache, medians of `--repeat` runs in this process; the table gives seconds, the scan's
throughput and the ratio. The formats that run no code are validated from their headers, so
their scan costs nothing next to the read; a raw pickle is walked opcode by opcode (its tensor
bytes skipped, not read into memory); a compressed pickle is unpacked and walked.

Run::

    python benchmarks/scan.py               # 1 GB files
    python benchmarks/scan.py --gb 4 --repeat 5
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kaiyuan.services.distribution.scan import ScanLimits, scan  # noqa: E402

BLOCK = 16 * 1024 * 1024


def _tensors(gigabytes: float) -> dict[str, np.ndarray]:
    count = max(1, round(gigabytes * 1e9 / (64 * 1024 * 1024)))
    rng = np.random.default_rng(0)
    block = rng.standard_normal(16 * 1024 * 1024, dtype=np.float32)
    return {f"layer.{i}.weight": block.copy() for i in range(count)}


def make_files(folder: Path, gigabytes: float) -> list[tuple[str, Path]]:
    from safetensors.numpy import save_file  # noqa: PLC0415

    tensors = _tensors(gigabytes)
    safetensors = folder / "model.safetensors"
    save_file(tensors, str(safetensors))
    raw = folder / "model.pkl"
    with raw.open("wb") as out:
        pickle.dump(tensors, out, protocol=4)
    torch_zip = folder / "pytorch_model.bin"
    with zipfile.ZipFile(torch_zip, "w") as archive:  # torch's layout: a data.pkl, raw storages
        archive.writestr("model/data.pkl", pickle.dumps(list(tensors), protocol=2))
        for i, values in enumerate(tensors.values()):
            archive.writestr(f"model/data/{i}", values.tobytes())
    small = dict(list(tensors.items())[: max(1, len(tensors) // 8)])
    compressed = folder / "model.pkl.gz"
    with gzip.open(compressed, "wb", compresslevel=1) as out:
        pickle.dump(small, out, protocol=4)
    return [
        ("safetensors", safetensors),
        ("raw pickle (numpy arrays)", raw),
        ("torch zip", torch_zip),
        ("gzip of a pickle", compressed),
    ]


def plain_read(path: Path) -> None:
    with path.open("rb") as handle:
        while handle.read(BLOCK):
            pass


def scan_file(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as handle:
        found = scan(
            io.BufferedReader(handle, BLOCK), size, "0" * 64, ScanLimits(max_unpacked_bytes=1 << 40)
        )
    return found.status.value


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kaiyuan-scan-bench-") as tmp:
        files = make_files(Path(tmp), args.gb)
        print(
            f"{'file':<28}{'size':>9}{'read s':>9}{'scan s':>9}{'scan GB/s':>11}{'ratio':>8}"
            f"  {'verdict'}"
        )
        for label, path in files:
            size = path.stat().st_size
            plain_read(path)  # into the page cache
            read = median_seconds(lambda p=path: plain_read(p), args.repeat)
            took = median_seconds(lambda p=path: scan_file(p), args.repeat)
            print(
                f"{label:<28}{size / 1e6:>8.0f}M{read:>9.3f}{took:>9.3f}"
                f"{size / 1e9 / took:>11.2f}{took / read:>8.2f}  {scan_file(path)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
