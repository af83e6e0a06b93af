"""The curation pipeline's configuration: a versioned file in the dataset repository.

`curation.yaml` at the repository root names the inputs, the output and the stages in order,
each with its options. It is read with the safe YAML loader and checked strictly: an unknown
stage or option, a wrong type or a value out of range is refused with a message naming it.
The config hash (SHA-256 of the canonical JSON of the checked config, defaults filled in) goes
into every output record, so a record says exactly which pipeline produced it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import validate_path, validate_ref_name

CONFIG_FILE = "curation.yaml"
CONFIG_VERSION = 1
MAX_CONFIG_BYTES = 64 * 1024
MAX_STAGES = 32
MAX_SHARD_ROWS = 10_000_000
MAX_PATTERN = 200
RESERVED_FOLDER = "curation"  # the report and the removed-record list
# Where curated shards may not go: the contributions, the hub's files, the card and config.
RESERVED_OUTPUTS = frozenset({"contributions", RESERVED_FOLDER, "README.md", CONFIG_FILE})

DEFAULT_CONFIG: dict[str, Any] = {
    "version": CONFIG_VERSION,
    "inputs": ["contributions/**"],
    "output": {"branch": "main", "path": "data", "shard_rows": 100_000},
    "stages": [
        {"normalize": {}},
        {"langid": {}},
        {"chinese": {"convert": "t2s"}},
        {"exact_dedup": {}},
        {"near_dedup": {}},
        {"quality": {}},
        {"pii": {}},
        {"domains": {}},
    ],
}


@dataclass(frozen=True, slots=True)
class StageConfig:
    name: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CurationConfig:
    inputs: tuple[str, ...]
    output_branch: str
    output_path: str
    shard_rows: int
    stages: tuple[StageConfig, ...]
    source: str = field(default="default")  # "default" or the config file's blob sha

    @property
    def canonical(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "inputs": list(self.inputs),
            "output": {
                "branch": self.output_branch,
                "path": self.output_path,
                "shard_rows": self.shard_rows,
            },
            "stages": [{s.name: s.options} for s in self.stages],
        }

    @property
    def hash(self) -> str:
        text = json.dumps(self.canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def selects(self, path: str) -> bool:
        if path.startswith((self.output_path + "/", RESERVED_FOLDER + "/")):
            return False  # never curate the hub's own output again
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.inputs)


# Each stage's options are checked by a function that returns them with defaults filled in.
OptionChecker = Callable[[Mapping[str, Any]], dict[str, Any]]


def parse_config(
    text: str | None, checkers: Mapping[str, OptionChecker], source: str = "default"
) -> CurationConfig:
    """A checked config from the file's text (None: the defaults)."""
    raw = _load(text)
    _only(raw, {"version", "inputs", "output", "stages"}, CONFIG_FILE)
    if raw.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        raise InvalidInputError(f"{CONFIG_FILE}: version must be {CONFIG_VERSION}")
    inputs = raw.get("inputs", DEFAULT_CONFIG["inputs"])
    if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_STAGES:
        raise InvalidInputError(f"{CONFIG_FILE}: inputs must be a non-empty list of patterns")
    for pattern in inputs:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            raise InvalidInputError(f"{CONFIG_FILE}: an input pattern must be a short string")
    branch, path, shard_rows = _output(raw.get("output", {}))
    return CurationConfig(
        tuple(inputs),
        branch,
        path,
        shard_rows,
        _stages(raw.get("stages", DEFAULT_CONFIG["stages"]), checkers),
        source,
    )


def _load(text: str | None) -> dict[str, Any]:
    if text is None:
        return DEFAULT_CONFIG
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInputError(f"{CONFIG_FILE} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{CONFIG_FILE} must be a mapping")
    return raw


def _output(output: object) -> tuple[str, str, int]:
    if not isinstance(output, dict):
        raise InvalidInputError(f"{CONFIG_FILE}: output must be a mapping")
    _only(output, {"branch", "path", "shard_rows"}, "output")
    merged = {**DEFAULT_CONFIG["output"], **output}
    branch, path, shard_rows = merged["branch"], merged["path"], merged["shard_rows"]
    if not isinstance(branch, str):
        raise InvalidInputError(f"{CONFIG_FILE}: output.branch must be a branch name")
    validate_ref_name(branch)
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"{CONFIG_FILE}: output.path must be a folder")
    validate_path(path.strip("/"))
    if path.strip("/").split("/", 1)[0] in RESERVED_OUTPUTS | {".gitattributes"}:
        raise InvalidInputError(f"{CONFIG_FILE}: output.path may not be {path!r}")
    if not _int_in(shard_rows, 1, MAX_SHARD_ROWS):
        raise InvalidInputError(f"{CONFIG_FILE}: output.shard_rows must be 1..{MAX_SHARD_ROWS}")
    return branch, path.strip("/"), shard_rows


def _stages(stages: object, checkers: Mapping[str, OptionChecker]) -> tuple[StageConfig, ...]:
    if not isinstance(stages, list) or len(stages) > MAX_STAGES:
        raise InvalidInputError(f"{CONFIG_FILE}: stages must be a list of at most {MAX_STAGES}")
    checked: list[StageConfig] = []
    for entry in stages:
        name, options = _stage_entry(entry)
        if any(s.name == name for s in checked):
            raise InvalidInputError(f"{CONFIG_FILE}: stage {name!r} appears twice")
        if name not in checkers:
            known = ", ".join(sorted(checkers))
            raise InvalidInputError(f"{CONFIG_FILE}: unknown stage {name!r} (known: {known})")
        try:
            checked.append(StageConfig(name, checkers[name](options)))
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{CONFIG_FILE}: stage {name!r}: {exc}") from None
    return tuple(checked)


def _stage_entry(entry: object) -> tuple[str, Mapping[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        if options is None:
            options = {}
        if isinstance(name, str) and isinstance(options, dict):
            return name, options
    raise InvalidInputError(f"{CONFIG_FILE}: a stage is a name or a one-key mapping of options")


def _only(mapping: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    unknown = [str(k) for k in mapping if k not in allowed]
    if unknown:
        raise InvalidInputError(f"{where}: unknown key {unknown[0][:60]!r}")


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def options(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The given options over the defaults; an unknown option is a ValueError."""
    for key in given:
        if key not in defaults:
            raise ValueError(f"unknown option {str(key)[:60]!r}")
    return {**defaults, **given}
