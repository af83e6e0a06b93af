"""The scanner in the commit path: policy, nothing half-committed, verdicts per content, backfill.

The blob store here is the in-memory one, so contents are read by ranges as from an object
store (the live-hub tests read local files).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from kaiyuan.bootstrap import Hub, assemble
from kaiyuan.config import Settings, load_settings
from kaiyuan.core.errors import InvalidInputError, PolicyViolationError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry, Principal, Scope
from kaiyuan.core.scanning import ScanStatus
from kaiyuan.services.commits import CommitRequest, PutLfsFile, PutRegularFile
from kaiyuan.storage.blobs.memory import MemoryBlobStore
from kaiyuan.storage.sql.store import SqlMetadataStore

MODEL = RepoKind.MODEL
RID = RepoId("alice", "m")


class _Shell:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


def make_hub(tmp_path: Path, **settings: object) -> Hub:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    built = assemble(Settings(data_dir=tmp_path, **settings), store, MemoryBlobStore())  # type: ignore[arg-type]
    built.accounts.create_user("alice")
    return built


def alice(hub: Hub) -> Principal:
    return hub.accounts.authenticate(hub.accounts.create_token("alice", Scope.WRITE))


def paths(hub: Hub, who: Principal) -> set[str]:
    at = hub.reads.resolve(who, MODEL, RID, "main")
    return {e.path for e in hub.reads.list_tree(at, "", recursive=True) if isinstance(e, FileEntry)}


def commit(hub: Hub, who: Principal, **files: bytes) -> None:
    ops = [PutRegularFile(name.replace("__", "."), data) for name, data in files.items()]
    hub.commits.commit(who, MODEL, RID, "main", CommitRequest("add", "", ops))  # type: ignore[arg-type]


def test_an_unsafe_file_refuses_the_whole_commit(tmp_path: Path) -> None:
    hub = make_hub(tmp_path)
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    with pytest.raises(PolicyViolationError, match=r"weights\.bin is unsafe.*posix\.system"):
        commit(hub, who, config__json=b"{}", weights__bin=pickle.dumps(_Shell()))
    assert paths(hub, who) == {".gitattributes"}  # the harmless file did not land either
    commit(hub, who, config__json=b"{}", blob__bin=os.urandom(300) + b"\x00")
    assert paths(hub, who) == {".gitattributes", "config.json", "blob.bin"}


def test_a_strict_hub_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, scan_refuse="unsafe, caution,error")
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    with pytest.raises(PolicyViolationError, match="caution"):
        commit(hub, who, blob__bin=os.urandom(300) + b"\x00")
    commit(hub, who, notes__md="# 说明".encode())
    assert paths(hub, who) == {".gitattributes", "notes.md"}


def test_backfill_scans_what_has_no_current_verdict(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, scan_refuse="")
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    commit(hub, who, a__pkl=pickle.dumps(_Shell()), b__json=b'{"x": 1}')
    at = hub.reads.resolve(who, MODEL, RID, "main")
    digests = [e.sha256 for e in hub.reads.list_tree(at, "", recursive=True)]  # type: ignore[union-attr]
    current = hub.scanning.verdicts(digests)
    assert {v.status for v in current.values()} == {ScanStatus.SAFE, ScanStatus.UNSAFE}
    stale = current[digests[1]]
    with hub.metadata.session(write=True) as session:  # as if judged by an older scanner
        session.save_scan(replace(stale, scanner="kaiyuan-scan-0"))
    assert digests[1] not in hub.scanning.verdicts(digests)
    counts = hub.scanning.backfill()
    assert sum(counts.values()) == 3 and counts[ScanStatus.UNSAFE] == 1
    assert set(hub.scanning.verdicts(digests)) == set(digests)


@pytest.mark.parametrize("value", ["bogus", "unsafe;error", "unsafe,,", "safe"])
def test_a_refuse_list_that_names_no_verdict_is_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="SCAN_REFUSE"):
        load_settings(scan_refuse=value)


def test_contents_of_other_repositories_are_never_scanned_for_a_commit(tmp_path: Path) -> None:
    hub = make_hub(tmp_path)
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    other = hub.repos.create(who, MODEL, RepoId("alice", "private"), private=True)
    writer = hub.blobs.writer()
    writer.write(pickle.dumps(_Shell()))
    blob = writer.commit()
    with hub.metadata.session(write=True) as session:  # uploaded to the other repository only
        session.add_blob(blob, other.created_at)
        session.add_repo_object(other.pk, blob.sha256)
    request = CommitRequest("add", "", [PutLfsFile("w.bin", blob.sha256, blob.size)])
    with pytest.raises(InvalidInputError, match="was not uploaded"):
        hub.commits.commit(who, MODEL, RID, "main", request)
    assert hub.scanning.verdicts([blob.sha256]) == {}  # nothing was read, nothing is told
