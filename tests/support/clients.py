"""Running the stock HF clients in a subprocess that knows the hub only through HF_ENDPOINT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.hubs import ServerInfo

RESULT_PREFIX = "RESULT "


def client_env(
    endpoint: str, home: Path, token: str | None = None, *, xet: bool = False, **extra: str
) -> dict[str, str]:
    """The environment of a fresh client: no inherited HF_ settings, its own HF_HOME.

    `xet=True` leaves the client as installed (hf_xet on); otherwise it is switched off so the
    test exercises the plain LFS and HTTP paths.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **extra,
        }
    )
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_client_script(
    server: ServerInfo, script: str, payload: object, env: dict[str, str], timeout: int = 240
) -> list[dict[str, Any]]:
    """Run `python -c script payload_json`; the script prints `RESULT <json list>` last."""
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(payload)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0, (
        f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{server.log()[-3000:]}"
    )
    assert lines, f"no result line\n{proc.stdout}\n{proc.stderr}"
    results: list[dict[str, Any]] = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return results
