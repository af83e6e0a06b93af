"""The Lineage and Licence tabs in a browser: a three-generation family and a broken obligation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from tests.browser.test_browse import shot
from tests.support.hubs import ServerInfo, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

BASE, INSTRUCT, GGUF = "acme/Llama-3.1-8B", "acme/Llama-3.1-8B-support", "acme/support-8b-GGUF"
NOTICE = (
    b"Llama 3.1 is licensed under the Llama 3.1 Community License, "
    b"Copyright \xc2\xa9 Meta Platforms, Inc. All Rights Reserved."
)


def card(body: str, **meta: object) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}\n".encode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("lineage-pages"), "sqlite", None) as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        for repo, meta, weights in (
            (BASE, {"license": "llama3.1"}, "model.safetensors"),
            (
                INSTRUCT,
                {"license": "llama3.1", "base_model": BASE},
                "model.safetensors",
            ),
            (
                GGUF,
                {"license": "llama3.1", "base_model": INSTRUCT, "base_model_relation": "quantized"},
                "support-8b-Q4_K_M.gguf",
            ),
        ):
            api.create_repo(repo)
            api.create_commit(
                repo,
                [
                    CommitOperationAdd("README.md", card("# Model. Built with Llama.", **meta)),
                    CommitOperationAdd("LICENSE", b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT"),
                    CommitOperationAdd("NOTICE", NOTICE),
                    CommitOperationAdd(weights, repo.encode()),
                ],
                commit_message="publish",
            )
        api.create_repo("acme/helpdesk-8b")
        api.upload_file(
            path_or_fileobj=card("A fine-tune.", license="llama3.1", base_model=INSTRUCT),
            path_in_repo="README.md",
            repo_id="acme/helpdesk-8b",
        )
        yield server


@pytest.fixture
def page(browser: Browser, hub: ServerInfo) -> Iterator[Page]:
    context = browser.new_context(base_url=hub.url)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_lineage_tab_shows_three_generations(page: Page) -> None:
    page.goto(f"/{GGUF}")
    page.get_by_role("link", name="Lineage").click()
    page.wait_for_url(f"**/{GGUF}/lineage")
    graph = page.locator("figure.lineage svg")
    assert graph.is_visible()
    assert graph.locator("g.node").count() == 3
    labels = graph.locator(".node-label").all_text_contents()
    assert set(labels) == {GGUF, INSTRUCT, BASE}
    ancestors = page.locator("section[aria-labelledby=ancestors]")
    assert "quantized of" in ancestors.inner_text() and "finetune of" in ancestors.inner_text()
    shot(page, "lineage")
    # the middle generation: one parent above, two children below
    graph.locator("a").filter(has_text=INSTRUCT).click()
    page.wait_for_url(f"**/{INSTRUCT}/lineage")
    descendants = page.locator("section[aria-labelledby=descendants]").inner_text()
    assert GGUF in descendants and "acme/helpdesk-8b" in descendants


def test_the_licence_tab_shows_findings_with_their_fix(page: Page) -> None:
    page.goto("/acme/helpdesk-8b")
    page.get_by_role("link", name="Licence").click()
    table = page.locator("table.findings")
    assert table.is_visible()
    row = table.locator("tr", has_text="LIC-006")
    assert "begins with 'Llama'" in row.inner_text()
    assert "rename the repository" in row.inner_text()
    assert row.get_by_role("link", name=INSTRUCT).is_visible()
    shot(page, "licence")
    page.goto(f"/{BASE}/licence")
    assert page.locator("table.findings tr", has_text="LIC-006").count() == 0
