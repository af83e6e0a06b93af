"""Accessibility of the main pages, checked by axe-core (WCAG 2 A and AA rules) in Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.support.hubs import ServerInfo, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
PAGES = [
    "/",
    "/-/search?q=model",
    "/acme",
    "/acme/a11y-model",
    "/acme/a11y-model/tree/main",
    "/acme/a11y-model/tree/main/docs",
    "/acme/a11y-model/blob/main/config.json",
    "/acme/a11y-model/commits/main",
    "/acme/a11y-model/refs",
    "/-/login",
    "/-/admin",
    "/acme/no-such-model",
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("a11y"), "sqlite", None, admins="alice") as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        api.create_repo("acme/a11y-model")
        api.create_commit(
            "acme/a11y-model",
            [
                CommitOperationAdd(
                    "README.md", b"---\nlicense: mit\ntags: [x]\n---\n# A model\n\nText.\n"
                ),
                CommitOperationAdd("config.json", b"{}\n"),
                CommitOperationAdd("docs/usage.md", b"# Usage\n"),
                CommitOperationAdd("weights.bin", bytes(range(256)) * 10),
            ],
            commit_message="files",
        )
        api.create_tag("acme/a11y-model", tag="v1")
        yield server


@pytest.fixture(scope="module")
def signed_in(browser: Browser, hub: ServerInfo) -> Iterator[Page]:
    # axe runs as a script, which the pages' policy forbids; this context lets the test's own
    # script in (the pages themselves still run none).
    context = browser.new_context(base_url=hub.url, bypass_csp=True)
    page = context.new_page()
    page.goto("/-/login")
    page.get_by_label("Access token").fill(hub.alice)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    try:
        yield page
    finally:
        context.close()


@pytest.mark.parametrize("path", PAGES)
def test_no_serious_accessibility_violations(signed_in: Page, path: str) -> None:
    signed_in.goto(path)
    signed_in.evaluate(AXE.read_text())
    result = signed_in.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
    )
    serious = [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "where": [n["target"] for n in v["nodes"]][:3],
        }
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert serious == [], json.dumps(serious, indent=1)
