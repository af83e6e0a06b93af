"""Names and paths from outside are validated before anything uses them."""

from __future__ import annotations

import pytest

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind, validate_path, validate_ref_name


@pytest.mark.parametrize("value", ["alice/model", "Org-1/m.v2_x", "a/b"])
def test_good_repo_ids(value: str) -> None:
    assert str(RepoId.parse(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "model",
        "a/b/c",
        "/m",
        "a/",
        "a/..",
        "a/-x",
        "a/x--y",
        "a/x..y",
        "a/x.",
        "a/" + "x" * 97,
        "a/模型",
        "a/x y",
        "a/x\x00",
        "api/x",
        "a/x.git",
        "",
    ],
)
def test_bad_repo_ids(value: str) -> None:
    with pytest.raises(InvalidInputError):
        RepoId.parse(value)


@pytest.mark.parametrize(
    "value", ["a.txt", "dir/sub/file.bin", "数据/训练.jsonl", ".gitattributes", "a b/c"]
)
def test_good_paths(value: str) -> None:
    assert validate_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../b",
        "a//b",
        "./a",
        "a/.",
        "a\x00b",
        "a\\b",
        "C:/x",
        ".git/config",
        "a\nb",
        "x" * 1025,
        "a/",
    ],
)
def test_bad_paths(value: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_path(value)


@pytest.mark.parametrize("value", ["main", "feature/x", "refs/pr/1", "v1.0", "release-2024"])
def test_good_ref_names(value: str) -> None:
    assert validate_ref_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "/a",
        "a/",
        "a.lock",
        "a//b",
        "@",
        "x@{1}",
        "-x",
        ".x",
        "a/.b",
        "0" * 40,
        "x" * 300,
    ],
)
def test_bad_ref_names(value: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_ref_name(value)


def test_repo_kind_parsing() -> None:
    assert RepoKind.parse(None) is RepoKind.MODEL
    assert RepoKind.parse("datasets") is RepoKind.DATASET
    with pytest.raises(InvalidInputError):
        RepoKind.parse("space")
