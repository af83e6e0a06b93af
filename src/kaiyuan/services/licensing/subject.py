"""What a check looks at: the revision being pushed, its ancestors, and the catalog."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kaiyuan.core.ids import RepoKind
from kaiyuan.core.lineage import Finding, Relation, Severity
from kaiyuan.services.licensing.catalog import Licence, LicenceCatalog
from kaiyuan.services.licensing.facts import RevisionFacts
from kaiyuan.services.lineage import Declaration

DERIVING = frozenset(
    {
        Relation.FINETUNE,
        Relation.ADAPTER,
        Relation.MERGE,
        Relation.DISTILLATION,
        Relation.CONTINUED_PRETRAINING,
        Relation.PRUNED,
        Relation.UPCYCLED,
    }
)
_RESTRICTIVE_FLOWS = frozenset({"use_restrictions", "parent_terms_persist"})
_PERMISSIVE_FAMILIES = frozenset({"permissive", "public-domain"})
_ADDENDUM = re.compile(
    r"^(addendum|use[_-]?policy|acceptable[_-]?use|responsible[_-]?ai)", re.IGNORECASE
)
_NC_OR_ND = re.compile(r"-(nc|nd)(-|$)")


@dataclass(frozen=True, slots=True)
class Ancestor:
    """A model above the subject: its facts at the pinned revision, or None when unresolved."""

    repo: str
    facts: RevisionFacts | None
    relation: Relation  # how the node below derives from this one
    depth: int  # 1: a direct parent
    through_copies: bool  # every edge from the subject up to here is a mechanical copy


@dataclass(frozen=True, slots=True)
class Subject:
    """The revision being checked and everything its findings depend on."""

    kind: RepoKind
    facts: RevisionFacts
    declaration: Declaration
    ancestors: tuple[Ancestor, ...]
    texts: dict[str, str]  # legal file name -> its text (bounded)
    body: str  # the card's Markdown
    datasets: tuple[tuple[str, RevisionFacts | None], ...] = ()
    external_allowed: Callable[[str], bool] = lambda _name: False
    openness: str | None = None  # the LIC-015 note, when the licence overstates the openness


class Context:
    """A subject with the catalog, and its ancestors' licences looked up."""

    def __init__(self, subject: Subject, catalog: LicenceCatalog) -> None:
        self.subject = subject
        self.catalog = catalog
        self.own = licence_of(subject.facts, catalog)

    def resolved(self) -> Iterator[tuple[Ancestor, RevisionFacts, Licence]]:
        """Ancestors that resolved and whose licence the catalog knows, nearest first."""
        for ancestor in self.subject.ancestors:
            if ancestor.facts is None:
                continue
            licence = licence_of(ancestor.facts, self.catalog)
            if licence is not None:
                yield ancestor, ancestor.facts, licence

    def direct(self) -> Iterator[tuple[Ancestor, RevisionFacts, Licence]]:
        """The resolved, catalogued direct parents."""
        return (item for item in self.resolved() if item[0].depth == 1)

    @property
    def relation(self) -> Relation | None:
        return self.subject.declaration.relation

    @property
    def deriving(self) -> bool:
        """The subject is a new model made from its parents (not a mechanical copy)."""
        return self.relation in DERIVING


def licence_of(facts: RevisionFacts, catalog: LicenceCatalog) -> Licence | None:
    """The catalog entry a revision's `license` (or `other` + `license_name`) names."""
    return catalog.resolve(facts.licence, facts.license_name)


def declare(licence: Licence) -> str:
    """How a card declares `licence`: its HF id, or `other` with the `license_name` slug."""
    if licence.hf_ids:
        return f"`license: {licence.hf_ids[0]}`"
    name = licence.license_names[0] if licence.license_names else licence.id
    return f"`license: other` with `license_name: {name}`"


def finding(
    check: str,
    severity: Severity,
    message: str,
    fix: str,
    ancestor: Ancestor | None = None,
    licence: Licence | None = None,
    clause_of: str | None = None,
) -> Finding:
    clause = None
    if licence is not None:
        source = licence.sources.get(clause_of or "", "") if clause_of else ""
        clause = f"{licence.name}" + (f" ({source})" if source else "")
    return Finding(check, severity, message, fix, ancestor.repo if ancestor else None, clause)


def ships(files: tuple[str, ...], kind: str) -> bool:
    prefixes = {
        "LICENSE": ("license", "licence"),
        "NOTICE": ("notice",),
        "USE_POLICY": ("use_policy", "use-policy", "usepolicy", "acceptable"),
    }[kind]
    return any(name.lower().startswith(prefixes) for name in files)
