"""The web pages over a live server: what they show, to whom, and what garbage gets back.

Browsing as a person does it is in tests/browser/; this file checks the pages' contents and
edges with plain HTTP (and the stock client to fill the hub).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.support.hubs import ServerInfo, start_server

CARD = b"""---
license: apache-2.0
base_model: acme/base
tags: [text-generation, chinese]
language: [zh, en]
---
# Web model

A model for the <b>web</b> tests. See [usage](docs/usage.md) and ![logo](assets/logo.png).

<script>document.title = "owned"</script>
<img src=x onerror="document.title='owned'">
[click](javascript:alert(1))

| metric | value |
|--------|-------|
| acc    | 0.5   |
"""
BIG_TEXT = b"line of text\n" * 50_000  # 650 kB: the page shows the first 512 KiB
BINARY = bytes(range(256)) * 64


@dataclass
class Site:
    server: ServerInfo
    client: httpx.Client
    feature_sha: str

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def signed_in(self, token: str) -> Iterator[httpx.Client]:
        """A browser-like client (it keeps cookies) signed in with `token`."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            answer = client.post("/-/login", data={"token": token}, follow_redirects=False)
            assert answer.status_code == 303, answer.text
            yield client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    with start_server(root, "sqlite", None, admins="alice") as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        api.create_repo("acme/web-model")
        api.create_commit(
            "acme/web-model",
            [
                CommitOperationAdd("README.md", CARD),
                CommitOperationAdd("config.json", b'{"hidden_size": 8}\n'),
                CommitOperationAdd("docs/usage.md", b"# Usage\n"),
                CommitOperationAdd("big.txt", BIG_TEXT),
                CommitOperationAdd("weights.bin", BINARY),
            ],
            commit_message="first files",
        )
        api.create_tag("acme/web-model", tag="v1.0")
        api.create_branch("acme/web-model", branch="feature/x")
        feature = api.upload_file(
            path_or_fileobj=b"new\n",
            path_in_repo="docs/new.md",
            repo_id="acme/web-model",
            revision="feature/x",
            commit_message="a file on the branch",
        )
        api.create_repo("acme/web-data", repo_type="dataset")
        api.upload_file(
            path_or_fileobj=b"a,b\n1,2\n",
            path_in_repo="data/train.csv",
            repo_id="acme/web-data",
            repo_type="dataset",
        )
        api.create_repo("alice/secret-model", private=True)
        api.create_repo("acme/gated-web")
        api.upload_file(
            path_or_fileobj=b"gated text content\n",
            path_in_repo="notes.txt",
            repo_id="acme/gated-web",
        )
        api.update_repo_settings("acme/gated-web", gated="manual")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield Site(server, client, feature.oid)


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_home_lists_models_and_datasets(site: Site) -> None:
    page = site.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for repo in ("/acme/web-model", "/datasets/acme/web-data", "/acme/gated-web"):
        assert repo in links(page.text)
    assert "secret-model" not in page.text
    activity = page.text.split('id="activity"')[1].split("</section>")[0]
    assert "first files" in activity and "/acme/web-model/commit/" in activity
    assert "/datasets/acme/web-data" in links(site.get("/datasets").text)
    assert "/acme/web-model" not in links(site.get("/datasets").text)


def test_search_finds_by_name(site: Site) -> None:
    page = site.get("/-/search", params={"q": "web-mo"})
    assert page.status_code == 200
    assert "/acme/web-model" in links(page.text)
    assert "/datasets/acme/web-data" not in links(page.text)
    hidden = site.get("/-/search", params={"q": "secret"}).text
    assert "secret-model" not in hidden and "Models (0)" in hidden


def test_the_card_page_shows_metadata_and_a_safe_card(site: Site) -> None:
    page = site.get("/acme/web-model")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Web model</h1>" in html
    assert "<td>0.5</td>" in html  # tables render
    for shown in ("apache-2.0", "acme/base", "text-generation", "zh"):
        assert f'<span class="chip">{shown}</span>' in html
    # relative links point into the repository at the commit shown
    assert re.search(r'href="/acme/web-model/blob/[0-9a-f]{40}/docs/usage.md"', html)
    assert re.search(r'src="/acme/web-model/resolve/[0-9a-f]{40}/assets/logo.png"', html)
    assert "<script" not in html.lower()
    assert "onerror" not in html and 'href="javascript' not in html
    policy = page.headers["content-security-policy"]
    assert "script-src 'none'" in policy
    assert page.headers["cache-control"] == "private, no-store"


def test_files_at_a_tag_and_a_branch_with_a_slash(site: Site) -> None:
    at_tag = site.get("/acme/web-model/tree/v1.0")
    assert at_tag.status_code == 200
    for name in ("config.json", "big.txt", "weights.bin", "docs/"):
        assert name in at_tag.text
    assert "/acme/web-model/resolve/v1.0/weights.bin" in links(at_tag.text)
    assert "docs/new.md" not in at_tag.text
    branch = site.get("/acme/web-model/tree/feature%2Fx/docs")
    assert branch.status_code == 200
    assert "/acme/web-model/blob/feature%2Fx/docs/new.md" in links(branch.text)
    sizes = dict(re.findall(r'blob/v1.0/([^"]+)">.*?data-bytes="(\d+)"', at_tag.text, re.DOTALL))
    assert sizes["weights.bin"] == str(len(BINARY))
    assert 'class="badge lfs"' in at_tag.text or 'class="badge xet"' in at_tag.text


def test_file_pages_preview_text_and_not_binary(site: Site) -> None:
    config = site.get("/acme/web-model/blob/main/config.json")
    assert "{&#34;hidden_size&#34;: 8}" in config.text or '{"hidden_size": 8}' in config.text
    big = site.get("/acme/web-model/blob/main/big.txt")
    assert "Showing the first" in big.text
    assert big.text.count("line of text") < BIG_TEXT.count(b"line of text")
    binary = site.get("/acme/web-model/blob/main/weights.bin")
    assert "binary" in binary.text and '<pre class="text">' not in binary.text
    download = site.get("/acme/web-model/resolve/main/weights.bin")
    assert download.content == BINARY


def test_history_and_a_commit_with_its_changed_files(site: Site) -> None:
    history = site.get("/acme/web-model/commits/feature%2Fx")
    assert "a file on the branch" in history.text and "first files" in history.text
    commit = site.get(f"/acme/web-model/commit/{site.feature_sha}")
    assert commit.status_code == 200
    assert re.search(
        r'badge added">added</span></td>\s*<td><a href="[^"]+">docs/new.md', commit.text
    )
    assert "Files changed (1)" in commit.text
    first = re.findall(r"/acme/web-model/commit/([0-9a-f]{40})\">first files", history.text)
    assert first
    assert "Files changed (5)" in site.get(f"/acme/web-model/commit/{first[0]}").text


def test_refs_page_lists_branches_and_tags(site: Site) -> None:
    page = site.get("/acme/web-model/refs")
    assert "/acme/web-model/tree/feature%2Fx" in links(page.text)
    assert "/acme/web-model/tree/v1.0" in links(page.text)


def test_a_dataset_has_the_same_pages(site: Site) -> None:
    for path in ("", "/tree/main", "/tree/main/data", "/blob/main/data/train.csv", "/refs"):
        page = site.get(f"/datasets/acme/web-data{path}")
        assert page.status_code == 200, path
    assert "1,2" in site.get("/datasets/acme/web-data/blob/main/data/train.csv").text


def test_private_repositories_only_after_signing_in(site: Site) -> None:
    assert site.get("/alice/secret-model").status_code == 404
    assert site.get("/alice/secret-model/tree/main").status_code == 404
    with site.signed_in(site.server.alice) as alice:
        assert alice.get("/alice/secret-model").status_code == 200
        home = alice.get("/").text
        assert "Your repositories" in home and "/alice/secret-model" in links(home)
        assert "/alice/secret-model" in links(alice.get("/alice").text)
        out = alice.post("/-/logout", follow_redirects=False)
        assert out.status_code == 303
        alice.cookies.clear()  # what the browser does with the expired cookie
        assert alice.get("/alice/secret-model").status_code == 404
    with site.signed_in(site.server.bob) as bob:
        assert bob.get("/alice/secret-model").status_code == 404


def test_a_gated_repository_shows_its_card_but_not_its_files(site: Site) -> None:
    card = site.get("/acme/gated-web")
    assert card.status_code == 200 and "gated" in card.text
    file_page = site.get("/acme/gated-web/blob/main/notes.txt")
    assert file_page.status_code == 200
    assert "gated text content" not in file_page.text and "restricted" in file_page.text
    with site.signed_in(site.server.tokens["alice_read"]) as member:
        assert "gated text content" in member.get("/acme/gated-web/blob/main/notes.txt").text


def test_sign_in_refuses_bad_tokens_foreign_forms_and_open_redirects(site: Site) -> None:
    bad = site.client.post("/-/login", data={"token": "ky_0000000000000000nope"})
    assert bad.status_code == 401 and "Invalid credentials" in bad.text
    assert "kaiyuan_session" not in bad.headers.get("set-cookie", "")
    empty = site.client.post("/-/login", data={"token": ""})
    assert empty.status_code == 401
    foreign = site.client.post(
        "/-/login", data={"token": site.server.alice}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:x"):
        answer = httpx.post(
            f"{site.server.url}/-/login",
            data={"token": site.server.alice, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/", target
    cookie = httpx.Client(base_url=site.server.url).post(
        "/-/login", data={"token": site.server.alice}, follow_redirects=False
    )
    set_cookie = cookie.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert site.server.alice not in cookie.headers["set-cookie"]


def test_the_admin_page_is_for_admins(site: Site) -> None:
    assert site.get("/-/admin", follow_redirects=False).status_code == 303
    with site.signed_in(site.server.alice) as alice:
        page = alice.get("/-/admin")
        assert page.status_code == 200 and "Deduplication saves" in page.text
    with site.signed_in(site.server.bob) as bob:
        assert bob.get("/-/admin").status_code == 403


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/nobody-here", 404),
        ("/acme/no-such-model", 404),
        ("/acme/web-model/tree/no-such-branch", 404),
        ("/acme/web-model/tree/main/no/such/folder", 404),
        ("/acme/web-model/blob/main/no-such-file", 404),
        ("/acme/web-model/blob/main", 400),  # names no file
        ("/acme/web-model/blob/main/docs", 404),  # a folder is not a file
        ("/acme/web-model/commit/" + "0" * 40, 404),
        ("/acme/web-model/commits/main?p=abc", 400),
        ("/acme/web-model/commits/main?p=99999999999", 400),
        ("/acme/web-model/commits/main?p=-1", 400),
        ("/acme/web-model/tree/main/..%2F..%2Fetc", 400),
        ("/acme/web-model/blob/main/a%00b", 400),
        ("/acme/web-model/unknown-tab", 404),
        ("/acme/web-model/refs/extra", 400),
        ("/-/nothing", 404),
        ("/acme/" + "x" * 5000, 404),
        ("/acme/web-model/tree/" + "r" * 3000, 404),
        ("/%ff/x", 400),
    ],
)
def test_garbage_addresses_get_a_clear_answer(site: Site, path: str, status: int) -> None:
    answer = site.get(path)
    assert answer.status_code == status, answer.text[:300]
    assert "Traceback" not in answer.text and "internal error" not in answer.text


def test_garbage_sign_in_forms(site: Site) -> None:
    huge = site.client.post("/-/login", content=b"token=" + b"x" * 10_000)
    assert huge.status_code == 413
    not_utf8 = site.client.post(
        "/-/login",
        content=b"token=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code in {400, 401}
    fields = "&".join(f"f{i}=1" for i in range(50))
    many = site.client.post(
        "/-/login", content=fields, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert many.status_code == 400
    for cookie in (b"x", b"a.b.c", b"0" * 16 + b".9999999999." + b"0" * 64, b"\xe9\xff"):
        answer = httpx.get(
            f"{site.server.url}/alice/secret-model",
            headers={"Cookie": b"kaiyuan_session=" + cookie},
        )
        assert answer.status_code == 404  # a bad cookie is no one, never an error


def test_a_folder_of_many_files_lists_every_one(site: Site, tmp_path: Path) -> None:
    api = HfApi(endpoint=site.server.url, token=site.server.alice)
    api.create_repo("acme/many-files")
    api.create_commit(
        "acme/many-files",
        [CommitOperationAdd(f"shards/part-{i:05d}.txt", str(i).encode()) for i in range(600)],
        commit_message="many",
    )
    page = site.get("/acme/many-files/tree/main/shards")
    assert page.status_code == 200
    assert (
        len(re.findall(r"/acme/many-files/resolve/main/shards/part-\d{5}\.txt", page.text)) == 600
    )
    del tmp_path


def test_head_of_a_page(site: Site) -> None:
    answer = site.client.head("/acme/web-model")
    assert answer.status_code == 200 and answer.content == b""
