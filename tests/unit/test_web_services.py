"""What the web pages stand on: file-list diffs, previews, browser sessions, safe cards."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kaiyuan.bootstrap import Hub, assemble
from kaiyuan.config import Settings
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal, Scope
from kaiyuan.http.web.markdown import render_card
from kaiyuan.services.commits import CommitRequest, DeleteFile, DeleteFolder, PutRegularFile
from kaiyuan.services.websessions import WebSessions
from kaiyuan.storage.blobs.memory import MemoryBlobStore
from kaiyuan.storage.sql.store import SqlMetadataStore

MODEL = RepoKind.MODEL
RID = RepoId("alice", "m")


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    built = assemble(Settings(data_dir=tmp_path), store, MemoryBlobStore())
    built.accounts.create_user("alice")
    return built


def alice(hub: Hub) -> Principal:
    return hub.accounts.authenticate(hub.accounts.create_token("alice", Scope.WRITE))


def commit(hub: Hub, who: Principal, *ops: object) -> str:
    request = CommitRequest("change", "", list(ops), None)  # type: ignore[arg-type]
    return hub.commits.commit(who, MODEL, RID, "main", request).sha


def changes_of(hub: Hub, who: Principal, sha: str) -> list[tuple[str, str, int | None, int | None]]:
    at = hub.reads.resolve(who, MODEL, RID, sha)
    return [
        (c.path, c.change, c.old.size if c.old else None, c.new.size if c.new else None)
        for c in hub.reads.changes(at)
    ]


def test_changes_list_what_a_commit_added_modified_and_deleted(hub: Hub) -> None:
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    root = hub.reads.resolve(who, MODEL, RID, "main").commit.sha
    assert [c[:2] for c in changes_of(hub, who, root)] == [(".gitattributes", "added")]
    first = commit(
        hub,
        who,
        PutRegularFile("a/b/c.txt", b"1"),
        PutRegularFile("a/d.txt", b"22"),
        PutRegularFile("e.txt", b"333"),
    )
    assert changes_of(hub, who, first) == [
        ("a/b/c.txt", "added", None, 1),
        ("a/d.txt", "added", None, 2),
        ("e.txt", "added", None, 3),
    ]
    second = commit(
        hub,
        who,
        DeleteFolder("a/b/"),
        PutRegularFile("a/d.txt", b"4444"),
        DeleteFile("e.txt"),
        PutRegularFile("e.txt/inside", b"5"),  # a file becomes a folder of the same name
    )
    assert changes_of(hub, who, second) == [
        ("a/b/c.txt", "deleted", 1, None),
        ("a/d.txt", "modified", 2, 4),
        ("e.txt", "deleted", 3, None),
        ("e.txt/inside", "added", None, 1),
    ]
    same = commit(hub, who, PutRegularFile("a/d.txt", b"4444"))  # same content: nothing changed
    assert changes_of(hub, who, same) == []


def test_head_reads_only_the_start_of_a_file(hub: Hub) -> None:
    who = alice(hub)
    hub.repos.create(who, MODEL, RID, private=False)
    commit(hub, who, PutRegularFile("big.txt", b"0123456789" * 1000))
    at = hub.reads.resolve(who, MODEL, RID, "main")
    entry = hub.reads.file(at, "big.txt")
    assert hub.reads.head(entry, 15) == b"012345678901234"
    assert hub.reads.head(entry, 1 << 20) == b"0123456789" * 1000


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_session_names_the_token_and_ends_with_it(hub: Hub) -> None:
    clock = Clock()
    sessions = WebSessions(hub.accounts, b"k" * 32, max_age_seconds=3600, clock=clock)
    token = hub.accounts.create_token("alice", Scope.READ, "browser")
    principal, cookie = sessions.sign_in(token)
    assert principal.user == "alice"
    assert token not in cookie and token[23:] not in cookie  # the secret never leaves
    assert sessions.principal(cookie).user == "alice"
    token_id, expires, signature = cookie.split(".")
    forged = f"{token_id}.{int(expires) + 10_000}.{signature}"
    assert sessions.principal(forged).is_anonymous  # a longer life is not signed
    other_key = WebSessions(hub.accounts, b"x" * 32, max_age_seconds=3600, clock=clock)
    assert other_key.principal(cookie).is_anonymous
    for garbage in ("", "x", "a.b.c", cookie + "0", cookie.upper(), "..", "\x00", "é" * 90):
        assert sessions.principal(garbage).is_anonymous
    clock.now += timedelta(seconds=3601)
    assert sessions.principal(cookie).is_anonymous  # expired


def test_a_session_dies_with_its_token(hub: Hub) -> None:
    sessions = WebSessions(hub.accounts, b"k" * 32, max_age_seconds=3600)
    token = hub.accounts.create_token("alice", Scope.READ)
    _, cookie = sessions.sign_in(token)
    hub.accounts.delete_token(token)
    assert sessions.principal(cookie).is_anonymous


def test_signing_in_needs_a_valid_token(hub: Hub) -> None:
    from kaiyuan.core.errors import AuthenticationError

    sessions = WebSessions(hub.accounts, b"k" * 32, max_age_seconds=3600)
    for bad in ("", "ky_" + "0" * 40, "not a token"):
        with pytest.raises(AuthenticationError):
            sessions.sign_in(bad)


# --- cards ----------------------------------------------------------------------------------
HOSTILE_CARD = """# Model
<script>alert("s")</script>
<SCRIPT SRC=http://evil/x.js></SCRIPT>
<img src=x onerror="alert('i')">
<a href="javascript:alert('a')">a</a> <a href="JaVaScRiPt:alert('b')">b</a>
<a href="  javascript:alert('c')">c</a> <a href="jav&#x09;ascript:alert('d')">d</a>
<a href="data:text/html,<script>alert('e')</script>">e</a> <a href="vbscript:x">f</a>
[md link](javascript:alert('g')) ![md img](javascript:alert('h'))
<iframe src="http://evil"></iframe><object data="x"></object><embed src="x">
<form action="http://evil"><input name=q></form>
<div style="background:url(javascript:alert('j'))" onclick="alert('k')">styled</div>
<svg onload="alert('l')"><circle/></svg> <math><mi xlink:href="javascript:x">m</mi></math>
<style>body { display: none }</style><base href="http://evil/"><meta http-equiv="refresh" content="0;url=http://evil">
<details open ontoggle="alert('n')"><summary>s</summary>d</details>
"""
DANGER = re.compile(
    r"<\s*(script|iframe|object|embed|form|input|style|base|meta|svg|math|link)\b"
    r"|\son[a-z]+\s*=|javascript:|vbscript:|data:text|\sstyle\s*=|xlink:",
    re.IGNORECASE,
)


def test_a_hostile_card_is_rendered_inert() -> None:
    html = render_card(HOSTILE_CARD, "/a/b/blob/r", "/a/b/resolve/r")
    for tag in re.findall(r"<[^>]*>", html):  # text may mention anything; it is escaped
        assert DANGER.search(tag) is None, tag
    assert "<script" not in html.lower() and 'alert("s")' not in html
    assert "<h1>Model</h1>" in html
    assert "styled" in html and "<summary>s</summary>" in html  # content survives, markup does not


def test_card_links_point_into_the_repository() -> None:
    html = render_card(
        "[doc](docs/usage.md#setup) ![logo](./img/logo.png) [up](../../etc/passwd) "
        "[web](https://example.org/x) [mail](mailto:a@b.c) [anchor](#eval)",
        "/acme/m/blob/abc",
        "/acme/m/resolve/abc",
    )
    assert 'href="/acme/m/blob/abc/docs/usage.md#setup"' in html
    assert 'src="/acme/m/resolve/abc/img/logo.png"' in html
    assert "etc/passwd" not in html.split("up")[0]  # an escape from the repository is dropped
    assert 'href="https://example.org/x"' in html and 'href="mailto:a@b.c"' in html
    assert 'href="#eval"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "<script>",
                "</script>",
                "<img src=x onerror=alert(1)>",
                "javascript:",
                "<a href='",
                "'>",
                '"',
                "<",
                ">",
                "&#x6A;avascript:",
                "[x](",
                ")",
                "<svg",
                " onload=",
                "<style>",
                "\n\n",
                "<div ",
                "style=",
                "`",
                "text",
            ]
        ),
        max_size=30,
    ).map("".join)
)
@example("<scr<script>ipt>alert(1)</script>")
@example("```&#x6A;avascript:")  # a fence's language became class="language-javascript:"
@example("<a href=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)>x</a>")
def test_no_combination_of_hostile_pieces_survives(card: str) -> None:
    html = render_card(card, "/a/b/blob/r", "/a/b/resolve/r")
    tags = re.findall(r"<[^>]*>", html)  # what is markup; text may say anything, escaped
    for tag in tags:
        assert DANGER.search(tag) is None, (card, tag)
