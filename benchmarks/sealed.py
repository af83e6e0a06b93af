"""Loading a sealed model against loading the same model with plain `safetensors` (the reference).

A checkpoint of `--gb` gigabytes (float32 tensors of mixed sizes, as a transformer has) is
written once, sealed once (1 MiB chunks, what the hub writes), and then loaded whole from the page
cache by both, alternately, `--repeat` times in this process; medians are compared:

- numpy: `safetensors.numpy.load_file` vs `SealedCheckpoint(framework="np").load()`;
- torch: `safetensors.torch.load_file` vs `SealedCheckpoint(framework="pt").load()`, each
  followed by a first use that reads every byte (a sum of each tensor). safetensors' torch
  loader maps the file (no copy: the tensors are the page cache, read when used); a sealed file
  cannot be mapped as plaintext, so this row is a decrypting copy against no copy;
- one tensor at a time (lazy): `safe_open(...).get_tensor` for each vs `get_tensor` for each;
- into a model's allocated tensors: `load_file` then `copy_` into each vs `load_into`, which
  decrypts each chunk straight into the parameter it belongs to.

Every sealed load decrypts and authenticates every byte (AES-256-GCM) and the arrays are
checked equal to the reference's once. The target is sealed >= 1.0x the plain speed (a ratio of
plain time / sealed time). It also prints what sealing costs (per GB, once per publish) and
what the scanner costs per GB on the same checkpoint and on a torch zip of the same tensors.

Run::

    python benchmarks/sealed.py              # 1 GB
    python benchmarks/sealed.py --gb 2 --repeat 5
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kaiyuan.client.sealed_checkpoint import SealedCheckpoint  # noqa: E402
from kaiyuan.services.distribution.scan import ScanLimits, scan  # noqa: E402
from kaiyuan.services.distribution.sealing import new_data_key, seal  # noqa: E402

NAME = "model.safetensors"


def make_checkpoint(folder: Path, gigabytes: float) -> Path:
    """Layers like a transformer's: large matrices plus many small vectors."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    rng = np.random.default_rng(0)
    block = rng.standard_normal(16 * 1024 * 1024, dtype=np.float32)  # 64 MiB
    tensors: dict[str, np.ndarray] = {}
    total, layer = 0, 0
    while total < gigabytes * 1e9:
        for part, size in (
            ("attn.qkv", 4096 * 3072),
            ("mlp.up", 4096 * 2048),
            ("mlp.down", 2048 * 4096),
        ):
            tensors[f"layers.{layer}.{part}.weight"] = block[:size].copy()
            total += size * 4
        for part in ("norm1", "norm2", "attn.qkv.bias"):
            tensors[f"layers.{layer}.{part}"] = rng.standard_normal(4096, dtype=np.float32)
        layer += 1
    path = folder / NAME
    save_file(tensors, str(path))
    return path


def median_seconds(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
        del result
    return statistics.median(times)


def sealed_load(path: Path, key: bytes, framework: str) -> dict[str, Any]:
    opened = SealedCheckpoint(path, key, NAME, framework=framework)
    try:
        return opened.load()
    finally:
        opened.close()


def touched(tensors: dict[str, Any]) -> dict[str, Any]:
    """Read every byte of every tensor once (a sum): what first use of a mapped file costs."""
    for values in tensors.values():
        float(values.sum())
    return tensors


def sealed_lazy(path: Path, key: bytes) -> int:
    opened = SealedCheckpoint(path, key, NAME, framework="np")
    try:
        return sum(int(opened.get_tensor(name).nbytes) for name in opened.keys())  # noqa: SIM118
    finally:
        opened.close()


def plain_into(path: Path, parameters: dict[str, Any]) -> None:
    """What loading a checkpoint into an allocated model does: copy each tensor into place."""
    from safetensors.torch import load_file  # noqa: PLC0415

    for name, values in load_file(str(path)).items():
        parameters[name].copy_(values)


def sealed_into(path: Path, key: bytes, parameters: dict[str, Any]) -> None:
    opened = SealedCheckpoint(path, key, NAME, framework="pt")
    try:
        opened.load_into(parameters)
    finally:
        opened.close()


def plain_lazy(path: Path) -> int:
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(path), framework="np") as handle:
        return sum(int(handle.get_tensor(name).nbytes) for name in handle.keys())  # noqa: SIM118


def check_equal(plain: Path, sealed: Path, key: bytes) -> None:
    from safetensors.numpy import load_file  # noqa: PLC0415

    reference, ours = load_file(str(plain)), sealed_load(sealed, key, "np")
    if reference.keys() != ours.keys() or not all(
        np.array_equal(values, ours[name]) for name, values in reference.items()
    ):
        raise SystemExit("the sealed load differs from the plain one")


def scan_seconds(path: Path) -> float:
    size = path.stat().st_size
    started = time.perf_counter()
    with path.open("rb") as handle:
        scan(handle, size, "0" * 64, ScanLimits())
    return time.perf_counter() - started


def torch_zip_of(plain: Path, folder: Path) -> Path:
    from safetensors.numpy import load_file  # noqa: PLC0415

    tensors = load_file(str(plain))
    target = folder / "pytorch_model.bin"
    with zipfile.ZipFile(target, "w") as archive:  # torch's layout: a data.pkl, raw storages
        archive.writestr("model/data.pkl", pickle.dumps(list(tensors), protocol=2))
        for i, values in enumerate(tensors.values()):
            archive.writestr(f"model/data/{i}", values.tobytes())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import safetensors.numpy  # noqa: PLC0415
    import safetensors.torch  # noqa: PLC0415
    import torch  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="kaiyuan-sealed-bench-") as tmp:
        folder = Path(tmp)
        plain = make_checkpoint(folder, args.gb)
        size = plain.stat().st_size
        key = new_data_key()
        sealed = folder / "model.sealed"
        started = time.perf_counter()
        with plain.open("rb") as source, sealed.open("wb") as out:
            seal(source, size, out, key, NAME)
        sealing = time.perf_counter() - started
        check_equal(plain, sealed, key)
        parameters = {
            name: torch.empty_like(values)
            for name, values in safetensors.torch.load_file(str(plain)).items()
        }
        rows = [
            (
                "whole file, numpy",
                lambda: safetensors.numpy.load_file(str(plain)),
                lambda: sealed_load(sealed, key, "np"),
            ),
            (
                "torch, then a sum of each",
                lambda: touched(safetensors.torch.load_file(str(plain))),
                lambda: touched(sealed_load(sealed, key, "pt")),
            ),
            (
                "tensor by tensor, numpy",
                lambda: plain_lazy(plain),
                lambda: sealed_lazy(sealed, key),
            ),
            (
                "into a model's tensors",
                lambda: plain_into(plain, parameters),
                lambda: sealed_into(sealed, key, parameters),
            ),
        ]
        gb = size / 1e9
        print(
            f"checkpoint: {gb:.2f} GB, sealed {sealed.stat().st_size / 1e9:.2f} GB; "
            f"median of {args.repeat}, page cache warm"
        )
        print(
            f"{'load':26} {'plain s':>9} {'sealed s':>9} {'plain GB/s':>11} "
            f"{'sealed GB/s':>12} {'speed ratio':>12}"
        )
        for label, reference, ours in rows:
            reference(), ours()  # warm the page cache and the allocator
            plain_s = median_seconds(reference, args.repeat)
            sealed_s = median_seconds(ours, args.repeat)
            print(
                f"{label:26} {plain_s:9.3f} {sealed_s:9.3f} {gb / plain_s:11.2f} "
                f"{gb / sealed_s:12.2f} {plain_s / sealed_s:11.2f}x"
            )
        print(f"sealing (once, at publish): {sealing:.2f} s, {gb / sealing:.2f} GB/s")
        zipped = torch_zip_of(plain, folder)
        pickled = folder / "model.pkl"
        with pickled.open("wb") as out:
            pickle.dump(safetensors.numpy.load_file(str(plain)), out, protocol=4)
        for label, path in (
            ("safetensors", plain),
            ("torch zip (pickle)", zipped),
            ("raw pickle of arrays", pickled),
        ):
            seconds = statistics.median(scan_seconds(path) for _ in range(args.repeat))
            per_gb = seconds / (path.stat().st_size / 1e9)
            print(
                f"scan {label:20} {seconds:.3f} s for {path.stat().st_size / 1e9:.2f} GB "
                f"= {per_gb:.3f} s per GB"
            )


if __name__ == "__main__":
    main()
