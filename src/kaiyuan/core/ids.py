"""Identifiers and the rules every name from outside must pass: repo ids, paths, refs, shas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kaiyuan.core.errors import InvalidInputError

MAX_NAME_LENGTH = 96
MAX_PATH_LENGTH = 1024
MAX_REF_LENGTH = 256

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_HEX40 = re.compile(r"^[0-9a-f]{40}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_SHORT_HEX = re.compile(r"^[0-9a-f]{7,40}\Z")
# Characters git forbids in ref names (git-check-ref-format), plus controls (C0, DEL, C1) and
# space; a lone surrogate is not text at all (nothing can store it as UTF-8).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f~^:?*\[\\\ud800-\udfff]")
# Control characters (Unicode category Cc: C0, DEL and C1, e.g. NEL U+0085).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RESERVED_NAMES = frozenset(
    {"api", "cas", "datasets", "spaces", "models", "settings", "new", "login"}
)


class RepoKind(StrEnum):
    MODEL = "model"
    DATASET = "dataset"

    @classmethod
    def parse(cls, value: str | None) -> RepoKind:
        """Accept the wire spellings: `model`, `dataset`, their plurals, or nothing (model)."""
        if value is None or value in {"model", "models"}:
            return cls.MODEL
        if value in {"dataset", "datasets"}:
            return cls.DATASET
        raise InvalidInputError(f"unsupported repository type {value!r}: use 'model' or 'dataset'")

    @property
    def plural(self) -> str:
        return f"{self.value}s"


def validate_name(value: str, what: str = "name") -> str:
    """A user, organisation or repository name: 1-96 of [A-Za-z0-9._-], no `--` or `..`."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.match(value) or "--" in value or ".." in value or value.endswith((".", "-")):
        raise InvalidInputError(
            f"{what} {value!r} is not valid: use letters, digits, '-', '_' and '.', start with a "
            "letter or digit, no '--' or '..', not ending with '-' or '.'"
        )
    if value.endswith(".git"):
        raise InvalidInputError(f"{what} {value!r} must not end with '.git'")
    return value


def validate_namespace(value: str) -> str:
    validate_name(value, "namespace")
    if value.lower() in _RESERVED_NAMES:
        raise InvalidInputError(f"namespace {value!r} is reserved")
    return value


@dataclass(frozen=True, slots=True)
class RepoId:
    """`namespace/name`, both validated."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        validate_name(self.name, "repository name")

    @classmethod
    def parse(cls, value: str) -> RepoId:
        if not isinstance(value, str) or value.count("/") != 1:
            raise InvalidInputError(f"repository id {value!r} must have the form 'namespace/name'")
        namespace, name = value.split("/")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def validate_path(value: str) -> str:
    """A path inside a repository: relative, `/`-separated; no `..`, `.`, empty parts, NUL."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError("path must be a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
        raise InvalidInputError(f"path is longer than {MAX_PATH_LENGTH} bytes")
    if _CONTROL.search(value):
        raise InvalidInputError("path contains a NUL or control character")
    if value.startswith("/") or "\\" in value or re.match(r"^[A-Za-z]:", value):
        raise InvalidInputError(f"path {value!r} must be relative and use '/' as separator")
    parts = value.split("/")
    if any(p in {"", ".", ".."} for p in parts):
        raise InvalidInputError(f"path {value!r} has an empty, '.' or '..' component")
    if any(p.lower() == ".git" for p in parts):
        raise InvalidInputError("paths may not contain a '.git' component")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError("path is not valid UTF-8") from exc
    return value


def normalize_folder(value: str) -> str:
    """A folder prefix: the path rules, with trailing slashes stripped; '' is the root."""
    stripped = value.strip("/") if isinstance(value, str) else value
    if stripped == "":
        return ""
    return validate_path(stripped)


def validate_ref_name(value: str) -> str:
    """A branch or tag name, after git-check-ref-format; `/` is allowed (`feature/x`)."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError("branch or tag name must be a non-empty string")
    if len(value) > MAX_REF_LENGTH:
        raise InvalidInputError(f"branch or tag name is longer than {MAX_REF_LENGTH} characters")
    if (
        _REF_FORBIDDEN.search(value)
        or ".." in value
        or "//" in value
        or "@{" in value
        or value == "@"
        or value.startswith(("/", "-", "."))
        or value.endswith(("/", ".", ".lock"))
        or "/." in value
    ):
        raise InvalidInputError(f"{value!r} is not a valid branch or tag name")
    if is_full_sha(value):
        raise InvalidInputError("a branch or tag name may not look like a commit id")
    return value


def is_full_sha(value: str) -> bool:
    return bool(_HEX40.match(value))


def is_short_sha(value: str) -> bool:
    return bool(_SHORT_HEX.match(value))


def is_sha256(value: str) -> bool:
    return bool(_HEX64.match(value))


def validate_sha256(value: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InvalidInputError(f"{value!r} is not a sha256 digest (64 lowercase hex characters)")
    return value


def validate_sha1(value: str) -> str:
    if not isinstance(value, str) or not _HEX40.match(value):
        raise InvalidInputError(f"{value!r} is not a commit id (40 lowercase hex characters)")
    return value
