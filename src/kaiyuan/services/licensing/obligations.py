"""What a derivative must carry from its ancestors: LIC-001 to LIC-008.

A licence declared (001), parents that resolve (002), copies that stay copies (003), no
commercial use under a non-commercial ancestor (004), use restrictions and share-alike terms
passed on (005), name prefixes (006), attribution lines (007) and notices (008).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kaiyuan.core.lineage import Finding, Relation, Severity
from kaiyuan.services.licensing.catalog import Licence
from kaiyuan.services.licensing.facts import RevisionFacts
from kaiyuan.services.licensing.subject import (
    Context,
    Subject,
    declare,
    finding,
    licence_of,
    ships,
)

_RESTRICTIVE_FLOWS = frozenset({"use_restrictions", "parent_terms_persist"})
_PERMISSIVE_FAMILIES = frozenset({"permissive", "public-domain"})
_ADDENDUM = re.compile(
    r"^(addendum|use[_-]?policy|acceptable[_-]?use|responsible[_-]?ai)", re.IGNORECASE
)


# --- LIC-001: a licence is declared, and `other` says which ----------------------------------
def lic001(c: Context) -> Iterator[Finding]:
    facts = c.subject.facts
    if not facts.licences:
        yield finding(
            "LIC-001",
            Severity.ERROR,
            "the card declares no licence",
            "add `license: <id>` to the YAML front matter of README.md (an HF licence id, or "
            "`other` with `license_name` and `license_link`)",
        )
        return
    for declared in facts.licences:
        if declared == "other":
            has_file = any(
                name.lower().startswith(("license", "licence")) for name in facts.legal_files
            )
            if not facts.license_name or not (facts.license_link or has_file):
                yield finding(
                    "LIC-001",
                    Severity.ERROR,
                    "`license: other` needs `license_name` and `license_link` (or a LICENSE file)",
                    "add `license_name: <short id>` and `license_link: LICENSE` (or a URL) to the "
                    "card, and ship the licence text",
                )
            elif licence_of(facts, c.catalog) is None:
                yield finding(
                    "LIC-001",
                    Severity.WARNING,
                    f"licence {facts.license_name!r} is not in the catalog; its obligations "
                    "cannot be checked",
                    "use a catalogued `license_name` (see `GET /api/licences`) or ask the "
                    "operator to add this licence to the catalog",
                )
        elif c.catalog.for_hf_id(declared) is None:
            yield finding(
                "LIC-001",
                Severity.WARNING,
                f"licence {declared!r} is not in the catalog; its obligations cannot be checked",
                "use an HF licence identifier (see `GET /api/licences`), or `other` with "
                "`license_name` and `license_link`",
            )


# --- LIC-002: parents resolve and the relation is known ---------------------------------------
def lic002(c: Context) -> Iterator[Finding]:
    declaration = c.subject.declaration
    for problem in declaration.problems:
        yield finding(
            "LIC-002",
            Severity.ERROR,
            problem,
            "fix `base_model` / `base_model_relation` in the card",
        )
    for ancestor in c.subject.ancestors:
        if ancestor.depth == 1 and ancestor.facts is None:
            if c.subject.external_allowed(ancestor.repo):
                continue
            yield finding(
                "LIC-002",
                Severity.ERROR,
                f"base_model {ancestor.repo!r} does not resolve on this hub",
                f"push {ancestor.repo} to this hub first, correct the id, or ask the operator "
                "to allow it as an external model (KAIYUAN_LINEAGE_EXTERNAL_MODELS)",
                ancestor,
            )
    if declaration.relation is Relation.MERGE and len(declaration.parents) < 2:  # noqa: PLR2004
        yield finding(
            "LIC-002",
            Severity.ERROR,
            "a merge must list at least two parents in base_model",
            "list every merged model in `base_model`, or set the right `base_model_relation`",
        )


# --- LIC-003: a quantized or converted copy keeps the parent's licence and its files -----------
def lic003(c: Context) -> Iterator[Finding]:
    if c.relation is None or not c.relation.copies_parent:
        return
    own = c.subject.facts
    for ancestor in c.subject.ancestors:
        parent = ancestor.facts
        if ancestor.depth != 1 or parent is None:
            continue
        same = own.licence == parent.licence and (
            own.licence != "other"
            or (own.license_name or "").lower() == (parent.license_name or "").lower()
        )
        if not same:
            yield finding(
                "LIC-003",
                Severity.ERROR,
                f"a {c.relation.value} copy must declare its parent's licence: {ancestor.repo} "
                f"declares {parent.declared!r}, this repository {own.declared!r}",
                _same_licence_fix(parent),
                ancestor,
                licence_of(parent, c.catalog),
                "flow_down",
            )
        for kind in ("LICENSE", "NOTICE", "USE_POLICY"):
            if ships(parent.legal_files, kind) and not ships(own.legal_files, kind):
                yield finding(
                    "LIC-003",
                    Severity.ERROR,
                    f"{ancestor.repo} ships a {kind} file; this {c.relation.value} copy does not",
                    f"copy the parent's {kind} file(s) into this repository",
                    ancestor,
                    licence_of(parent, c.catalog),
                    "attribution",
                )


def _same_licence_fix(parent: RevisionFacts) -> str:
    name = f" and `license_name: {parent.license_name}`" if parent.licence == "other" else ""
    return f"set `license: {parent.licence}`{name} in the card, as the parent has it"


# --- LIC-004: a non-commercial ancestor keeps every descendant non-commercial ------------------
def lic004(c: Context) -> Iterator[Finding]:
    if c.own is None or not c.own.commercial.allowed:
        return
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        if licence.commercial.allowed or licence.id in seen:
            continue
        seen.add(licence.id)
        yield finding(
            "LIC-004",
            Severity.ERROR,
            f"{ancestor.repo} is under {licence.name}, which does not allow commercial use; this "
            f"repository declares {c.own.name}, which does",
            f"declare a non-commercial licence that keeps the ancestor's terms (such as "
            f"{declare(licence)}), or derive from another model",
            ancestor,
            licence,
            "commercial",
        )


# --- LIC-005: use restrictions and parent terms flow down; share-alike keeps the licence -------
def lic005(c: Context) -> Iterator[Finding]:
    own = c.own
    if own is None:
        return
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        if licence.id in seen or licence.id == own.id:
            continue
        seen.add(licence.id)
        if licence.share_alike.required:
            if own.id not in licence.share_alike.compatible:
                yield finding(
                    "LIC-005",
                    Severity.ERROR,
                    f"{ancestor.repo} is under {licence.name}, a share-alike licence; "
                    f"derivatives must use the same (or a compatible) licence, not {own.name}",
                    f"declare {declare(licence)}",
                    ancestor,
                    licence,
                    "share_alike",
                )
            continue
        if licence.flow_down not in _RESTRICTIVE_FLOWS or own.family not in _PERMISSIVE_FAMILIES:
            continue
        if _carries_terms(c.subject, licence):
            continue
        what = (
            "its use restrictions must bind every recipient"
            if licence.flow_down == "use_restrictions"
            else "its terms keep governing the parts derived from it"
        )
        yield finding(
            "LIC-005",
            Severity.ERROR,
            f"{ancestor.repo} is under {licence.name}: {what}, but this repository declares the "
            f"permissive {own.name} without carrying them",
            f"declare the ancestor's licence, or ship its terms in an addendum file (e.g. "
            f"USE_POLICY.md or ADDENDUM.md naming {licence.name}) next to your own licence",
            ancestor,
            licence,
            "flow_down",
        )


def _carries_terms(subject: Subject, licence: Licence) -> bool:
    """An addendum file, or a licence file that names the ancestor's licence, is present."""
    if any(_ADDENDUM.match(name) for name in subject.facts.legal_files):
        return True
    names = [licence.name.split("(")[0].strip().lower(), licence.id.lower(), *licence.hf_ids]
    for text in subject.texts.values():
        lowered = text.lower()
        if any(name and name.lower() in lowered for name in names):
            return True
    return False


# --- LIC-006: naming prefixes (Llama, glm-4) --------------------------------------------------
def lic006(c: Context) -> Iterator[Finding]:
    if not c.deriving:
        return
    facts = c.subject.facts
    names = [facts.name, *([facts.model_name] if facts.model_name else [])]
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        prefix = licence.naming.prefix
        relation = c.relation.value if c.relation else ""
        if not prefix or prefix.lower() in seen or not licence.naming.applies_to(relation):
            continue
        seen.add(prefix.lower())
        if any(name.lower().startswith(prefix.lower()) for name in names):
            continue
        yield finding(
            "LIC-006",
            Severity.ERROR,
            f"{ancestor.repo} is under {licence.name}: a model derived from it must have a name "
            f"that begins with {prefix!r}; {facts.name!r} does not",
            f"rename the repository (or set `model_name`) to begin with {prefix!r}, e.g. "
            f"{prefix}-{facts.name}",
            ancestor,
            licence,
            "naming",
        )


# --- LIC-007: attribution lines shown in the card ---------------------------------------------
def lic007(c: Context) -> Iterator[Finding]:
    if not c.deriving:
        return
    body = c.subject.body.lower()
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        required = list(licence.attribution.display_strings)
        any_of = list(licence.attribution.display_strings_any_of)
        missing = [s for s in required if s.lower() not in body]
        if any_of and not any(s.lower() in body for s in any_of):
            missing.append(" or ".join(repr(s) for s in any_of))
        for text in missing:
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            shown = text if text.startswith("'") else repr(text)
            yield finding(
                "LIC-007",
                Severity.WARNING,
                f"{ancestor.repo} is under {licence.name}, which asks derivatives to display "
                f"{shown}; the card does not",
                f"add {shown} to the card (and wherever the model is offered)",
                ancestor,
                licence,
                "attribution",
            )


# --- LIC-008: NOTICE lines of every ancestor --------------------------------------------------
def lic008(c: Context) -> Iterator[Finding]:
    notices = " ".join(
        text.lower() for name, text in c.subject.texts.items() if name.lower().startswith("notice")
    )
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        for line in licence.attribution.notice_lines:
            key = line.lower()
            if key in seen:
                continue
            seen.add(key)
            if key not in notices:
                yield finding(
                    "LIC-008",
                    Severity.ERROR,
                    f"{ancestor.repo} is under {licence.name}, whose notice must travel with "
                    f"every copy: no NOTICE file here contains {line!r}",
                    f"add a NOTICE file containing the line: {line}",
                    ancestor,
                    licence,
                    "attribution",
                )
