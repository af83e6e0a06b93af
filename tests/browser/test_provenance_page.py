"""The Provenance tab in a browser: an undeclared derivative, found from its weights."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.browser.test_accessibility import AXE
from tests.browser.test_browse import shot
from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server
from tests.support.synthetic_models import WIDTH, parent, residual_permutation, write

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

BASE, CHILD = "acme/base-7b", "acme/rebadged-7b"


def publish(api: HfApi, repo: str, folder: Path, readme: bytes) -> None:
    api.create_repo(repo)
    operations = [CommitOperationAdd("README.md", readme)]
    operations += [CommitOperationAdd(p.name, str(p)) for p in sorted(folder.iterdir())]
    api.create_commit(repo, operations, commit_message="publish")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("provenance-page")
    with start_server(root / "hub", "sqlite", None, provenance_poll_seconds=0.5) as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        weights = parent()
        publish(api, BASE, write(root / "base", weights), b"---\nlicense: llama3.1\n---\n# Base\n")
        rng = np.random.default_rng(5)
        rebadged = residual_permutation(weights, rng.permutation(WIDTH))
        publish(api, CHILD, write(root / "child", rebadged), b"---\nlicense: mit\n---\n# Ours\n")
        deadline = time.monotonic() + 120
        while True:
            answer = httpx.get(
                f"{server.url}/api/provenance/models/{CHILD}", headers=auth(server.alice)
            ).json()
            if answer["status"] == "done":
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.5)
        yield server


@pytest.fixture
def page(browser: Browser, hub: ServerInfo) -> Iterator[Page]:
    context = browser.new_context(base_url=hub.url, bypass_csp=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_provenance_tab_shows_the_measured_parent_and_its_evidence(page: Page) -> None:
    page.goto(f"/{CHILD}")
    page.get_by_role("link", name="Provenance").click()
    page.wait_for_url(f"**/{CHILD}/provenance?revision=*")
    assert "done" in page.get_by_role("status").first.inner_text()
    parents = page.locator("h2:has-text('Measured parents') + ul")
    assert BASE in parents.inner_text() and "not declared in the card" in parents.inner_text()
    row = page.locator("table.matches tr", has_text=BASE)
    assert "derived" in row.inner_text()
    evidence = page.locator("section", has=page.get_by_role("heading", name=f"Evidence: {BASE}"))
    assert "cka-assignment" in evidence.inner_text()
    assert "0←0" in evidence.inner_text()
    shot(page, "provenance")
    page.get_by_role("link", name="Licence").click()
    assert page.locator("table.findings tr", has_text="PROV-001").is_visible()


def test_the_provenance_tab_has_no_serious_accessibility_violations(page: Page) -> None:
    page.goto(f"/{CHILD}/provenance")
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
    )
    serious = [v["id"] for v in result["violations"] if v["impact"] in {"serious", "critical"}]
    assert serious == [], json.dumps(result["violations"], indent=1)[:2000]
