"""Checks across parents and towards downloaders: LIC-009 to LIC-015.

Licences a merge cannot combine (009), what a teacher's licence says of its students (010),
territory limits (011), thresholds and conditions users must know (012), gates a derivative
should keep (013), training data licences (014), and openness the licence overstates (015).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kaiyuan.core.ids import RepoKind
from kaiyuan.core.lineage import Finding, Relation, Severity
from kaiyuan.services.licensing.catalog import Licence
from kaiyuan.services.licensing.openness import restricts_use
from kaiyuan.services.licensing.subject import Ancestor, Context, finding, licence_of

_RESTRICTIVE_FLOWS = frozenset({"use_restrictions", "parent_terms_persist"})
_NC_OR_ND = re.compile(r"-(nc|nd)(-|$)")


# --- LIC-009: licences a merge cannot combine -------------------------------------------------
def lic009(c: Context) -> Iterator[Finding]:
    if c.relation is not Relation.MERGE:
        return
    lines: list[tuple[Ancestor, Licence]] = [(a, lic) for a, _f, lic in c.resolved()]
    yield from _merge_conflicts(lines)


def _merge_conflicts(lines: list[tuple[Ancestor, Licence]]) -> Iterator[Finding]:
    reported: set[frozenset[str]] = set()
    for i, (first, one) in enumerate(lines):
        for second, other in lines[i + 1 :]:
            pair = frozenset({one.id, other.id})
            if one.id == other.id or pair in reported:
                continue
            reason = _conflict(one, other) or _conflict(other, one)
            if reason is None:
                continue
            reported.add(pair)
            yield Finding(
                "LIC-009",
                Severity.ERROR,
                f"this merge combines {first.repo} ({one.name}) and {second.repo} "
                f"({other.name}): {reason}",
                "merge models whose licences can hold together, or do not distribute the merge",
                first.repo,
                f"{one.name}; {other.name}",
            )


def _conflict(one: Licence, other: Licence) -> str | None:
    if (
        one.share_alike.required
        and other.share_alike.required
        and other.id not in one.share_alike.compatible
        and one.id not in other.share_alike.compatible
    ):
        return "two share-alike licences, each demanding that derivatives use it alone"
    if one.flow_down in _RESTRICTIVE_FLOWS and other.family == "copyleft":
        return "use restrictions that a copyleft licence forbids adding"
    first, second = one.naming.prefix, other.naming.prefix
    if (
        first
        and second
        and not (
            first.lower().startswith(second.lower()) or second.lower().startswith(first.lower())
        )
    ):
        return f"both demand the name begin with their prefix ({first!r} and {second!r})"
    if one.outputs_for_training == "prohibited_for_non_family" and _family(one) != _family(other):
        return f"{one.name} forbids using it to improve models outside its family"
    if not one.commercial.allowed and other.share_alike.required:
        return "a non-commercial licence and a share-alike licence that requires allowing it"
    return None


def _family(licence: Licence) -> str:
    match = re.match(r"[a-z]+", licence.id)
    return match.group(0) if match else licence.id


# --- LIC-010: distillation from a teacher -----------------------------------------------------
def lic010(c: Context) -> Iterator[Finding]:
    facts = c.subject.facts
    if c.relation is Relation.DISTILLATION:
        families = {_family(lic) for _a, _f, lic in c.resolved()}
        if c.own is not None:
            families.add(_family(c.own))
        for ancestor, _facts, licence in c.direct():
            if licence.outputs_for_training != "prohibited_for_non_family":
                continue
            others = families - {_family(licence)}
            if others:
                yield finding(
                    "LIC-010",
                    Severity.ERROR,
                    f"{ancestor.repo} is under {licence.name}, which forbids using its outputs to "
                    "train models outside its family; this student is not only of that family",
                    "distill from a teacher whose licence allows it, or keep the student within "
                    "the teacher's family and licence",
                    ancestor,
                    licence,
                    "outputs_for_training",
                )
    elif facts.synthetic_data and c.subject.kind is RepoKind.MODEL:
        yield finding(
            "LIC-010",
            Severity.WARNING,
            "the card mentions synthetic or distilled data but names no teacher model",
            "list the teacher models in `base_model` with `base_model_relation: distillation`",
        )


# --- LIC-011: territory limits --------------------------------------------------------------
def lic011(c: Context) -> Iterator[Finding]:
    if c.subject.facts.eu_disallowed:
        return
    seen: set[str] = set()
    for ancestor, _facts, licence in c.resolved():
        for limit in licence.territory:
            key = f"{licence.id}:{limit.scope}:{limit.excluded}"
            if key in seen:
                continue
            seen.add(key)
            yield finding(
                "LIC-011",
                Severity.WARNING,
                f"{ancestor.repo} is under {licence.name}, which excludes {limit.excluded} "
                f"({limit.scope})" + (f"; except {limit.exception}" if limit.exception else ""),
                "gate the repository and set `extra_gated_eu_disallowed: true` in the card if "
                "the limit applies to this model",
                ancestor,
                licence,
                "territory",
            )


# --- LIC-012: thresholds and conditions downloaders must know --------------------------------
def lic012(c: Context) -> Iterator[Finding]:
    entries: list[tuple[Ancestor | None, Licence]] = []
    if c.own is not None:
        entries.append((None, c.own))
    entries.extend((a, lic) for a, _f, lic in c.resolved())
    seen: set[str] = set()
    for ancestor, licence in entries:
        if licence.id in seen:
            continue
        seen.add(licence.id)
        for threshold in licence.thresholds:
            yield finding(
                "LIC-012",
                Severity.INFO,
                f"{licence.name}: {threshold.describe()}",
                "nothing to fix here; users above the threshold need the licensor's permission",
                ancestor,
                licence,
                "thresholds",
            )
        if licence.commercial.allowed and licence.commercial.conditions:
            yield finding(
                "LIC-012",
                Severity.INFO,
                f"{licence.name}: commercial use only if {licence.commercial.conditions}",
                "nothing to fix here; commercial users must meet the condition",
                ancestor,
                licence,
                "commercial",
            )


# --- LIC-013: a gated parent's derivative should be gated -----------------------------------
def lic013(c: Context) -> Iterator[Finding]:
    if c.subject.facts.gated:
        return
    for ancestor in c.subject.ancestors:
        parent = ancestor.facts
        if ancestor.depth != 1 or parent is None or not parent.gated:
            continue
        yield finding(
            "LIC-013",
            Severity.WARNING,
            f"{ancestor.repo} is gated (its users accept its licence before downloading); "
            "this derivative is not",
            "gate this repository too (`gated: manual` or `auto` in the card, or the repository "
            "settings) and copy the parent's `extra_gated_prompt` / `extra_gated_fields`",
            ancestor,
        )


# --- LIC-014: training data licences; per-config licences of mixed datasets ------------------
def lic014(c: Context) -> Iterator[Finding]:
    for name, facts in c.subject.datasets:
        licence = licence_of(facts, c.catalog) if facts else None
        if facts is None or licence is None:
            yield finding(
                "LIC-014",
                Severity.WARNING,
                f"training dataset {name!r} has no licence this hub knows",
                f"push {name} here with a declared licence, or check its terms yourself",
            )
            continue
        hf_id = facts.licence or ""
        reason = None
        if not licence.commercial.allowed:
            reason = "non-commercial"
        elif licence.share_alike.required:
            reason = "share-alike"
        elif _NC_OR_ND.search(hf_id):
            reason = "no-derivatives"
        if reason:
            yield finding(
                "LIC-014",
                Severity.WARNING,
                f"training dataset {name} is under {licence.name} ({reason}); whether that binds "
                "a model trained on it is unsettled",
                "check that the model's licence and use respect the dataset's terms",
                None,
                licence,
                "commercial",
            )
    facts = c.subject.facts
    if (
        c.subject.kind is RepoKind.DATASET
        and len(facts.licences) > 1
        and facts.config_count > 1
        and not facts.per_config_licences
    ):
        yield finding(
            "LIC-014",
            Severity.WARNING,
            "this dataset declares several licences but does not say which config each covers",
            "add `license:` to each entry of `configs` in the card",
        )


# --- LIC-015: openness -----------------------------------------------------------------------
def lic015(c: Context) -> Iterator[Finding]:
    # Every report carries the openness assessment; a finding is made only when the declared
    # licence overstates it (see service._openness_note).
    if c.subject.openness:
        cause = next((a for a, _f, lic in c.resolved() if restricts_use(lic)), None)
        yield finding(
            "LIC-015",
            Severity.INFO,
            c.subject.openness,
            "say in the card that the ancestor's terms still apply to the weights",
            cause,
        )
