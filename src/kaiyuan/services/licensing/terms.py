"""The facts of one licence, as typed values: what the catalog says each licence demands."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Commercial:
    allowed: bool
    conditions: str | None = None  # what commercial use must satisfy, when it is allowed


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    operator: str
    value: int
    effect: str
    clause: str | None = None

    def describe(self) -> str:
        return f"{self.metric} {self.operator} {self.value:,}: {self.effect}"


@dataclass(frozen=True, slots=True)
class Territory:
    scope: str
    excluded: str
    exception: str | None = None


@dataclass(frozen=True, slots=True)
class Attribution:
    licence_copy: bool = False  # recipients get a copy of the licence text
    retain_notices: bool = False  # upstream copyright and attribution notices are kept
    modification_notices: bool = False  # modified files say that they were changed
    notice_lines: tuple[str, ...] = ()  # a NOTICE file must contain each
    display_strings: tuple[str, ...] = ()  # each must be shown (card, product documentation)
    display_strings_any_of: tuple[str, ...] = ()  # one of them must be shown


@dataclass(frozen=True, slots=True)
class Naming:
    prefix: str | None = None  # a derivative's name must begin with it
    relations: tuple[str, ...] = ()  # the hub relations (base_model_relation) that trigger it

    def applies_to(self, relation: str) -> bool:
        return self.prefix is not None and relation in self.relations


@dataclass(frozen=True, slots=True)
class UsePolicy:
    name: str
    flows_down: bool  # recipients of derivatives are bound by it too
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ShareAlike:
    required: bool = False
    compatible: tuple[str, ...] = ()  # other catalog ids a derivative may use instead


@dataclass(frozen=True, slots=True, kw_only=True)
class Licence:
    """One licence version and what it demands; `sources` says where each fact was read."""

    id: str
    name: str
    version: str
    hf_ids: tuple[str, ...] = ()  # Hugging Face `license:` identifiers
    license_names: tuple[str, ...] = ()  # slugs used with `license: other` + `license_name:`
    spdx: str | None = None
    applies_to: tuple[str, ...] = ("model",)
    family: str
    osi_approved: bool = False
    commercial: Commercial
    thresholds: tuple[Threshold, ...] = ()
    territory: tuple[Territory, ...] = ()
    attribution: Attribution = field(default_factory=Attribution)
    naming: Naming = field(default_factory=Naming)
    use_policy: UsePolicy | None = None
    flow_down: str
    share_alike: ShareAlike = field(default_factory=ShareAlike)
    outputs_for_training: str
    gated_acceptance: bool = False  # the licensor gates it on the Hub behind licence acceptance
    confidence: str
    sources: dict[str, str] = field(default_factory=dict, hash=False)
    checked: str | None = None  # what was re-checked, where and how

    @property
    def naming_prefix(self) -> str | None:
        return self.naming.prefix


@dataclass(frozen=True, slots=True, kw_only=True)
class Relation:
    """How obligations pass along one kind of derivation (a hub `base_model_relation`)."""

    name: str
    maps_from: tuple[str, ...]  # the research's relation types this one follows
    contains_parent_weights: bool
    propagates: tuple[str, ...]
    declared_licence_rule: str
    conflicts: tuple[str, ...] = ()  # combinations a merge cannot hold
    teacher_rules: tuple[tuple[str, str], ...] = ()  # outputs_for_training value -> what follows
    note: str | None = None
    source: str

    def carries(self, fact: str) -> bool:
        return fact in self.propagates

    def teacher_rule(self, outputs_for_training: str) -> str | None:
        return dict(self.teacher_rules).get(outputs_for_training)
