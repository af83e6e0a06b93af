"""Co-built datasets: who may contribute, and each contribution with its licence and review.

A co-built dataset repository names the organisations whose members may contribute. A
contribution is a commit on its own branch (`contrib/<number>`) that adds files under its own
area (`contributions/<organisation>/<number>/`), carrying the contributor's licence for that
part. A maintainer (a writer of the repository's namespace) accepts it, which brings its files
onto the main branch, or rejects it, which leaves the main branch untouched.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from kaiyuan.core.errors import InvalidInputError

MAX_ORGANISATIONS = 100
MAX_CONTRIBUTION_FILES = 1000
MAX_TITLE = 200
MAX_NOTE = 2000
CONTRIBUTION_ROOT = "contributions"
# SPDX-like identifiers ("cc-by-4.0", "Apache-2.0", "LicenseRef-acme-data-1"), or "other".
_LICENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


class ContributionStatus(enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class CoBuildPolicy:
    """Which organisations' members may contribute, and which licences they may use.

    An empty `licences` accepts any well-formed licence identifier.
    """

    organisations: tuple[str, ...]
    licences: tuple[str, ...] = ()
    updated_by: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContributedFile:
    path: str  # inside the repository, under the contribution's area
    sha256: str
    size: int
    rows: int


@dataclass(frozen=True, slots=True)
class Contribution:
    number: int
    organisation: str
    contributor: str
    licence: str
    title: str
    status: ContributionStatus
    branch: str
    commit: str
    files: tuple[ContributedFile, ...]
    created_at: datetime
    reviewed_by: str = ""
    reviewed_at: datetime | None = None
    review_note: str = ""
    merged_commit: str = ""

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def contribution_area(organisation: str, number: int) -> str:
    return f"{CONTRIBUTION_ROOT}/{organisation}/{number}"


def contribution_branch(number: int) -> str:
    return f"contrib/{number}"


def checked_licence(value: object, allowed: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or not _LICENCE.fullmatch(value):
        raise InvalidInputError(
            "a contribution needs a licence identifier such as 'cc-by-4.0' (letters, digits, "
            "'.', '+', '-'; at most 64 characters)"
        )
    if allowed and value.lower() not in {a.lower() for a in allowed}:
        raise InvalidInputError(
            f"licence {value!r} is not accepted here; accepted: {', '.join(allowed)}"
        )
    return value


def checked_policy(
    organisations: object, licences: object, by: str, now: datetime
) -> CoBuildPolicy:
    """A policy from untrusted input, or InvalidInputError saying what is wrong."""
    if not isinstance(organisations, list) or not organisations:
        raise InvalidInputError("'organisations' must be a non-empty list of organisation names")
    if len(organisations) > MAX_ORGANISATIONS:
        raise InvalidInputError(f"at most {MAX_ORGANISATIONS} organisations")
    names: list[str] = []
    for name in organisations:
        if not isinstance(name, str) or not _NAMESPACE.fullmatch(name) or ".." in name:
            raise InvalidInputError(f"{str(name)[:100]!r} is not an organisation name")
        if name not in names:
            names.append(name)
    if licences is None:
        licences = []
    if not isinstance(licences, list) or len(licences) > MAX_ORGANISATIONS:
        raise InvalidInputError("'licences' must be a list of licence identifiers")
    accepted = tuple(dict.fromkeys(checked_licence(x) for x in licences))
    return CoBuildPolicy(tuple(names), accepted, by, now)
