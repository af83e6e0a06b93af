"""Gating declared in the card, its request form, and the audit of accepted licences.

The stock client raises GatedRepoError until access is granted, then downloads; each request
records who accepted which licence (and catalog version), shown with which revision, and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError

from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server

FORM = {
    "Company": "text",
    "Country": "country",
    "I accept the Llama 3.1 licence": "checkbox",
    "Intended use": {"type": "select", "options": ["research", "commercial"]},
    "Date": "date_picker",
}
ANSWERS = {
    "Company": "Bob's lab",
    "Country": "Norway",
    "I accept the Llama 3.1 licence": "true",
    "Intended use": "research",
    "Date": "2026-11-29",
}


def card(**meta: object) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n# Gated\n".encode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("gated-card"), "sqlite", None) as server:
        yield server


def publish(hub: ServerInfo, **meta: object) -> tuple[str, str]:
    repo = f"acme/Llama-gated-{uuid.uuid4().hex[:6]}"
    api = HfApi(endpoint=hub.url, token=hub.alice)
    api.create_repo(repo)
    info = api.create_commit(
        repo,
        [
            CommitOperationAdd("README.md", card(**meta)),
            CommitOperationAdd("model.safetensors", b"gated weights" * 100),
        ],
        commit_message="publish",
    )
    return repo, info.oid


def ask(hub: ServerInfo, repo: str, token: str, answers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{hub.url}/api/models/{repo}/ask-access", json=answers, headers=auth(token))


def test_card_gating_form_approval_and_audit(hub: ServerInfo, tmp_path: Path) -> None:
    repo, commit = publish(
        hub,
        license="llama3.1",
        gated="manual",
        extra_gated_prompt="You agree to the Llama 3.1 Community License.",
        extra_gated_fields=FORM,
    )
    assert HfApi(endpoint=hub.url).model_info(repo).gated == "manual"  # from the card
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            repo, "model.safetensors", endpoint=hub.url, token=hub.bob, cache_dir=tmp_path / "c1"
        )

    # the form: every field answered, in its type
    for broken, why in (
        ({k: v for k, v in ANSWERS.items() if k != "Company"}, "Company"),
        ({**ANSWERS, "I accept the Llama 3.1 licence": "no"}, "must be checked"),
        ({**ANSWERS, "Intended use": "military"}, "options"),
        ({**ANSWERS, "Date": "yesterday"}, "date"),
        ({**ANSWERS, "Shoe size": "44"}, "no field"),
    ):
        refused = ask(hub, repo, hub.bob, broken)
        assert refused.status_code == 400 and why in refused.json()["error"], refused.text
    asked = ask(hub, repo, hub.bob, ANSWERS)
    assert asked.status_code == 200 and asked.json()["status"] == "pending"
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            repo, "model.safetensors", endpoint=hub.url, token=hub.bob, cache_dir=tmp_path / "c2"
        )

    HfApi(endpoint=hub.url, token=hub.alice).accept_access_request(repo, "bob")
    path = hf_hub_download(
        repo, "model.safetensors", endpoint=hub.url, token=hub.bob, cache_dir=tmp_path / "c3"
    )
    assert Path(path).read_bytes() == b"gated weights" * 100

    audit = httpx.get(f"{hub.url}/api/licence-acceptances/models/{repo}", headers=auth(hub.alice))
    assert audit.status_code == 200, audit.text
    [entry] = audit.json()
    assert entry["user"] == "bob" and entry["licence"] == "llama3.1"
    assert entry["revision"] == commit and entry["requestId"] == asked.json()["requestId"]
    assert entry["licenceVersion"]  # the catalog's version of the Llama 3.1 licence
    assert entry["acceptedAt"].startswith("20")
    stranger = httpx.get(f"{hub.url}/api/licence-acceptances/models/{repo}", headers=auth(hub.bob))
    assert stranger.status_code == 403


def test_the_card_can_open_and_close_the_gate(hub: ServerInfo) -> None:
    repo, _ = publish(hub, license="llama3.1", gated="auto")
    api = HfApi(endpoint=hub.url, token=hub.alice)
    assert api.model_info(repo).gated == "auto"
    api.upload_file(
        path_or_fileobj=card(license="llama3.1", gated=False),
        path_in_repo="README.md",
        repo_id=repo,
    )
    assert api.model_info(repo).gated is False
    # only the default branch decides
    api.create_branch(repo, branch="draft")
    api.upload_file(
        path_or_fileobj=card(license="llama3.1", gated="manual"),
        path_in_repo="README.md",
        repo_id=repo,
        revision="draft",
    )
    assert api.model_info(repo).gated is False


def test_a_bad_gate_in_the_card_is_refused(hub: ServerInfo) -> None:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo = f"acme/bad-gate-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo)
    for meta in (
        {"gated": "sometimes"},
        {"extra_gated_fields": {"Name": "telepathy"}},
        {"extra_gated_fields": {"Use": {"type": "select"}}},
        {"extra_gated_fields": ["not", "a", "mapping"]},
    ):
        answer = httpx.post(
            f"{hub.url}/api/models/{repo}/commit/main",
            content=_ndjson(card(license="mit", **meta)),
            headers={**auth(hub.alice), "Content-Type": "application/x-ndjson"},
        )
        assert answer.status_code == 400, (meta, answer.text)
    assert api.list_repo_files(repo) == [".gitattributes"]


def test_a_derivative_of_a_gated_parent_is_flagged(hub: ServerInfo) -> None:
    parent, _ = publish(
        hub, license="llama3.1", gated="auto", extra_gated_prompt="Accept the licence."
    )
    api = HfApi(endpoint=hub.url, token=hub.alice)
    child = f"acme/Llama-child-{uuid.uuid4().hex[:6]}"
    api.create_repo(child)
    api.upload_file(
        path_or_fileobj=card(license="llama3.1", base_model=parent),
        path_in_repo="README.md",
        repo_id=child,
    )
    report = httpx.get(f"{hub.url}/api/licence-report/models/{child}").json()
    assert [f["ancestor"] for f in report["findings"] if f["check"] == "LIC-013"] == [parent]


def _ndjson(readme: bytes) -> bytes:
    import base64
    import json

    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {
            "key": "file",
            "value": {
                "path": "README.md",
                "content": base64.b64encode(readme).decode(),
                "encoding": "base64",
            },
        },
    ]
    return b"\n".join(json.dumps(line).encode() for line in lines)


def test_the_card_page_builds_the_request_form(hub: ServerInfo) -> None:
    repo, _ = publish(
        hub,
        license="llama3.1",
        gated="manual",
        extra_gated_prompt="You agree to the Llama 3.1 Community License.",
        extra_gated_fields=FORM,
    )
    with httpx.Client(base_url=hub.url) as browser:
        assert browser.post("/-/login", data={"token": hub.bob}).status_code == 303
        page = browser.get(f"/{repo}").text
        assert "You agree to the Llama 3.1 Community License." in page
        assert 'type="checkbox"' in page and 'type="date"' in page and "<option>research" in page
        action = f"/-/ask-access/models/{repo}"
        assert f'action="{action}"' in page
        missing = browser.post(action, data={k: v for k, v in ANSWERS.items() if k != "Country"})
        assert missing.status_code == 400 and "Country" in missing.text
        foreign = browser.post(action, data=ANSWERS, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        sent = browser.post(action, data=ANSWERS, follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"] == f"/{repo}"
    pending = list(HfApi(endpoint=hub.url, token=hub.alice).list_pending_access_requests(repo))
    assert [r.username for r in pending] == ["bob"]
    assert pending[0].fields == ANSWERS
    anonymous = httpx.post(f"{hub.url}/-/ask-access/models/{repo}", data=ANSWERS)
    assert anonymous.status_code in {303, 401}  # sign in first
