"""A headless Chromium for the browser tests: Debian's package, driven by Playwright.

Nothing here reaches the network: background networking, updates and sync are off, and the
pages come from a hub on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--metrics-recording-only",
]


def find_chromium() -> str | None:
    configured = os.environ.get("KAIYUAN_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium not found: `apt-get install chromium` (CI installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
