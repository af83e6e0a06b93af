"""Which files of a revision hold its weights, and opening them as one canonical model.

A repository may hold one checkpoint in several forms: sharded safetensors with their index,
several GGUF quantisations, an ONNX export in a folder. The fingerprint is taken of one of
them, in this order of preference: safetensors (the full-precision original, by convention),
then the largest GGUF (the highest precision), then ONNX. Pickle checkpoints (`.bin`, `.pt`)
are never unpickled, so a revision holding only those has nothing to fingerprint.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.layout import ModelLayout, build_layout
from kaiyuan.services.provenance.safetensorsfile import INDEX_SUFFIX, read_index, read_safetensors
from kaiyuan.services.provenance.source import LocalWeightFile, ParsedWeights, WeightFile
from kaiyuan.services.provenance.vocab import Vocabulary, from_tokenizer_json, from_vocab_txt

MAX_CONFIG_BYTES = 1024 * 1024
WEIGHT_SUFFIXES = (".safetensors", INDEX_SUFFIX, ".gguf", ".onnx")


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The files one fingerprint reads, as paths in the repository."""

    format: str  # safetensors | gguf | onnx
    weights: tuple[str, ...]
    index: str | None = None
    config: str | None = None
    tokenizer: str | None = None


@dataclass(frozen=True, slots=True)
class OpenedModel:
    files: ModelFiles
    parsed: tuple[ParsedWeights, ...]
    layout: ModelLayout


def is_weight_path(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def choose_files(sizes: Mapping[str, int]) -> ModelFiles | None:
    """The weight files to fingerprint among a revision's files (path → size), if any."""
    paths = set(sizes)
    chosen = _safetensors(paths, sizes)
    if chosen is None:
        ggufs = [p for p in paths if p.endswith(".gguf")]
        if ggufs:
            chosen = ModelFiles("gguf", (max(ggufs, key=lambda p: (sizes[p], p)),))
    if chosen is None:
        onnxs = [p for p in paths if p.endswith(".onnx")]
        if onnxs:
            chosen = ModelFiles("onnx", (max(onnxs, key=lambda p: (sizes[p], p)),))
    if chosen is None:
        return None
    folder = posixpath.dirname(chosen.index or chosen.weights[0])
    return ModelFiles(
        chosen.format,
        chosen.weights,
        chosen.index,
        _beside(paths, folder, ("config.json",)),
        _beside(paths, folder, ("tokenizer.json", "vocab.txt")),
    )


def _safetensors(paths: set[str], sizes: Mapping[str, int]) -> ModelFiles | None:
    indexes = sorted(p for p in paths if p.endswith(INDEX_SUFFIX))
    if indexes:
        index = min(indexes, key=lambda p: (p.count("/"), p))
        return ModelFiles("safetensors", (), index)
    files = [p for p in paths if p.endswith(".safetensors") and "adapter" not in p]
    if not files:
        return None
    by_folder: dict[str, list[str]] = {}
    for path in files:
        by_folder.setdefault(posixpath.dirname(path), []).append(path)
    folder = max(by_folder, key=lambda f: (sum(sizes[p] for p in by_folder[f]), -f.count("/")))
    group = sorted(by_folder[folder])
    preferred = [p for p in group if posixpath.basename(p) == "model.safetensors"]
    return ModelFiles("safetensors", tuple(preferred or group))


def _beside(paths: set[str], folder: str, names: tuple[str, ...]) -> str | None:
    for where in dict.fromkeys((folder, "")):
        for name in names:
            candidate = posixpath.join(where, name) if where else name
            if candidate in paths:
                return candidate
    return None


def open_model(
    files: ModelFiles,
    open_file: Callable[[str], WeightFile],
    read_small: Callable[[str, int], bytes],
    exists: Callable[[str], bool],
) -> OpenedModel:
    """Parse the chosen files and build the canonical layout; InvalidInput if unreadable."""
    weights = files.weights
    if files.index is not None:
        shard_map = read_index(read_small(files.index, 16 * 1024 * 1024), files.index)
        folder = posixpath.dirname(files.index)
        weights = tuple(
            sorted({posixpath.join(folder, s) if folder else s for s in shard_map.values()})
        )
        missing = [p for p in weights if not exists(p)]
        if missing:
            raise InvalidInputError(f"{files.index} names shards that are missing: {missing[:3]}")
        files = ModelFiles(files.format, weights, files.index, files.config, files.tokenizer)
    parsed = tuple(_parse(files.format, path, open_file, exists) for path in weights)
    if files.index is not None:
        _check_index(parsed, shard_map, files.index)
    config = _config(read_small(files.config, MAX_CONFIG_BYTES)) if files.config else None
    tokenizer = files.tokenizer
    vocabulary = (
        Vocabulary.deferred(lambda: _vocabulary(tokenizer, read_small)) if tokenizer else None
    )
    layout = build_layout(parsed, config=config, vocabulary=vocabulary)
    return OpenedModel(files, parsed, layout)


def _parse(
    kind: str, path: str, open_file: Callable[[str], WeightFile], exists: Callable[[str], bool]
) -> ParsedWeights:
    if kind == "safetensors":
        return read_safetensors(open_file(path))
    # The GGUF and ONNX readers pull in their libraries (onnx brings protobuf): imported when a
    # model needs them, not whenever the hub starts.
    if kind == "gguf":
        from kaiyuan.services.provenance.gguffile import read_gguf  # noqa: PLC0415

        return read_gguf(open_file(path))
    from kaiyuan.services.provenance.onnxfile import read_onnx  # noqa: PLC0415

    folder = posixpath.dirname(path)

    def sibling(name: str) -> WeightFile | None:
        target = posixpath.join(folder, name) if folder else name
        return open_file(target) if exists(target) else None

    return read_onnx(open_file(path), sibling=sibling)


def _check_index(parsed: tuple[ParsedWeights, ...], shard_map: dict[str, str], index: str) -> None:
    where = {t.name: posixpath.basename(p.file.name) for p in parsed for t in p.tensors}
    for tensor, shard in shard_map.items():
        if where.get(tensor) != shard:
            raise InvalidInputError(f"{index}: tensor {tensor!r} is not in {shard}")


def _config(raw: bytes) -> dict[str, object] | None:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInputError("config.json is not UTF-8 JSON") from None
    return document if isinstance(document, dict) else None


def _vocabulary(path: str, read_small: Callable[[str, int], bytes]) -> Vocabulary:
    raw = read_small(path, 64 * 1024 * 1024)
    return from_vocab_txt(raw) if path.endswith("vocab.txt") else from_tokenizer_json(raw)


def open_local(path: Path) -> OpenedModel:
    """A model on local disk: a folder (as a repository is laid out) or one weight file."""
    folder = path if path.is_dir() else path.parent
    sizes = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    }
    if path.is_file():
        chosen_name = path.name
        for other in [p for p in sizes if is_weight_path(p) and p != chosen_name]:
            del sizes[other]
    chosen = choose_files(sizes)
    if chosen is None:
        raise InvalidInputError(f"{path}: no safetensors, GGUF or ONNX weights found")

    def read_small(name: str, limit: int) -> bytes:
        target = folder / name
        if target.stat().st_size > limit:
            raise InvalidInputError(f"{target} is larger than {limit} bytes")
        return target.read_bytes()

    return open_model(
        chosen,
        lambda name: LocalWeightFile(folder / name, name),
        read_small,
        sizes.__contains__,
    )
