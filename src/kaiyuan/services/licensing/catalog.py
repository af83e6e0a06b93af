"""The licence catalog: what each model and data licence demands, loaded from versioned data.

The packaged catalog is `data/licences.yaml`. An operator may supply another file in the same
format: a whole catalog, or one with `extends: packaged` that only adds or replaces entries (by
id) and relations (by name). Every field is checked when a file is loaded; a catalog the checks
cannot trust is refused whole, with an error that names the entry and the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from kaiyuan.core.errors import InvalidInputError, NotFoundError
from kaiyuan.core.lineage import Relation as RelationKind
from kaiyuan.services.licensing.terms import (
    Attribution,
    Commercial,
    Licence,
    Naming,
    Relation,
    ShareAlike,
    Territory,
    Threshold,
    UsePolicy,
)

__all__ = [
    "Attribution",
    "Commercial",
    "Licence",
    "LicenceCatalog",
    "Naming",
    "Relation",
    "ShareAlike",
    "Territory",
    "Threshold",
    "UsePolicy",
    "load_catalog",
    "parse_catalog",
]

PACKAGED_FILE = "licences.yaml"
MAX_CATALOG_BYTES = 4 * 1024 * 1024
MAX_VERSION_CHARS = 32  # reports store the catalog version in a 32-character column
FAMILIES = frozenset(
    {"permissive", "copyleft", "creative-commons", "rail", "vendor-community", "research-only"}
    | {"public-domain"}
)
FLOW_DOWN = frozenset(
    {"none", "notices_only", "use_restrictions", "parent_terms_persist", "same_license"}
    | {"no_distribution"}
)
OUTPUT_RULES = frozenset(
    {"unrestricted", "prohibited_for_non_family", "allowed_with_attribution", "research_only"}
    | {"derivative_flow_down"}
)
CONFIDENCE = frozenset({"high", "medium", "low"})
APPLIES_TO = frozenset({"model", "data", "code"})
OPERATORS = frozenset({">", ">=", "<", "<="})
PROPAGATES = frozenset(
    {"licence_terms", "commercial", "thresholds", "territory", "use_policy", "naming"}
    | {"attribution", "notices", "flow_down", "share_alike", "licence_files", "gating"}
    | {"teacher_outputs_rule", "dataset_warnings"}
)
# `other` points at license_name; `unknown` says nothing. The hub handles both, never an entry.
RESERVED_HF_IDS = frozenset({"other", "unknown"})
HUB_RELATIONS = frozenset(kind.value for kind in RelationKind)
FACTS = frozenset(
    {"commercial", "thresholds", "territory", "attribution", "naming", "use_policy"}
    | {"flow_down", "share_alike", "outputs_for_training", "gated_acceptance", "osi_approved"}
)
_OWN_ONLY = frozenset(  # never inherited: they say which licence this is, and how sure we are
    {"id", "name", "version", "hf_ids", "license_names", "spdx", "confidence", "checked"}
    | {"inherits_from", "sources"}
)
_ENTRY_KEYS = FACTS | _OWN_ONLY | {"applies_to", "family"}
_ID = re.compile(r"[a-z0-9][a-z0-9.+_-]*")
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")


def _keys(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


class LicenceCatalog:
    """The licences by id and by Hub identifier, and the rules for each relation."""

    def __init__(
        self, version: str, licences: Sequence[Licence], relations: Mapping[str, Relation]
    ) -> None:
        self.version = version
        self._by_id = {licence.id: licence for licence in licences}
        self._by_name = {
            name.lower(): licence
            for licence in licences
            for name in (*licence.hf_ids, *licence.license_names)
        }
        self._relations = dict(relations)

    def licences(self) -> tuple[Licence, ...]:
        return tuple(self._by_id.values())

    def find(self, licence_id: str) -> Licence | None:
        return self._by_id.get(licence_id.strip().lower())

    def get(self, licence_id: str) -> Licence:
        found = self.find(licence_id)
        if found is None:
            raise NotFoundError(f"no licence {licence_id!r} in the licence catalog")
        return found

    def for_hf_id(self, hf_id: str) -> Licence | None:
        """The entry a `license:` identifier (or a known `license_name` slug) names, any case."""
        return self._by_name.get(hf_id.strip().lower())

    def for_license_name(self, license_name: str) -> Licence | None:
        """The entry an `other` licence's `license_name` names: a known slug or a catalog id."""
        return self.for_hf_id(license_name) or self.find(license_name)

    def resolve(self, licence: str | None, license_name: str | None = None) -> Licence | None:
        """The entry a card declares; None for a missing, `unknown` or uncatalogued licence."""
        if not licence or licence.strip().lower() == "unknown":
            return None
        if licence.strip().lower() == "other":
            return self.for_license_name(license_name) if license_name else None
        return self.for_hf_id(licence)

    def relations(self) -> tuple[Relation, ...]:
        return tuple(self._relations.values())

    def relation(self, name: str) -> Relation:
        found = self._relations.get(str(name))
        if found is None:
            raise NotFoundError(f"no relation {name!r} in the licence catalog")
        return found


@functools.lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> LicenceCatalog:
    """The packaged catalog, or the one at `path` (cached; restart to reload a changed file)."""
    if path is None:
        return parse_catalog(_packaged_bytes())
    try:
        if path.stat().st_size > MAX_CATALOG_BYTES:
            raise InvalidInputError(f"licence catalog {path} is over {MAX_CATALOG_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"licence catalog {path} cannot be read: {exc}") from None
    return parse_catalog(raw)


def parse_catalog(raw: bytes) -> LicenceCatalog:
    """A catalog from YAML bytes, every field checked; InvalidInputError names what is wrong."""
    data = _yaml_mapping(raw)
    extends = data.pop("extends", None)
    if extends is not None:
        if extends != "packaged":
            raise InvalidInputError("licence catalog: extends must be 'packaged'")
        data = _overlay(_yaml_mapping(_packaged_bytes()), data)
    unknown = sorted(str(key) for key in data if key not in {"version", "relations", "licences"})
    if unknown:
        raise InvalidInputError(f"licence catalog has unknown top-level keys: {', '.join(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_CHARS:
        raise InvalidInputError(
            f"licence catalog needs a 'version' string of at most {MAX_VERSION_CHARS} characters"
        )
    items = data.get("licences")
    if not isinstance(items, list):
        raise InvalidInputError("licence catalog must be a mapping with a 'licences' list")
    licences = _licences(items)
    raw_relations = data.get("relations")
    relations = (
        {rule.name: rule for rule in load_catalog().relations()}
        if raw_relations is None
        else _relations(raw_relations)
    )
    return LicenceCatalog(version, licences, relations)


def _packaged_bytes() -> bytes:
    return (files("kaiyuan.services.licensing") / "data" / PACKAGED_FILE).read_bytes()


def _yaml_mapping(raw: bytes) -> dict[Any, Any]:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"licence catalog is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError("licence catalog must be a mapping with a 'licences' list")
    return data


def _overlay(base: dict[Any, Any], extra: dict[Any, Any]) -> dict[Any, Any]:
    """The packaged catalog with an operator's entries and relations added or replaced."""
    added, rules = extra.get("licences"), extra.get("relations") or {}
    if not isinstance(added, list) or not isinstance(rules, dict):
        raise InvalidInputError("licence catalog needs a 'licences' list and 'relations' mapping")
    entries = {_key_of(entry): entry for entry in (*base["licences"], *added)}
    relations = {**base["relations"], **rules}
    return {**base, **extra, "licences": list(entries.values()), "relations": relations}


def _key_of(entry: object) -> object:
    # entries without an id stay separate, so that validation reports them
    return entry.get("id", id(entry)) if isinstance(entry, dict) else id(entry)


class _Fields:
    """Typed reads from one mapping of the catalog; errors name the entry and the field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise InvalidInputError(f"{where} must be a mapping")
        self.data: dict[str, Any] = data
        self.where = where

    def fail(self, name: str, what: str) -> InvalidInputError:
        return InvalidInputError(f"{self.where}: {name} {what}")

    def only(self, allowed: frozenset[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(str(key), "is not a field of the catalog")

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must be a non-empty string")
        return value

    def text(self, name: str) -> str:
        value = self.optional_text(name)
        if value is None:
            raise self.fail(name, "must be a non-empty string")
        return value

    def flag(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def choice(self, name: str, allowed: frozenset[str]) -> str:
        value = self.text(name)
        if value not in allowed:
            raise self.fail(name, f"must be one of {', '.join(sorted(allowed))} (not {value!r})")
        return value

    def texts(self, name: str, allowed: frozenset[str] | None = None) -> tuple[str, ...]:
        value = self.data.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a list of non-empty strings")
        if allowed is not None and not set(value) <= allowed:
            bad = ", ".join(sorted(set(value) - allowed))
            raise self.fail(name, f"names {bad}; use only {', '.join(sorted(allowed))}")
        return tuple(value)

    def sub(self, name: str, allowed: frozenset[str]) -> _Fields:
        found = _Fields(self.data.get(name) or {}, f"{self.where}.{name}")
        found.only(allowed)
        return found

    def items(self, name: str, allowed: frozenset[str]) -> list[_Fields]:
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        found = [_Fields(item, f"{self.where}.{name}[{i}]") for i, item in enumerate(value)]
        for item in found:
            item.only(allowed)
        return found


def _licences(items: list[Any]) -> list[Licence]:
    raw: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        entry = _Fields(item, f"licence catalog entry {index}")
        licence_id = entry.text("id")
        if not _ID.fullmatch(licence_id):
            raise entry.fail("id", "must be lower-case letters, digits and . + _ -")
        if licence_id in raw:
            raise InvalidInputError(f"licence catalog repeats the id {licence_id!r}")
        entry.where = f"licence catalog entry {licence_id!r}"
        entry.only(_ENTRY_KEYS)
        raw[licence_id] = entry.data
    licences = [_licence(_inherit(key, raw, ()), key) for key in raw]
    _check_references(licences)
    for licence in licences:
        _check_sources(licence)
    return licences


def _inherit(key: str, raw: dict[str, dict[str, Any]], chain: tuple[str, ...]) -> dict[str, Any]:
    """The entry with the facts of `inherits_from` that it does not set itself."""
    entry = raw[key]
    parent_id = entry.get("inherits_from")
    if parent_id is None:
        return entry
    if not isinstance(parent_id, str) or parent_id not in raw or parent_id in (*chain, key):
        raise InvalidInputError(
            f"licence catalog entry {key!r}: inherits_from names an unknown licence or a "
            f"cycle ({parent_id!r})"
        )
    parent = _inherit(parent_id, raw, (*chain, key))
    merged = {k: v for k, v in parent.items() if k not in _OWN_ONLY}
    sources = parent.get("sources")
    # a fact set here must be sourced here, and the text read is always this entry's own
    inherited = {
        k: v
        for k, v in (sources if isinstance(sources, dict) else {}).items()
        if k not in entry and k != "text"
    }
    own = entry.get("sources")
    merged.update({k: v for k, v in entry.items() if k != "sources"})
    merged["sources"] = {**inherited, **own} if isinstance(own, dict) else own
    return merged


def _licence(data: dict[str, Any], key: str) -> Licence:
    entry = _Fields(data, f"licence catalog entry {key!r}")
    commercial = entry.sub("commercial", _keys(Commercial))
    attribution = entry.sub("attribution", _keys(Attribution))
    naming = entry.sub("naming", _keys(Naming))
    share = entry.sub("share_alike", _keys(ShareAlike))
    policy = None
    if entry.data.get("use_policy") is not None:
        found = entry.sub("use_policy", _keys(UsePolicy))
        policy = UsePolicy(found.text("name"), found.flag("flows_down"), found.optional_text("url"))
    any_of = attribution.texts("display_strings_any_of")
    if len(any_of) == 1:
        raise attribution.fail("display_strings_any_of", "needs two or more strings (or none)")
    prefix = naming.optional_text("prefix")
    naming_relations = naming.texts("relations", HUB_RELATIONS)
    if bool(prefix) != bool(naming_relations):
        raise naming.fail("relations", "must list the relations that trigger the prefix")
    applies = entry.texts("applies_to", APPLIES_TO) or ("model",)
    return Licence(
        id=key,
        name=entry.text("name"),
        version=entry.text("version"),
        hf_ids=_identifiers(entry, "hf_ids"),
        license_names=_identifiers(entry, "license_names"),
        spdx=entry.optional_text("spdx"),
        applies_to=applies,
        family=entry.choice("family", FAMILIES),
        osi_approved=entry.flag("osi_approved"),
        commercial=Commercial(commercial.flag("allowed"), commercial.optional_text("conditions")),
        thresholds=tuple(_threshold(t) for t in entry.items("thresholds", _keys(Threshold))),
        territory=tuple(
            Territory(t.text("scope"), t.text("excluded"), t.optional_text("exception"))
            for t in entry.items("territory", _keys(Territory))
        ),
        attribution=Attribution(
            licence_copy=attribution.flag("licence_copy"),
            retain_notices=attribution.flag("retain_notices"),
            modification_notices=attribution.flag("modification_notices"),
            notice_lines=attribution.texts("notice_lines"),
            display_strings=attribution.texts("display_strings"),
            display_strings_any_of=any_of,
        ),
        naming=Naming(prefix, naming_relations),
        use_policy=policy,
        flow_down=entry.choice("flow_down", FLOW_DOWN),
        share_alike=ShareAlike(share.flag("required"), share.texts("compatible")),
        outputs_for_training=entry.choice("outputs_for_training", OUTPUT_RULES),
        gated_acceptance=entry.flag("gated_acceptance"),
        confidence=entry.choice("confidence", CONFIDENCE),
        sources=_source_map(entry),
        checked=entry.optional_text("checked"),
    )


def _identifiers(entry: _Fields, name: str) -> tuple[str, ...]:
    values = entry.texts(name)
    for value in values:
        if not _IDENTIFIER.fullmatch(value):
            raise entry.fail(name, f"holds {value!r}, which is not a licence identifier")
    return values


def _threshold(entry: _Fields) -> Threshold:
    value = entry.data.get("value")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise entry.fail("value", "must be a non-negative integer")
    operator = entry.choice("operator", OPERATORS)
    clause = entry.optional_text("clause")
    return Threshold(entry.text("metric"), operator, value, entry.text("effect"), clause)


def _source_map(entry: _Fields) -> dict[str, str]:
    value = entry.data.get("sources")
    if not isinstance(value, dict) or not value:
        raise entry.fail("sources", "must map each fact to where it was read")
    for key, where in value.items():
        if key != "text" and key not in FACTS:
            raise entry.fail(f"sources.{key}", "names no fact of the catalog")
        if not isinstance(where, str) or not where.strip():
            raise entry.fail(f"sources.{key}", "must be a non-empty string")
    if "text" not in value:
        raise entry.fail("sources", "must say where the licence text was read ('text')")
    return dict(value)


def _check_sources(licence: Licence) -> None:
    """Every fact the entry asserts has its own source (the licence text alone is not one)."""
    asserted = {
        "commercial": True,
        "flow_down": True,
        "outputs_for_training": True,
        "thresholds": bool(licence.thresholds),
        "territory": bool(licence.territory),
        "attribution": licence.attribution != Attribution(),
        "naming": licence.naming.prefix is not None,
        "use_policy": licence.use_policy is not None,
        "share_alike": licence.share_alike.required,
        "gated_acceptance": licence.gated_acceptance,
        "osi_approved": licence.osi_approved,
    }
    missing = [fact for fact, said in asserted.items() if said and fact not in licence.sources]
    if missing:
        raise InvalidInputError(
            f"licence catalog entry {licence.id!r}: sources give no source for {', '.join(missing)}"
        )


def _check_references(licences: list[Licence]) -> None:
    """Identifiers are unique and not reserved; share-alike names known, consistent licences."""
    owner: dict[str, str] = {}
    for licence in licences:
        where = f"licence catalog entry {licence.id!r}"
        if not licence.hf_ids and not licence.license_names:
            raise InvalidInputError(f"{where}: hf_ids or license_names must name an identifier")
        for name in (*licence.hf_ids, *licence.license_names):
            key = name.lower()
            if key in RESERVED_HF_IDS:
                raise InvalidInputError(f"{where}: {name!r} is reserved for the hub itself")
            if key in owner:
                raise InvalidInputError(f"{where}: {name!r} already maps to {owner[key]!r}")
            owner[key] = licence.id
    _check_share_alike(licences)


def _check_share_alike(licences: list[Licence]) -> None:
    ids = {licence.id for licence in licences}
    for licence in licences:
        where, share = f"licence catalog entry {licence.id!r}", licence.share_alike
        unknown = [other for other in share.compatible if other not in ids]
        if unknown:
            raise InvalidInputError(f"{where}: share_alike.compatible names unknown {unknown[0]!r}")
        if share.required != (licence.flow_down == "same_license"):
            raise InvalidInputError(
                f"{where}: share_alike.required must be true exactly when flow_down is same_license"
            )
        if share.compatible and not share.required:
            raise InvalidInputError(f"{where}: share_alike.compatible needs required: true")


def _relations(data: object) -> dict[str, Relation]:
    if not isinstance(data, dict):
        raise InvalidInputError("licence catalog 'relations' must be a mapping")
    rules: dict[str, Relation] = {}
    for name, body in data.items():
        rule = _Fields(body, f"licence catalog relation {name!r}")
        rule.only(_keys(Relation) - {"name"})
        teacher = rule.sub("teacher_rules", OUTPUT_RULES)
        taught = tuple((k, teacher.text(k)) for k in sorted(teacher.data))
        if taught and len(taught) != len(OUTPUT_RULES):
            raise rule.fail(
                "teacher_rules", "must give a rule for every outputs_for_training value"
            )
        rules[str(name)] = Relation(
            name=str(name),
            maps_from=rule.texts("maps_from"),
            contains_parent_weights=rule.flag("contains_parent_weights"),
            propagates=rule.texts("propagates", PROPAGATES),
            declared_licence_rule=rule.text("declared_licence_rule"),
            conflicts=rule.texts("conflicts"),
            teacher_rules=taught,
            note=rule.optional_text("note"),
            source=rule.text("source"),
        )
    missing = sorted(HUB_RELATIONS - set(rules))
    if missing:
        raise InvalidInputError(f"licence catalog 'relations' lacks {', '.join(missing)}")
    return rules
