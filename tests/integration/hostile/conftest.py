"""Fixtures of the hostile-input suites: repositories to attack, on every backend."""

from __future__ import annotations

import pytest

from tests.support.hostile import Target, populate, unique
from tests.support.hubs import ServerInfo


@pytest.fixture(scope="module")
def repo(server: ServerInfo) -> Target:
    """alice's public model with config.json, docs/notes.txt and an LFS file weights.bin."""
    return populate(server, f"alice/{unique('hostile')}")


@pytest.fixture(scope="module")
def private_repo(server: ServerInfo) -> Target:
    """alice's private model, same files."""
    return populate(server, f"alice/{unique('secret')}", private=True)


@pytest.fixture
def fresh_repo(server: ServerInfo) -> Target:
    """A repository of its own, for tests that must move a branch first."""
    return populate(server, f"alice/{unique('fresh')}")
