"""A visitor in a real browser: search, read a card, browse files at a tag, download, sign in.

Screenshots of the main pages land in docs/screenshots/ (docs/web.md shows them), so the
pictures in the docs are what the latest run saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.support.hubs import ServerInfo, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CARD = b"""---
license: apache-2.0
base_model: acme/qwen-tiny-base
tags: [text-generation, chinese]
language: [zh, en]
datasets: [acme/web-corpus]
---
# Qwen-tiny-chat

A small chat model fine-tuned from `acme/qwen-tiny-base` on a Chinese and English corpus.
It exists to show what a model page looks like.

## Evaluation

| benchmark | score |
|-----------|-------|
| C-Eval    | 31.2  |
| MMLU      | 28.9  |

<script>document.title = "owned"; alert("script ran")</script>
<img src="x" onerror="document.title='owned'; alert('handler ran')">
[a link that must not run](javascript:alert('link%20ran'))
"""
WEIGHTS = bytes(range(256)) * 400


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("browser")
    with start_server(root, "sqlite", None, admins="alice") as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        api.create_repo("acme/qwen-tiny-chat")
        api.create_commit(
            "acme/qwen-tiny-chat",
            [
                CommitOperationAdd("README.md", CARD),
                CommitOperationAdd("config.json", b'{"model_type": "qwen2", "hidden_size": 64}\n'),
                CommitOperationAdd("model.safetensors", WEIGHTS),
                CommitOperationAdd("tokenizer/vocab.txt", "你好\n世界\nhello\n".encode()),
            ],
            commit_message="Release the chat model",
        )
        api.create_tag("acme/qwen-tiny-chat", tag="v1.0")
        api.upload_file(
            path_or_fileobj=b'{"model_type": "qwen2", "hidden_size": 128}\n',
            path_in_repo="config.json",
            repo_id="acme/qwen-tiny-chat",
            commit_message="Wider hidden layer",
        )
        api.create_repo("acme/web-corpus", repo_type="dataset")
        api.upload_file(
            path_or_fileobj="text\n开源模型\n".encode(),
            path_in_repo="data/train.txt",
            repo_id="acme/web-corpus",
            repo_type="dataset",
        )
        api.create_repo("alice/private-notes", private=True)
        yield server


@pytest.fixture
def page(browser: Browser, hub: ServerInfo) -> Iterator[Page]:
    context = browser.new_context(base_url=hub.url, accept_downloads=True)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        yield opened
    finally:
        context.close()
    assert dialogs == [], f"a page ran script: {dialogs}"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_visitor_finds_reads_browses_and_downloads(page: Page, tmp_path: Path) -> None:
    page.goto("/")
    shot(page, "home")
    page.get_by_label("Search models and datasets").fill("qwen")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/-/search?q=qwen")
    page.get_by_role("link", name="acme/qwen-tiny-chat").click()

    # the card: rendered Markdown, metadata panel, nothing from the card ran
    page.wait_for_url("**/acme/qwen-tiny-chat")
    assert page.get_by_role("heading", name="Qwen-tiny-chat", exact=True).is_visible()
    assert page.get_by_role("cell", name="C-Eval").is_visible()
    assert page.locator(".metadata").get_by_text("apache-2.0").is_visible()
    assert page.title() != "owned"
    page.get_by_role("link", name="a link that must not run").count()  # inert text or no href
    assert page.locator("a[href^='javascript']").count() == 0
    shot(page, "model-card")

    # files at the tag: the tag still has the first config
    page.get_by_role("link", name="Files").click()
    page.get_by_role("link", name="switch branch or tag").click()
    page.get_by_role("link", name="v1.0", exact=True).click()
    page.wait_for_url("**/tree/v1.0")
    assert page.get_by_role("link", name="model.safetensors", exact=True).is_visible()
    shot(page, "files-at-tag")
    page.get_by_role("link", name="config.json", exact=True).click()
    assert '"hidden_size": 64' in page.locator("pre.text").inner_text()
    page.go_back()

    # download from the listing
    with page.expect_download() as started:
        page.get_by_role("link", name="Download model.safetensors").click()
    saved = tmp_path / "model.safetensors"
    started.value.save_as(saved)
    assert saved.read_bytes() == WEIGHTS

    # history at the tag stops at the tag; on main it has the later commit and what it changed
    page.get_by_role("link", name="History").click()
    assert page.get_by_role("link", name="Release the chat model").is_visible()
    assert page.get_by_role("link", name="Wider hidden layer").count() == 0
    page.goto("/acme/qwen-tiny-chat/commits/main")
    shot(page, "history")
    page.get_by_role("link", name="Wider hidden layer").click()
    assert page.get_by_role("cell", name="config.json").is_visible()
    assert page.locator(".badge.modified").count() == 1
    shot(page, "commit")


def test_a_private_repository_appears_after_signing_in(page: Page, hub: ServerInfo) -> None:
    page.goto("/alice/private-notes")
    assert page.get_by_role("heading", name="Not found").is_visible()
    page.goto("/")
    assert page.get_by_role("link", name="alice/private-notes").count() == 0

    page.goto("/alice/private-notes")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Access token").fill(hub.alice)
    shot(page, "sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/alice/private-notes")
    assert page.get_by_text("private", exact=True).first.is_visible()

    page.goto("/")
    assert page.get_by_role("heading", name="Your repositories").is_visible()
    assert page.get_by_role("link", name="alice/private-notes").first.is_visible()
    shot(page, "home-signed-in")
    page.goto("/-/admin")
    assert page.get_by_role("heading", name="Storage").is_visible()
    shot(page, "admin")

    page.get_by_role("button", name="Sign out").click()
    page.goto("/alice/private-notes")
    assert page.get_by_role("heading", name="Not found").is_visible()


def test_reading_works_without_javascript(browser: Browser, hub: ServerInfo) -> None:
    context = browser.new_context(base_url=hub.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/datasets/acme/web-corpus")
        page.get_by_role("link", name="Files").click()
        page.get_by_role("link", name="data/").click()
        page.get_by_role("link", name="train.txt", exact=True).click()
        assert "开源模型" in page.locator("pre.text").inner_text()
        shot(page, "dataset-file")
    finally:
        context.close()
