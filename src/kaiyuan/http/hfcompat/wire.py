"""The JSON shapes the HF clients read, built from domain records. No logic beyond translation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kaiyuan.core.digests import lfs_pointer
from kaiyuan.core.ids import RepoKind
from kaiyuan.core.models import Commit, Entry, FileEntry, Ref, RefKind, Repo


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def pointer_size(entry: FileEntry) -> int:
    return len(lfs_pointer(entry.sha256, entry.size))


def entry_json(entry: Entry) -> dict[str, Any]:
    """A tree / paths-info item."""
    if not isinstance(entry, FileEntry):
        return {"type": "directory", "oid": entry.oid, "size": 0, "path": entry.path}
    item: dict[str, Any] = {
        "type": "file",
        "oid": entry.oid,
        "size": entry.size,
        "path": entry.path,
    }
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": pointer_size(entry)}
    if entry.xet_hash:
        item["xetHash"] = entry.xet_hash
    return item


def sibling_json(entry: FileEntry, *, with_blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": entry.path}
    if with_blobs:
        item["size"] = entry.size
        item["blobId"] = entry.oid
        if entry.lfs:
            item["lfs"] = {
                "size": entry.size,
                "sha256": entry.sha256,
                "pointerSize": pointer_size(entry),
            }
    return item


def repo_summary_json(repo: Repo) -> dict[str, Any]:
    """An item of /api/models or /api/datasets."""
    repo_id = str(repo.repo_id)
    item: dict[str, Any] = {
        "_id": f"{repo.kind.value}-{repo.pk}",
        "id": repo_id,
        "author": repo.repo_id.namespace,
        "private": repo.private,
        "gated": repo.gated.value if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "createdAt": iso(repo.created_at),
        "lastModified": iso(repo.updated_at),
    }
    if repo.kind is RepoKind.MODEL:
        item["modelId"] = repo_id
    return item


def repo_info_json(
    repo: Repo,
    commit: Commit,
    files: list[FileEntry],
    *,
    with_blobs: bool,
    card_data: dict[str, Any] | None,
) -> dict[str, Any]:
    info = repo_summary_json(repo)
    info["sha"] = commit.sha
    info["lastModified"] = iso(commit.created_at)
    info["siblings"] = [sibling_json(f, with_blobs=with_blobs) for f in files]
    info["xetEnabled"] = True  # older clients (0.30-0.3x) use Xet only when this says so
    if with_blobs:
        info["usedStorage"] = sum(f.size for f in files)
    if card_data is not None:
        info["cardData"] = card_data
        tags = card_data.get("tags")
        if isinstance(tags, list):
            info["tags"] = [str(t) for t in tags]
    return info


def commit_json(commit: Commit, *, formatted: bool) -> dict[str, Any]:
    body = commit.message[len(commit.title) :].lstrip("\n")
    item: dict[str, Any] = {
        "id": commit.sha,
        "title": commit.title,
        "message": body,
        "authors": [{"user": commit.author}],
        "date": iso(commit.created_at),
    }
    if formatted:
        item["formatted"] = {"title": commit.title, "message": body}
    return item


def refs_json(refs: list[Ref], *, include_prs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"branches": [], "tags": [], "converts": []}
    for ref in refs:
        prefix = "refs/heads/" if ref.kind is RefKind.BRANCH else "refs/tags/"
        key = "branches" if ref.kind is RefKind.BRANCH else "tags"
        out[key].append({"name": ref.name, "ref": prefix + ref.name, "targetCommit": ref.target})
    if include_prs:
        out["pullRequests"] = []
    return out
