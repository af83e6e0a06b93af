"""Docs keep up with the code: every setting, CLI command and wire action is documented."""

from __future__ import annotations

from pathlib import Path

import typer.main

from kaiyuan.cli.main import app
from kaiyuan.config import Settings
from kaiyuan.http.hfcompat import dispatch

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "reference" / "settings.md").read_text()
    missing = [n for n in Settings.model_fields if f"`KAIYUAN_{n.upper()}`" not in text]
    assert missing == []


def _commands(group: object, prefix: str) -> list[str]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found += _commands(command, path)
        else:
            found.append(path)
    return found


def test_every_cli_command_is_documented() -> None:
    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    commands = _commands(typer.main.get_command(app), "kaiyuan")
    assert "kaiyuan serve" in commands
    assert [c for c in commands if f"`{c}" not in text] == []


def test_every_repo_action_is_in_the_compat_table() -> None:
    text = (ROOT / "src" / "kaiyuan" / "http" / "hfcompat" / "COMPAT.md").read_text()
    actions = {a for table in dispatch._API.values() for a in table if a}
    assert [a for a in sorted(actions) if f"/{a}" not in text] == []


def test_readme_has_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "pip install -e '.[test]' && python -m pytest"
    assert test_command in readme
    assert test_command in ci
    assert "pip install -e . && kaiyuan serve" in readme
