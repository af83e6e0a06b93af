"""Storage of a model family on Kaiyuan: Xet chunk dedup vs whole-file LFS, uploaded both ways.

The script builds a family of safetensors models (bf16, shaped like a small decoder-only LLM):

* ``base``      the original release;
* ``finetune``  every transformer weight changed, embeddings unchanged (a full fine-tune);
* ``reshard``   the base's tensors re-split into two shards with an index (a re-upload);
* ``v2``        a new version with 10% of the tensors replaced;
* ``fp16``      the base converted to float16 (a second dtype).

It starts two fresh hubs (``kaiyuan serve`` with embedded defaults) and uploads the family
member by member with ``huggingface_hub.upload_folder`` in child processes: to one hub through
Xet (hf_xet, the client's default), to the other through plain LFS (``HF_HUB_DISABLE_XET=1``; the
hub chunks those uploads itself). Each upload uses a fresh ``HF_HOME``, as a different machine
would, unless ``--shared-cache``. After each member it reads the hub's ``physicalBytes`` from
``GET /api/storage`` and prints, cumulatively:

* ``LFS MB``: what a whole-file LFS store keeps (distinct files by sha256), the reference;
* ``Xet MB`` / ``via LFS MB``: what Kaiyuan stores when the family came through Xet / plain LFS;
* upload seconds of each path (timed inside the child, interpreter start-up excluded).

Target: stored bytes for the whole family <= 0.5x whole-file LFS. Run (about 2-4 minutes at the
default size on a 2-core machine)::

    python benchmarks/dedup.py                 # ~220 MB base
    python benchmarks/dedup.py --layers 2      # smaller and faster
    python benchmarks/dedup.py --json out.json --check   # exit 1 when the target is missed

Needs ``kaiyuan`` installed (``pip install -e .``), ``huggingface_hub`` with ``hf_xet`` and numpy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import struct
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from download import (
    BenchError,
    child_env,
    kaiyuan_server,
    log,
    run_checked,
)

MB = 1_000_000
TARGET = 0.5
MEMBERS = ("base", "finetune", "reshard", "v2", "fp16")


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    ffn: int
    layers: int


def tensor_names(shape: Shape) -> dict[str, tuple[int, ...]]:
    names: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (shape.vocab, shape.hidden)}
    for i in range(shape.layers):
        p = f"model.layers.{i}"
        for proj in ("q", "k", "v", "o"):
            names[f"{p}.self_attn.{proj}_proj.weight"] = (shape.hidden, shape.hidden)
        names[f"{p}.mlp.gate_proj.weight"] = (shape.ffn, shape.hidden)
        names[f"{p}.mlp.up_proj.weight"] = (shape.ffn, shape.hidden)
        names[f"{p}.mlp.down_proj.weight"] = (shape.hidden, shape.ffn)
        names[f"{p}.input_layernorm.weight"] = (shape.hidden,)
        names[f"{p}.post_attention_layernorm.weight"] = (shape.hidden,)
    names["model.norm.weight"] = (shape.hidden,)
    return names


def to_bf16(values: np.ndarray) -> bytes:
    """bfloat16 bytes (round to nearest even) of float32 values."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """The safetensors layout: u64 header length, JSON header, then the tensor bytes."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for _, _, data in tensors.values():
            handle.write(data)


def build_family(root: Path, shape: Shape, seed: int) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    names = tensor_names(shape)
    base = {
        name: (
            rng.standard_normal(dims, dtype=np.float32) * 0.02
            if len(dims) > 1
            else np.ones(dims, np.float32)
        )
        for name, dims in names.items()
    }
    folders = {member: root / member for member in MEMBERS}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(
            json.dumps({"model_type": "llama", **asdict(shape), "torch_dtype": "bfloat16"})
        )

    def bf16(values: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
        return {n: ("BF16", v.shape, to_bf16(v)) for n, v in values.items()}

    write_safetensors(folders["base"] / "model.safetensors", bf16(base))
    tuned = {
        name: value
        if "embed" in name
        else value * (1 + rng.standard_normal(value.shape, dtype=np.float32) * 1e-2)
        for name, value in base.items()
    }
    write_safetensors(folders["finetune"] / "model.safetensors", bf16(tuned))
    ordered = list(base)
    half = len(ordered) // 2
    index: dict[str, str] = {}
    for number, part in enumerate((ordered[:half], ordered[half:]), start=1):
        filename = f"model-{number:05d}-of-00002.safetensors"
        write_safetensors(folders["reshard"] / filename, bf16({n: base[n] for n in part}))
        index.update(dict.fromkeys(part, filename))
    (folders["reshard"] / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": index})
    )
    # one tensor in ten, spread over the layers (the embedding is the first; it stays)
    changed = set(ordered[5::10])
    v2 = {
        name: rng.standard_normal(value.shape, dtype=np.float32) * 0.02
        if name in changed
        else value
        for name, value in base.items()
    }
    write_safetensors(folders["v2"] / "model.safetensors", bf16(v2))
    write_safetensors(
        folders["fp16"] / "model.safetensors",
        {n: ("F16", v.shape, v.astype(np.float16).tobytes()) for n, v in base.items()},
    )
    return folders


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------

CHILD = """
import json, sys, time
from huggingface_hub import HfApi
endpoint, repo, folder = sys.argv[1:4]
api = HfApi(endpoint=endpoint)
api.create_repo(repo, exist_ok=True)
start = time.perf_counter()
api.upload_folder(folder_path=folder, repo_id=repo)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def upload(endpoint: str, token: str, repo: str, folder: Path, home: Path, *, xet: bool) -> float:
    env = child_env(home, HF_TOKEN=token)
    if xet:
        env.pop("HF_HUB_DISABLE_XET", None)
    out = run_checked([sys.executable, "-c", CHILD, endpoint, repo, str(folder)], env, timeout=1800)
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def physical_bytes(endpoint: str, token: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL this script built
        f"{endpoint}/api/storage", headers={"authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=600) as answer:  # noqa: S310
        return int(json.load(answer)["physicalBytes"])


@dataclass
class Row:
    member: str
    size_mb: float
    lfs_mb: float
    xet_mb: float
    via_lfs_mb: float
    xet_seconds: float
    lfs_seconds: float


def run(args: argparse.Namespace) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="kaiyuan-dedup-"))
    try:
        shape = Shape(args.vocab, args.hidden, args.ffn, args.layers)
        log(f"building the family in {work} ...")
        family = build_family(work / "family", shape, args.seed)
        rows: list[Row] = []
        seen: set[str] = set()
        lfs_total = 0
        with contextlib.ExitStack() as stack:
            hubs = {}
            for path in ("xet", "lfs"):
                (work / path).mkdir()
                hubs[path] = stack.enter_context(kaiyuan_server(work / path, work / f"home-{path}"))
            for member in MEMBERS:
                folder = family[member]
                size = sum(p.stat().st_size for p in files_of(folder))
                for p in files_of(folder):
                    digest = sha256_of(p)
                    if digest not in seen:
                        seen.add(digest)
                        lfs_total += p.stat().st_size
                seconds = {}
                for path, (endpoint, token) in hubs.items():
                    home = work / (f"home-{path}" if args.shared_cache else f"home-{path}-{member}")
                    log(f"uploading {member} through {path} ...")
                    seconds[path] = upload(
                        endpoint, token, f"bench/{member}", folder, home, xet=path == "xet"
                    )
                rows.append(
                    Row(
                        member,
                        size / MB,
                        lfs_total / MB,
                        physical_bytes(*hubs["xet"]) / MB,
                        physical_bytes(*hubs["lfs"]) / MB,
                        seconds["xet"],
                        seconds["lfs"],
                    )
                )
        return rows
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[Row]) -> None:
    print(
        f"{'member':10} {'size MB':>8} {'LFS MB':>8} {'Xet MB':>8} {'ratio':>6} "
        f"{'via LFS MB':>10} {'ratio':>6} {'Xet s':>6} {'LFS s':>6}"
    )
    for r in rows:
        print(
            f"{r.member:10} {r.size_mb:8.1f} {r.lfs_mb:8.1f} {r.xet_mb:8.1f} "
            f"{r.xet_mb / r.lfs_mb:6.2f} {r.via_lfs_mb:10.1f} {r.via_lfs_mb / r.lfs_mb:6.2f} "
            f"{r.xet_seconds:6.1f} {r.lfs_seconds:6.1f}"
        )
    last = rows[-1]
    print(
        f"family: stored {last.xet_mb / last.lfs_mb:.2f}x whole-file LFS through Xet, "
        f"{last.via_lfs_mb / last.lfs_mb:.2f}x through plain LFS (target <= {TARGET}x)"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=2816)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared-cache", action="store_true", help="one HF_HOME per hub")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        rows = run(args)
    except BenchError as exc:
        log(f"failed: {exc}")
        return 2
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    ratio = rows[-1].xet_mb / rows[-1].lfs_mb
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
