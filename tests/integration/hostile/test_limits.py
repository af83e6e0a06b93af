"""Request limits as settings: body size, JSON depth, files per commit, requests per minute.

Each refusal is a clear 4xx (429 with Retry-After for rate limits) and leaves nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.support.hostile import (
    NDJSON,
    assert_log_clean,
    auth,
    header,
    ndjson,
    refused,
    snapshot,
    unique,
)
from tests.support.hubs import ServerInfo, run_admin, start_server

PER_MINUTE = 40
ANONYMOUS_PER_MINUTE = 15


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("limited")
    with start_server(
        root,
        "sqlite",
        None,
        rate_limit_per_minute=PER_MINUTE,
        anonymous_rate_limit_per_minute=ANONYMOUS_PER_MINUTE,
        max_json_depth=8,
        max_json_body_bytes=4096,
        max_commit_operations=5,
    ) as info:
        yield info
        assert_log_clean(info)


def fresh_minute(margin: float = 20) -> None:
    """Counting starts early in a minute, so a test's requests all fall in one window."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.2)


def test_json_nested_deeper_than_the_setting_is_refused(limited: ServerInfo) -> None:
    name = unique("deep")
    nested: object = "x"
    for _ in range(9):
        nested = [nested]
    body = {"name": name, "type": "model", "extra": nested}
    answer = httpx.post(
        f"{limited.url}/api/repos/create", json=body, headers=auth(limited.tokens["bob"])
    )
    refused(answer, 400)
    assert "deeper than 8" in answer.json()["error"]
    listed = httpx.get(f"{limited.url}/api/models?author=bob", headers=auth(limited.bob))
    assert name not in {m["id"].split("/")[-1] for m in listed.json()}


def test_ndjson_commit_line_nested_too_deep_is_refused(limited: ServerInfo) -> None:
    repo_id = f"bob/{unique('deepline')}"
    HfApi(endpoint=limited.url, token=limited.bob).create_repo(repo_id)
    before = snapshot(limited, repo_id)
    nested: object = "x"
    for _ in range(9):
        nested = {"n": nested}
    line = {"key": "file", "value": {"path": "a.txt", "content": "eA==", "extra": nested}}
    answer = httpx.post(
        f"{limited.url}/api/models/{repo_id}/commit/main",
        content=ndjson(header(), line),
        headers={**NDJSON, **auth(limited.bob)},
    )
    refused(answer, 400)
    assert "line 2" in answer.json()["error"]
    assert "deeper than 8" in answer.json()["error"]
    assert snapshot(limited, repo_id) == before


def test_json_body_over_the_setting_is_refused(limited: ServerInfo) -> None:
    body = {"name": unique("big"), "type": "model", "padding": "p" * 5000}
    answer = httpx.post(f"{limited.url}/api/repos/create", json=body, headers=auth(limited.bob))
    refused(answer, 413)


def test_commit_with_more_files_than_the_setting_is_refused(
    limited: ServerInfo,
) -> None:
    repo_id = f"bob/{unique('many')}"
    api = HfApi(endpoint=limited.url, token=limited.bob)
    api.create_repo(repo_id)
    before = snapshot(limited, repo_id)
    six = [CommitOperationAdd(f"f{i}.txt", f"{i}\n".encode()) for i in range(6)]
    with pytest.raises(HfHubHTTPError, match="at most 5 operations") as caught:
        api.create_commit(repo_id, six, commit_message="too many")
    assert caught.value.response.status_code == 413
    assert snapshot(limited, repo_id) == before
    api.create_commit(repo_id, six[:5], commit_message="just enough")
    assert {f"f{i}.txt" for i in range(5)} <= set(api.list_repo_files(repo_id))


def new_token(server: ServerInfo, user: str) -> str:
    """A token nothing else has spent requests with."""
    made = run_admin(server.env, "token", "create", user)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


# The rate tests come last: they spend the tokens other tests use.
def test_rate_limit_per_token_is_a_clear_429(limited: ServerInfo) -> None:
    token = new_token(limited, "alice")
    repo_id = f"alice/{unique('rate')}"
    fresh_minute()
    HfApi(endpoint=limited.url, token=token).create_repo(repo_id)
    url = f"{limited.url}/api/models/{repo_id}"
    answers = [httpx.get(url, headers=auth(token)) for _ in range(PER_MINUTE + 3)]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * (PER_MINUTE - 1) + [429] * 4  # the creation counted too
    over = answers[-1]
    refused(over, 429)
    assert "rate limit" in over.json()["error"]
    assert 1 <= int(over.headers["retry-after"]) <= 60

    # Another token, and a caller without one, have budgets of their own.
    assert httpx.get(url, headers=auth(limited.bob)).status_code == 200
    assert httpx.get(url).status_code == 200

    # The real client surfaces the refusal, naming the limit.
    with pytest.raises(HfHubHTTPError, match="rate limit") as caught:
        HfApi(endpoint=limited.url, token=token).model_info(repo_id)
    assert caught.value.response.status_code == 429


def test_rate_limit_for_anonymous_callers_counts_per_address(limited: ServerInfo) -> None:
    fresh_minute()
    url = f"{limited.url}/api/models?limit=1"
    statuses = [httpx.get(url).status_code for _ in range(ANONYMOUS_PER_MINUTE + 2)]
    assert statuses.count(429) >= 1, statuses
    assert httpx.get(url, headers=auth(limited.tokens["alice_read"])).status_code == 200
