"""Licence compliance on real pushes, built from real-world cases, each with its exact findings.

Every repository is pushed with the stock `huggingface_hub` client; the findings are read back
from the revision's report. The cases:

- a Llama 3.1 fine-tune whose name does not begin with "Llama" (as DeepSeek-R1-Distill-Llama-8B);
- a quantized copy of a research-licensed model published as apache-2.0 (as a Pixtral quant was);
- a fine-tune of a CC-BY-NC model declared under a commercial licence;
- a merge of two licences that cannot hold together (two mandatory name prefixes);
- a derivative of a RAIL model that drops the use restrictions;
- a clean Apache-2.0 chain of three generations, with no findings at all.

Then: a `reject` policy refuses the push through the real client with a readable error and
leaves the repository unchanged; `warn` lets it through and the client logs the warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.integration.test_hf_cli import hf_executable
from tests.support.clients import client_env
from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, run_admin, start_server

LLAMA31_NOTICE = (
    "Llama 3.1 is licensed under the Llama 3.1 Community License, "
    "Copyright © Meta Platforms, Inc. All Rights Reserved."
)
MRL_NOTICE = "Licensed by Mistral AI under the Mistral AI Research License"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("licences"), "sqlite", None) as server:
        yield server


def card(body: str = "", **meta: object) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}\n".encode()


def publish(hub: ServerInfo, repo_id: str, readme: bytes, **files: bytes) -> str:
    """Create `repo_id` and push its card and files in one commit; the commit id."""
    api = HfApi(endpoint=hub.url, token=hub.alice)
    api.create_repo(repo_id)
    operations = [CommitOperationAdd("README.md", readme)]
    operations += [
        CommitOperationAdd(name.replace("__", "."), data) for name, data in files.items()
    ]
    return api.create_commit(repo_id, operations, commit_message="publish").oid


def findings(hub: ServerInfo, repo_id: str) -> set[tuple[str, str, str | None]]:
    answer = httpx.get(f"{hub.url}/api/licence-report/models/{repo_id}", headers=auth(hub.alice))
    assert answer.status_code == 200, answer.text
    return {(f["check"], f["severity"], f["ancestor"]) for f in answer.json()["findings"]}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def llama_base(hub: ServerInfo) -> str:
    repo = f"acme/{unique('Llama-3.1-8B')}"
    publish(
        hub,
        repo,
        card("# Llama 3.1 8B", license="llama3.1"),
        LICENSE=b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT ...",
        USE_POLICY__md=b"Llama 3.1 Acceptable Use Policy ...",
        NOTICE=LLAMA31_NOTICE.encode(),
        model__safetensors=b"base weights",
    )
    return repo


def test_a_llama_fine_tune_must_begin_with_llama(hub: ServerInfo) -> None:
    base = llama_base(hub)
    assert findings(hub, base) == {("LIC-012", "info", None)}  # the 700M MAU threshold
    child = f"acme/{unique('chat-assistant-8b')}"
    publish(
        hub,
        child,
        card("A chat model. Built with Llama.", license="llama3.1", base_model=base),
        NOTICE=LLAMA31_NOTICE.encode(),
        LICENSE=b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT ...",
        model__safetensors=b"tuned weights",
    )
    assert findings(hub, child) == {("LIC-006", "error", base), ("LIC-012", "info", None)}


def test_a_quantized_copy_cannot_be_relicensed_permissively(hub: ServerInfo) -> None:
    parent = f"acme/{unique('Ministral-8B-Instruct')}"
    publish(
        hub,
        parent,
        card("# Ministral", license="other", license_name="mrl", license_link="LICENSE"),
        LICENSE=b"Mistral AI Research License ...",
        NOTICE=MRL_NOTICE.encode(),
        model__safetensors=b"weights",
    )
    assert findings(hub, parent) == set()
    copy = f"acme/{unique('Ministral-8B-Instruct-GGUF')}"
    publish(
        hub,
        copy,
        card(
            "Quantized.", license="apache-2.0", base_model=parent, base_model_relation="quantized"
        ),
        model_Q4_K_M__gguf=b"quantized weights",
    )
    assert findings(hub, copy) == {
        ("LIC-003", "error", parent),  # the licence differs from the parent's
        ("LIC-004", "error", parent),  # research only, now declared commercial
        ("LIC-005", "error", parent),  # the MRL keeps governing; apache-2.0 cannot carry it
        ("LIC-008", "error", parent),  # the MRL notice is gone
    }
    messages = [
        f["message"]
        for f in httpx.get(f"{hub.url}/api/licence-report/models/{copy}").json()["findings"]
        if f["check"] == "LIC-003"
    ]
    assert len(messages) == 3  # the licence id, the LICENSE file and the NOTICE file
    assert any("LICENSE" in m for m in messages) and any("NOTICE" in m for m in messages)


def test_a_non_commercial_parent_keeps_its_fine_tunes_non_commercial(hub: ServerInfo) -> None:
    parent = f"acme/{unique('research-model-7b')}"
    publish(hub, parent, card("# Research", license="cc-by-nc-4.0"), model__safetensors=b"w")
    child = f"acme/{unique('research-model-7b-sft')}"
    publish(
        hub,
        child,
        card("Fine-tuned for support.", license="mit", base_model=parent),
        model__safetensors=b"w2",
    )
    assert findings(hub, child) == {("LIC-004", "error", parent)}


def test_a_merge_of_two_name_prefixes_cannot_satisfy_both(hub: ServerInfo) -> None:
    llama = llama_base(hub)
    glm = f"acme/{unique('glm-4-9b')}"
    publish(
        hub,
        glm,
        card("# GLM-4", license="other", license_name="glm-4", license_link="LICENSE"),
        LICENSE=b"The glm-4 License ...",
        model__safetensors=b"glm weights",
    )
    merged = f"acme/{unique('Llama-glm-4-merge')}"
    publish(
        hub,
        merged,
        card(
            "A merge. Built with Llama. Built with glm-4.",
            license="llama3.1",
            base_model=[llama, glm],
            base_model_relation="merge",
        ),
        NOTICE=LLAMA31_NOTICE.encode(),
        LICENSE=b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT ... The glm-4 License ...",
        model__safetensors=b"merged",
    )
    found = findings(hub, merged)
    assert ("LIC-009", "error", llama) in found  # "Llama" and "glm-4" must both begin the name
    assert ("LIC-006", "error", glm) in found  # it begins with Llama, so not with glm-4
    assert {f for f in found if f[1] != "info"} == {
        ("LIC-009", "error", llama),
        ("LIC-006", "error", glm),
    }


def test_a_rail_derivative_must_pass_the_use_restrictions_on(hub: ServerInfo) -> None:
    parent = f"acme/{unique('bloom-560m')}"
    publish(
        hub,
        parent,
        card("# BLOOM", license="bigscience-bloom-rail-1.0"),
        LICENSE=b"BigScience RAIL License v1.0 ...",
        model__safetensors=b"bloom",
    )
    child = f"acme/{unique('bloom-560m-chat')}"
    publish(
        hub,
        child,
        card("A chat fine-tune.", license="mit", base_model=parent),
        model__safetensors=b"chat",
    )
    assert findings(hub, child) == {("LIC-005", "error", parent)}
    # Shipping the restrictions as an addendum next to one's own licence satisfies it.
    fixed = f"acme/{unique('bloom-560m-chat-fixed')}"
    publish(
        hub,
        fixed,
        card("A chat fine-tune.", license="mit", base_model=parent),
        USE_POLICY__md=b"Use restrictions of the BigScience RAIL License v1.0, Attachment A ...",
        model__safetensors=b"chat",
    )
    # ... and the report still notes that `mit` overstates how open the weights are.
    assert findings(hub, fixed) == {("LIC-015", "info", parent)}


def test_a_clean_apache_chain_has_no_findings(hub: ServerInfo) -> None:
    base = f"acme/{unique('open-base')}"
    publish(hub, base, card("# Base", license="apache-2.0"), LICENSE=b"Apache 2.0", m__bin=b"1")
    tuned = f"acme/{unique('open-base-instruct')}"
    publish(
        hub,
        tuned,
        card("# Instruct", license="apache-2.0", base_model=base),
        LICENSE=b"Apache 2.0",
        m__bin=b"2",
    )
    quant = f"acme/{unique('open-base-instruct-GGUF')}"
    publish(
        hub,
        quant,
        card("# GGUF", license="apache-2.0", base_model=tuned, base_model_relation="quantized"),
        LICENSE=b"Apache 2.0",
        model__gguf=b"3",
    )
    for repo in (base, tuned, quant):
        assert findings(hub, repo) == set(), repo
    report = httpx.get(f"{hub.url}/api/licence-report/models/{quant}").json()
    openness = report["openness"]
    assert openness["licenceOpen"] and openness["restrictedBy"] is None
    present = {c["name"] for c in openness["components"] if c["present"]}
    assert {"Model parameters (final)", "Model card"} - present == {"Model card"}  # short card
    assert openness["mofClass"] is None and not openness["osaidReady"]
    page = httpx.get(f"{hub.url}/{quant}/licence")
    assert "No Model Openness Framework class" in page.text and "OSAID" in page.text


def test_reject_blocks_the_push_through_the_client_and_warn_lets_it_through(
    hub: ServerInfo, tmp_path: Path
) -> None:
    base = llama_base(hub)
    policy = httpx.put(
        f"{hub.url}/api/licence-policy/acme", json={"LIC-006": "reject"}, headers=auth(hub.alice)
    )
    assert policy.status_code == 200, policy.text
    assert policy.json()["effective"]["LIC-006"] == "reject"
    try:
        api = HfApi(endpoint=hub.url, token=hub.alice)
        repo = f"acme/{unique('assistant')}"
        api.create_repo(repo)
        before = [c.commit_id for c in api.list_repo_commits(repo)]
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_commit(
                repo,
                [
                    CommitOperationAdd(
                        "README.md",
                        card("Built with Llama.", license="llama3.1", base_model=base),
                    ),
                    CommitOperationAdd("NOTICE", LLAMA31_NOTICE.encode()),
                    CommitOperationAdd("model.safetensors", b"weights"),
                ],
                commit_message="publish",
            )
        message = str(refused.value)
        assert refused.value.response.status_code == 422
        assert "LIC-006" in message and "must have a name that begins with 'Llama'" in message
        assert "Fix: rename the repository" in message
        assert [c.commit_id for c in api.list_repo_commits(repo)] == before  # unchanged
        assert api.list_repo_files(repo) == [".gitattributes"]
    finally:
        httpx.put(
            f"{hub.url}/api/licence-policy/acme", json={"LIC-006": None}, headers=auth(hub.alice)
        )
    # With `warn`, the push goes through and `hf upload` prints the finding and its fix.
    folder = tmp_path / "assistant"
    folder.mkdir()
    (folder / "README.md").write_bytes(
        card("Built with Llama.", license="llama3.1", base_model=base)
    )
    (folder / "NOTICE").write_bytes(LLAMA31_NOTICE.encode())
    env = client_env(hub.url, tmp_path / "home", hub.alice, xet=True, NO_COLOR="1")
    upload = subprocess.run(
        [hf_executable(), "upload", repo, str(folder), "."],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upload.returncode == 0, upload.stderr
    assert "LIC-006 error" in upload.stderr and "Fix: rename the repository" in upload.stderr
    assert "README.md" in api.list_repo_files(repo)


def kaiyuan(hub: ServerInfo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**client_env(hub.url, Path("/nonexistent-home"), hub.alice), "HF_ENDPOINT": hub.url}
    return subprocess.run(
        [sys.executable, "-m", "kaiyuan", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_licence_check_of_a_revision_and_of_a_folder(hub: ServerInfo, tmp_path: Path) -> None:
    base = llama_base(hub)
    child = f"acme/{unique('helper-8b')}"
    publish(
        hub,
        child,
        card("Built with Llama.", license="llama3.1", base_model=base),
        NOTICE=LLAMA31_NOTICE.encode(),
    )
    shown = kaiyuan(hub, "licence", "check", child)
    assert shown.returncode == 1, shown.stderr  # an error finding
    assert shown.stdout.splitlines()[0].endswith(": licence llama3.1")
    assert f"LIC-006 error [{base}]: " in shown.stdout and "    fix: rename" in shown.stdout
    as_json = kaiyuan(hub, "licence", "check", child, "--json")
    assert {f["check"] for f in json.loads(as_json.stdout)["findings"]} == {"LIC-006", "LIC-012"}
    assert kaiyuan(hub, "licence", "check", base).returncode == 0  # information only

    folder = tmp_path / "Llama-helper-8b"
    folder.mkdir()
    (folder / "README.md").write_bytes(
        card("Built with Llama.", license="apache-2.0", base_model=base)
    )
    (folder / "model.safetensors").write_bytes(b"weights never leave the machine")
    draft = kaiyuan(hub, "licence", "check", str(folder), "--as", "acme/Llama-helper-8b", "--json")
    assert draft.returncode == 1
    report = json.loads(draft.stdout)
    assert report["revision"] == ""
    assert {(f["check"], f["ancestor"]) for f in report["findings"]} >= {
        ("LIC-005", base),  # apache-2.0 drops the Llama terms
        ("LIC-008", base),  # and the notice
    }
    (folder / "README.md").write_bytes(b"---\nlicense: [unclosed\n---\n")
    broken = json.loads(
        kaiyuan(hub, "licence", "check", str(folder), "--as", "acme/x", "--json").stdout
    )
    assert broken["findings"][0]["check"] == "LIC-001" and broken["rejected"]
    no_target = kaiyuan(hub, "licence", "check", str(folder))
    assert no_target.returncode == 2 and "--as" in no_target.stderr
    assert HfApi(endpoint=hub.url, token=hub.alice).repo_exists("acme/Llama-helper-8b") is False


def test_admin_sets_the_hub_policy(hub: ServerInfo) -> None:
    done = run_admin(hub.env, "licence-policy", "set", "LIC-007", "reject")
    assert done.returncode == 0, done.stderr
    try:
        shown = run_admin(hub.env, "licence-policy", "show").stdout.splitlines()
        assert "LIC-007 reject *" in shown and "LIC-006 warn" in shown
        # an organisation cannot weaken the hub's choice
        weaker = httpx.put(
            f"{hub.url}/api/licence-policy/acme", json={"LIC-007": "off"}, headers=auth(hub.alice)
        )
        assert weaker.json()["effective"]["LIC-007"] == "reject"
        assert (
            httpx.put(
                f"{hub.url}/api/licence-policy/acme",
                json={"LIC-007": None},
                headers=auth(hub.alice),
            ).status_code
            == 200
        )
    finally:
        assert run_admin(hub.env, "licence-policy", "set", "LIC-007", "default").returncode == 0
    assert run_admin(hub.env, "licence-policy", "set", "LIC-099", "reject").returncode == 2
    assert run_admin(hub.env, "licence-policy", "set", "LIC-001", "maybe").returncode == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/licence-policy/acme", {"LIC-999": "reject"}, 400),
        ("PUT", "/api/licence-policy/acme", {"LIC-006": "explode"}, 400),
        ("PUT", "/api/licence-policy/acme", {"LIC-006": 3}, 400),
        ("PUT", "/api/licence-policy/acme", {}, 400),
        ("PUT", "/api/licence-policy/acme", {"\u001b": []}, 400),  # quoted in a header: no crash
        ("PUT", "/api/licence-policy/alice", {"LIC-006": "reject"}, 404),  # a user, not an org
        ("PUT", "/api/licence-policy/nobody", {"LIC-006": "reject"}, 404),
        ("POST", "/api/licence-check", {"id": "not-a-repo-id"}, 400),
        ("POST", "/api/licence-check", {"id": "a/b", "paths": ["../escape"]}, 400),
        ("POST", "/api/licence-check", {"id": "a/b", "paths": "x"}, 400),
        (
            "POST",
            "/api/licence-check",
            {"id": "a/b", "texts": {f"N{i}": "x" for i in range(9)}},
            400,
        ),
        ("POST", "/api/licence-check", {"id": "a/b", "type": "space"}, 400),
        ("POST", "/api/licence-check", [1, 2], 400),
        ("GET", "/api/licences/no-such-licence", None, 404),
        ("GET", "/api/licence-report/models/acme/no-such-model", None, 404),
    ],
)
def test_garbage_licence_requests(
    hub: ServerInfo, method: str, path: str, body: object, status: int
) -> None:
    answer = httpx.request(method, hub.url + path, json=body, headers=auth(hub.alice))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


def test_bob_cannot_set_acme_policy(hub: ServerInfo) -> None:
    answer = httpx.put(
        f"{hub.url}/api/licence-policy/acme", json={"LIC-006": "off"}, headers=auth(hub.bob)
    )
    assert answer.status_code == 403
    anonymous = httpx.put(f"{hub.url}/api/licence-policy/acme", json={"LIC-006": "off"})
    assert anonymous.status_code == 401
