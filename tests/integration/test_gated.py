"""Gated repositories through the real client: GatedRepoError before, files after approval.

The repository stays visible (info, file list) to everyone who may see it; its files need an
accepted request. Manual gating leaves requests to the namespace's writers; auto accepts at once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from tests.support.hostile import auth, refused
from tests.support.hubs import ServerInfo

WEIGHTS = b"gated weights \x00\x01" * 1000


def gated_repo(server: ServerInfo, mode: str) -> str:
    repo_id = f"acme/gated-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=server.url, token=server.alice)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="model.bin", repo_id=repo_id)
    api.update_repo_settings(repo_id, gated=mode)
    return repo_id


def download(server: ServerInfo, repo_id: str, token: str | None, cache: Path) -> bytes:
    path = hf_hub_download(repo_id, "model.bin", endpoint=server.url, token=token, cache_dir=cache)
    return Path(path).read_bytes()


def ask(server: ServerInfo, repo_id: str, token: str, **answers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/models/{repo_id}/ask-access", json=answers, headers=auth(token)
    )


def test_manual_gate_request_approval_and_audit(server: ServerInfo, tmp_path: Path) -> None:
    repo_id = gated_repo(server, "manual")
    owner = HfApi(endpoint=server.url, token=server.alice)
    info = HfApi(endpoint=server.url).model_info(repo_id)
    assert info.gated == "manual"
    assert [s.rfilename for s in info.siblings or []] == [".gitattributes", "model.bin"]

    with pytest.raises(GatedRepoError) as anonymous:
        download(server, repo_id, None, tmp_path / "a")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as before:
        download(server, repo_id, server.bob, tmp_path / "b")
    assert before.value.response.status_code == 403
    assert "ask for access" in str(before.value)
    # Members always have the files.
    assert download(server, repo_id, server.tokens["alice_read"], tmp_path / "m") == WEIGHTS

    asked = ask(server, repo_id, server.bob, affiliation="Example University", use="research")
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "pending"
    with pytest.raises(GatedRepoError, match="pending"):
        download(server, repo_id, server.bob, tmp_path / "c")
    pending = list(owner.list_pending_access_requests(repo_id))
    assert [(r.username, r.fields) for r in pending] == [
        ("bob", {"affiliation": "Example University", "use": "research"})
    ]
    # Only the namespace's writers see and decide the queue.
    with pytest.raises(HfHubHTTPError) as outsider:
        list(HfApi(endpoint=server.url, token=server.bob).list_pending_access_requests(repo_id))
    assert outsider.value.response.status_code == 403

    owner.accept_access_request(repo_id, "bob")
    assert download(server, repo_id, server.bob, tmp_path / "d") == WEIGHTS
    accepted = list(owner.list_accepted_access_requests(repo_id))
    assert [r.username for r in accepted] == ["bob"]
    # The audit: who decided, and when.
    listed = httpx.get(
        f"{server.url}/api/models/{repo_id}/user-access-request/accepted",
        headers=auth(server.alice),
    ).json()
    assert listed[0]["decidedBy"] == "alice"
    assert listed[0]["decidedAt"] >= listed[0]["timestamp"]

    owner.reject_access_request(repo_id, "bob", rejection_reason="licence terms not accepted")
    with pytest.raises(GatedRepoError):
        download(server, repo_id, server.bob, tmp_path / "e")
    refused(ask(server, repo_id, server.bob), 403)  # a rejected user cannot simply ask again
    rejected = list(owner.list_rejected_access_requests(repo_id))
    assert [r.username for r in rejected] == ["bob"]


def test_auto_gate_accepts_a_signed_in_request_at_once(server: ServerInfo, tmp_path: Path) -> None:
    repo_id = gated_repo(server, "auto")
    refused(ask(server, repo_id, ""), 401)  # anonymous callers cannot apply
    with pytest.raises(GatedRepoError):
        download(server, repo_id, server.bob, tmp_path / "a")
    answer = ask(server, repo_id, server.bob)
    assert answer.json()["status"] == "accepted"
    assert download(server, repo_id, server.bob, tmp_path / "b") == WEIGHTS
    again = ask(server, repo_id, server.bob)
    assert again.json()["requestId"] == answer.json()["requestId"]  # asking twice is one request


def test_grant_xet_token_and_ungating(server: ServerInfo, tmp_path: Path) -> None:
    repo_id = gated_repo(server, "manual")
    owner = HfApi(endpoint=server.url, token=server.alice)
    token_url = f"{server.url}/api/models/{repo_id}/xet-read-token/main"
    refused(httpx.get(token_url, headers=auth(server.bob)), {403: "GatedRepo"})
    owner.grant_access(repo_id, "bob")
    assert httpx.get(token_url, headers=auth(server.bob)).status_code == 200
    assert download(server, repo_id, server.bob, tmp_path / "a") == WEIGHTS

    owner.update_repo_settings(repo_id, gated=False)
    assert HfApi(endpoint=server.url).model_info(repo_id).gated is False
    assert download(server, repo_id, None, tmp_path / "b") == WEIGHTS


def test_gating_refuses_bad_input(server: ServerInfo) -> None:
    repo_id = gated_repo(server, "manual")
    settings = f"{server.url}/api/models/{repo_id}/settings"
    refused(httpx.put(settings, json={"gated": "sometimes"}, headers=auth(server.alice)), 400)
    refused(httpx.put(settings, json={"gated": "auto"}, headers=auth(server.bob)), 403)
    refused(ask(server, repo_id, server.bob, answer="x" * 5000), 400)
    refused(
        httpx.post(
            f"{server.url}/api/models/{repo_id}/ask-access",
            json={"nested": {"not": "a string"}},
            headers=auth(server.bob),
        ),
        400,
    )
    handle = f"{server.url}/api/models/{repo_id}/user-access-request/handle"
    refused(
        httpx.post(handle, json={"user": "bob", "status": "maybe"}, headers=auth(server.alice)), 400
    )
    refused(
        httpx.post(
            handle, json={"user": "nobody", "status": "accepted"}, headers=auth(server.alice)
        ),
        404,
    )
    refused(httpx.post(handle, json={"status": "accepted"}, headers=auth(server.alice)), 400)
    grant = f"{server.url}/api/models/{repo_id}/user-access-request/grant"
    refused(httpx.post(grant, json={"user": "../x"}, headers=auth(server.alice)), 400)
    refused(httpx.post(grant, json={"user": "acme"}, headers=auth(server.alice)), 404)
    plain = f"acme/plain-{uuid.uuid4().hex[:8]}"
    HfApi(endpoint=server.url, token=server.alice).create_repo(plain)
    refused(ask(server, plain, server.bob), 400)  # not gated: nothing to ask for
