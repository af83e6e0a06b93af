"""The compliance checks LIC-001 … LIC-015, evaluated for one revision along its whole ancestry.

Each check reads the subject (the revision's facts, card text and legal files), its ancestors
(their facts at the revisions the edges pinned) and the licence catalog, and returns findings
that say what is wrong, which ancestor and clause cause it, and how to fix it. The checks do not
decide what happens to a push; the policy does (see `policy.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kaiyuan.core.lineage import Finding
from kaiyuan.services.licensing import combinations, obligations
from kaiyuan.services.licensing.catalog import LicenceCatalog
from kaiyuan.services.licensing.subject import Ancestor, Context, Subject, licence_of

__all__ = ["Ancestor", "Subject", "evaluate", "licence_of"]

_CHECKS: tuple[Callable[[Context], Iterator[Finding]], ...] = (
    obligations.lic001,
    obligations.lic002,
    obligations.lic003,
    obligations.lic004,
    obligations.lic005,
    obligations.lic006,
    obligations.lic007,
    obligations.lic008,
    combinations.lic009,
    combinations.lic010,
    combinations.lic011,
    combinations.lic012,
    combinations.lic013,
    combinations.lic014,
    combinations.lic015,
)


_LICENCE_ERRORS = frozenset({"LIC-003", "LIC-004", "LIC-005"})


def evaluate(subject: Subject, catalog: LicenceCatalog) -> list[Finding]:
    """Every finding of every check, in check order."""
    context = Context(subject, catalog)
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(context))
    # LIC-015 notes a licence that overstates the openness; when an error already says the
    # declared licence is wrong because of that ancestor, the note adds nothing.
    blamed = {
        f.ancestor for f in findings if f.check in _LICENCE_ERRORS and f.severity.value == "error"
    }
    return [f for f in findings if f.check != "LIC-015" or f.ancestor not in blamed]
