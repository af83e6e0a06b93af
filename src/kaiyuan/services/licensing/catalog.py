"""The licence catalog: what each model and data licence demands, loaded from versioned data.

The packaged catalog is `data/catalog.yaml`; an operator may point `KAIYUAN_LICENCE_CATALOG` at
another file in the same format. Every field is checked when the file is loaded: a catalog the
checks cannot trust is refused whole, naming the entry and the field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from kaiyuan.core.errors import InvalidInputError

FAMILIES = frozenset(
    {
        "permissive",
        "copyleft",
        "creative-commons",
        "rail",
        "vendor-community",
        "research-only",
        "public-domain",
    }
)
FLOW_DOWN = frozenset(
    {
        "none",
        "notices_only",
        "use_restrictions",
        "parent_terms_persist",
        "same_license",
        "no_distribution",
    }
)
OUTPUT_RULES = frozenset(
    {
        "unrestricted",
        "prohibited_for_non_family",
        "allowed_with_attribution",
        "derivative_flow_down",
        "research_only",
    }
)
CONFIDENCE = frozenset({"high", "medium", "low"})
APPLIES_TO = frozenset({"model", "data", "code"})
MAX_CATALOG_BYTES = 4 * 1024 * 1024


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
    licence_copy: bool = False  # recipients get a copy of the licence
    notice_lines: tuple[str, ...] = ()  # a NOTICE must contain each
    display_strings: tuple[str, ...] = ()  # each must be shown
    display_strings_any_of: tuple[str, ...] = ()  # one of them must be shown


@dataclass(frozen=True, slots=True)
class Naming:
    prefix: str | None = None  # a derivative's name must begin with it


@dataclass(frozen=True, slots=True)
class ShareAlike:
    required: bool = False
    compatible: tuple[str, ...] = ()  # catalog ids a derivative may use instead


@dataclass(frozen=True, slots=True)
class UsePolicy:
    name: str
    flows_down: bool


@dataclass(frozen=True, slots=True)
class Licence:
    """One licence version and what it demands; `sources` says where each fact was read."""

    id: str
    name: str
    version: str
    hf_ids: tuple[str, ...]
    family: str
    commercial: Commercial
    flow_down: str
    outputs_for_training: str
    confidence: str
    sources: dict[str, str]
    applies_to: tuple[str, ...] = ("model",)
    spdx: str | None = None
    osi_approved: bool = False
    thresholds: tuple[Threshold, ...] = ()
    territory: tuple[Territory, ...] = ()
    attribution: Attribution = field(default_factory=Attribution)
    naming: Naming = field(default_factory=Naming)
    share_alike: ShareAlike = field(default_factory=ShareAlike)
    use_policy: UsePolicy | None = None
    gated_acceptance: bool = False
    checked: str | None = None  # how a medium or low confidence entry was re-checked


@dataclass(frozen=True, slots=True)
class RelationRule:
    """How obligations pass along one kind of derivation."""

    name: str
    contains_parent_weights: bool
    propagates: tuple[str, ...]
    rule: str


class LicenceCatalog:
    def __init__(
        self, version: str, licences: list[Licence], relations: dict[str, RelationRule]
    ) -> None:
        self.version = version
        self._by_id = {licence.id: licence for licence in licences}
        self._by_hf_id = {hf.lower(): lic for lic in licences for hf in lic.hf_ids}
        self._relations = relations

    def licences(self) -> tuple[Licence, ...]:
        return tuple(self._by_id.values())

    def find(self, licence_id: str) -> Licence | None:
        return self._by_id.get(licence_id)

    def for_hf_id(self, hf_id: str) -> Licence | None:
        """The licence an HF `license:` identifier (or an `other` license_name) names."""
        return self._by_hf_id.get(hf_id.strip().lower())

    def relation(self, name: str) -> RelationRule | None:
        return self._relations.get(name)


@functools.lru_cache(maxsize=4)
def load_catalog(path: Path | None = None) -> LicenceCatalog:
    """The packaged catalog, or the one at `path`; InvalidInput naming what is wrong."""
    if path is None:
        raw = (files("kaiyuan.services.licensing") / "data" / "catalog.yaml").read_bytes()
    else:
        try:
            if path.stat().st_size > MAX_CATALOG_BYTES:
                raise InvalidInputError(f"licence catalog {path} is over {MAX_CATALOG_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"licence catalog {path} cannot be read: {exc}") from None
    return parse_catalog(raw)


def parse_catalog(raw: bytes) -> LicenceCatalog:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"licence catalog is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("licences"), list):
        raise InvalidInputError("licence catalog must be a mapping with a 'licences' list")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise InvalidInputError("licence catalog needs a 'version' string")
    licences = [_licence(item, index) for index, item in enumerate(data["licences"])]
    _check_references(licences)
    return LicenceCatalog(version, licences, _relations(data.get("relations", {})))


def _check_references(licences: list[Licence]) -> None:
    """Ids and HF ids are unique; share-alike compatibility names known licences."""
    seen: set[str] = set()
    hf_seen: dict[str, str] = {}
    for licence in licences:
        if licence.id in seen:
            raise InvalidInputError(f"licence catalog repeats the id {licence.id!r}")
        seen.add(licence.id)
        for hf in licence.hf_ids:
            if hf.lower() in hf_seen:
                raise InvalidInputError(
                    f"{licence.id}: HF id {hf!r} already maps to {hf_seen[hf.lower()]!r}"
                )
            hf_seen[hf.lower()] = licence.id
    for licence in licences:
        for other in licence.share_alike.compatible:
            if other not in seen:
                raise InvalidInputError(
                    f"{licence.id}: share_alike.compatible names unknown licence {other!r}"
                )


class _Entry:
    """Typed reads from one catalog entry; errors name the entry and the field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise InvalidInputError(f"licence catalog {where} must be a mapping")
        self.data: dict[str, Any] = data
        self.where = where

    def fail(self, name: str, what: str) -> InvalidInputError:
        return InvalidInputError(f"licence catalog {self.where}: {name} {what}")

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self.data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must be a non-empty string")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def choice(self, name: str, allowed: frozenset[str]) -> str:
        value = self.text(name)
        if value not in allowed:
            raise self.fail(name, f"must be one of {', '.join(sorted(allowed))}, not {value!r}")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a list of strings")
        return tuple(value)

    def sub(self, name: str) -> _Entry:
        return _Entry(self.data.get(name, {}), f"{self.where}.{name}")

    def entries(self, name: str) -> list[_Entry]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return [_Entry(item, f"{self.where}.{name}[{i}]") for i, item in enumerate(value)]


def _licence(item: object, index: int) -> Licence:
    entry = _Entry(item, f"entry {index}")
    licence_id = entry.text("id")
    entry.where = f"entry {licence_id!r}"
    sources = entry.data.get("sources")
    if not isinstance(sources, dict) or not isinstance(sources.get("text"), str):
        raise entry.fail("sources", "must say where the licence text was read ('text')")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise entry.fail("sources", "must map fields to strings")
    applies = entry.texts("applies_to") or ("model",)
    if not set(applies) <= APPLIES_TO:
        raise entry.fail("applies_to", "must name model, data or code")
    commercial = entry.sub("commercial")
    attribution = entry.sub("attribution")
    naming = entry.sub("naming")
    share = entry.sub("share_alike")
    policy = entry.data.get("use_policy")
    use_policy = None
    if policy is not None:
        found = _Entry(policy, f"{entry.where}.use_policy")
        use_policy = UsePolicy(str(found.text("name")), found.flag("flows_down"))
    hf_ids = entry.texts("hf_ids")
    if not hf_ids:
        raise entry.fail("hf_ids", "must list at least one HF licence identifier")
    return Licence(
        id=str(licence_id),
        name=str(entry.text("name")),
        version=str(entry.text("version")),
        hf_ids=hf_ids,
        family=entry.choice("family", FAMILIES),
        commercial=Commercial(
            commercial.flag("allowed"), commercial.text("conditions", required=False)
        ),
        flow_down=entry.choice("flow_down", FLOW_DOWN),
        outputs_for_training=entry.choice("outputs_for_training", OUTPUT_RULES),
        confidence=entry.choice("confidence", CONFIDENCE),
        sources=dict(sources),
        applies_to=applies,
        spdx=entry.text("spdx", required=False),
        osi_approved=entry.flag("osi_approved"),
        thresholds=tuple(_threshold(t) for t in entry.entries("thresholds")),
        territory=tuple(
            Territory(
                str(t.text("scope")),
                str(t.text("excluded")),
                t.text("exception", required=False),
            )
            for t in entry.entries("territory")
        ),
        attribution=Attribution(
            attribution.flag("licence_copy"),
            attribution.texts("notice_lines"),
            attribution.texts("display_strings"),
            attribution.texts("display_strings_any_of"),
        ),
        naming=Naming(naming.text("prefix", required=False)),
        share_alike=ShareAlike(share.flag("required"), share.texts("compatible")),
        use_policy=use_policy,
        gated_acceptance=entry.flag("gated_acceptance"),
        checked=entry.text("checked", required=False),
    )


def _threshold(entry: _Entry) -> Threshold:
    value = entry.data.get("value")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise entry.fail("value", "must be a non-negative integer")
    operator = entry.text("operator")
    if operator not in {">", ">=", "<", "<="}:
        raise entry.fail("operator", "must be >, >=, < or <=")
    return Threshold(
        str(entry.text("metric")),
        str(operator),
        value,
        str(entry.text("effect")),
        entry.text("clause", required=False),
    )


def _relations(data: object) -> dict[str, RelationRule]:
    if not isinstance(data, dict):
        raise InvalidInputError("licence catalog 'relations' must be a mapping")
    rules = {}
    for name, body in data.items():
        entry = _Entry(body, f"relation {name!r}")
        rules[str(name)] = RelationRule(
            str(name),
            entry.flag("contains_parent_weights"),
            entry.texts("propagates"),
            str(entry.text("rule")),
        )
    return rules
