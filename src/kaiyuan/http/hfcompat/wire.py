"""The JSON shapes the HF clients read, built from domain records. No logic beyond translation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kaiyuan.core.digests import lfs_pointer
from kaiyuan.core.ids import RepoKind
from kaiyuan.core.models import Commit, Entry, FileEntry, Ref, RefKind, Repo
from kaiyuan.core.scanning import FileScan, ImportSafety, ScanStatus


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def pointer_size(entry: FileEntry) -> int:
    return len(lfs_pointer(entry.sha256, entry.size))


def entry_json(entry: Entry, security: dict[str, FileScan] | None = None) -> dict[str, Any]:
    """A tree / paths-info item; with `security` (expanded listings), its scan verdict."""
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
    if security is not None:
        item["securityFileStatus"] = security_json(security.get(entry.sha256))
    return item


_LEVELS = (ImportSafety.INNOCUOUS, ImportSafety.SUSPICIOUS, ImportSafety.DANGEROUS)


def security_json(scan: FileScan | None) -> dict[str, Any]:
    """`securityFileStatus` as the Hub writes it (huggingface_hub reads all three keys)."""
    if scan is None:
        return {"status": ScanStatus.UNSCANNED.value, "avScan": None, "pickleImportScan": None}
    pickle_scan = None
    if scan.imports:
        worst = max(_LEVELS.index(i.safety) for i in scan.imports)
        pickle_scan = {
            "highestSafetyLevel": _LEVELS[worst].value,
            "imports": [
                {"module": i.module, "name": i.name, "safety": i.safety.value} for i in scan.imports
            ],
        }
    return {
        "status": scan.status.value,
        "avScan": None,  # no antivirus engine; the content scan is what `status` reports
        "pickleImportScan": pickle_scan,
        "format": scan.format,
        "findings": list(scan.findings),
    }


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
