"""The licence catalog: the packaged data loads, holds the facts the checks rely on, each with a
source, maps Hugging Face identifiers onto entries, and garbage catalogs are refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kaiyuan.core.errors import InvalidInputError, NotFoundError
from kaiyuan.core.lineage import Relation as RelationKind
from kaiyuan.services.licensing.catalog import (
    FACTS,
    OUTPUT_RULES,
    Licence,
    load_catalog,
    parse_catalog,
)

CATALOG = load_catalog()


# The `license:` identifiers of huggingface/hub-docs docs/hub/repositories-licenses.md @242f4a1
# (2026-08). Catalog `hf_ids` must come from this list; everything else is a `license_name`.
def words(text: str) -> list[str]:
    return text.split()


HUB_LICENCE_IDS = frozenset(
    words(
        """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear
    c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0
    cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0
    cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl
    ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
    lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0
    odc-by odbl openmdw-1.0 openmdw-1.1 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib
    pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1
    llama3.2 llama3.3 llama4 grok2-community gemma unknown other"""
    )
)


def lic(hf_id: str) -> Licence:
    found = CATALOG.for_hf_id(hf_id)
    assert found is not None, hf_id
    return found


# --- the packaged catalog ---------------------------------------------------------------------
def test_the_packaged_catalog_loads_with_model_and_data_licences() -> None:
    licences = CATALOG.licences()
    assert CATALOG.version
    assert len(licences) >= 30
    assert sum("model" in entry.applies_to for entry in licences) >= 25
    assert sum("data" in entry.applies_to for entry in licences) >= 12
    assert len({entry.id for entry in licences}) == len(licences)


def test_every_fact_has_a_source_and_every_entry_says_what_was_checked() -> None:
    for entry in CATALOG.licences():
        assert entry.sources["text"].strip(), entry.id
        assert set(entry.sources) <= FACTS | {"text"}, entry.id
        for fact in ("commercial", "flow_down", "outputs_for_training"):
            assert entry.sources[fact].strip(), (entry.id, fact)
        if entry.thresholds:
            assert "thresholds" in entry.sources, entry.id
        if entry.territory:
            assert "territory" in entry.sources, entry.id
        if entry.naming.prefix:
            assert "naming" in entry.sources, entry.id
        if entry.attribution.notice_lines or entry.attribution.display_strings_any_of:
            assert "attribution" in entry.sources, entry.id
        if entry.use_policy is not None:
            assert "use_policy" in entry.sources, entry.id
        if entry.share_alike.required:
            assert "share_alike" in entry.sources, entry.id
        if entry.gated_acceptance:
            assert "gated_acceptance" in entry.sources, entry.id
        assert entry.checked, entry.id


def test_hf_ids_come_from_the_hub_list_and_other_licences_use_license_names() -> None:
    for entry in CATALOG.licences():
        assert set(entry.hf_ids) <= HUB_LICENCE_IDS, entry.id
        assert not {name.lower() for name in entry.license_names} & HUB_LICENCE_IDS, entry.id
    for hf_id in words(
        "cc0-1.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-4.0 cc-by-nc-sa-4.0 cc-by-nd-4.0 "
        "cc-by-nc-nd-4.0 odc-by odbl pddl cdla-permissive-2.0 cdla-sharing-1.0 apache-2.0 mit "
        "bsd-2-clause bsd-3-clause gpl-3.0 agpl-3.0 openrail openrail++ bigscience-openrail-m "
        "bigcode-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 llama2 llama3 llama3.1 "
        "llama3.2 llama3.3 llama4 gemma"
    ):
        assert CATALOG.for_hf_id(hf_id) is not None, hf_id


def test_the_low_confidence_research_entries_were_rechecked() -> None:
    for licence_id in ("mnpl", "chatglm3", "aquila", "falcon-llm-1.0", "falcon-2-11b"):
        entry = CATALOG.get(licence_id)
        assert entry.checked and "2026-11" in entry.checked, licence_id
    assert CATALOG.get("chatglm3").confidence == "high"  # MODEL_LICENSE read
    assert CATALOG.get("aquila").confidence == "high"  # agreement PDF read
    assert not CATALOG.get("aquila2-70b").commercial.allowed
    assert CATALOG.get("tongyi-qianwen").outputs_for_training == "prohibited_for_non_family"


# --- facts the compliance engine relies on ----------------------------------------------------
@pytest.mark.parametrize(
    ("hf_id", "prefix", "display", "commercial", "flow"),
    [
        ("llama2", None, (), True, "parent_terms_persist"),
        ("llama3", "Llama 3", ("Built with Meta Llama 3",), True, "parent_terms_persist"),
        ("llama3.1", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("llama3.2", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("llama3.3", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("llama4", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("glm-4", "glm-4", ("Built with glm-4",), True, "parent_terms_persist"),
        ("gemma", None, (), True, "use_restrictions"),
        ("bigscience-openrail-m", None, (), True, "use_restrictions"),
        ("openrail", None, (), True, "use_restrictions"),
        ("cc-by-nc-4.0", None, (), False, "notices_only"),
        ("cc-by-sa-4.0", None, (), True, "same_license"),
        ("cc-by-nd-4.0", None, (), True, "no_distribution"),
        ("apache-2.0", None, (), True, "notices_only"),
        ("mit", None, (), True, "notices_only"),
        ("cc0-1.0", None, (), True, "none"),
        ("mrl", None, (), False, "parent_terms_persist"),
    ],
)
def test_facts_the_checks_rely_on(
    hf_id: str, prefix: str | None, display: tuple[str, ...], commercial: bool, flow: str
) -> None:
    entry = lic(hf_id)
    assert entry.naming.prefix == entry.naming_prefix == prefix
    assert entry.attribution.display_strings == display
    assert entry.commercial.allowed is commercial
    assert entry.flow_down == flow


def test_llama_details() -> None:
    llama31 = lic("llama3.1")
    assert llama31.attribution.notice_lines == (
        "Llama 3.1 is licensed under the Llama 3.1 Community License",
    )
    assert [t.value for t in llama31.thresholds] == [700_000_000]
    assert llama31.outputs_for_training == "allowed_with_attribution"
    assert llama31.naming.applies_to("distillation")  # outputs trigger the prefix from 3.1 on
    assert not lic("llama3").naming.applies_to("distillation")
    assert not llama31.naming.applies_to("quantized")
    assert lic("llama3").outputs_for_training == "prohibited_for_non_family"
    assert [limit.scope for limit in lic("llama3.2").territory] == [
        "multimodal models of the release"
    ]
    assert lic("llama3.1").territory == ()
    assert lic("llama4").territory and lic("llama4").confidence == "high"
    assert all(lic(i).gated_acceptance for i in ("llama2", "llama3", "llama3.1", "llama4", "gemma"))


def test_qwen_asks_for_one_of_two_lines() -> None:
    qwen = lic("qwen")
    assert qwen.attribution.display_strings == ()
    assert qwen.attribution.display_strings_any_of == ("Built with Qwen", "Improved using Qwen")
    assert "100,000,000" in qwen.thresholds[0].describe()
    assert not lic("qwen-research").commercial.allowed
    assert lic("qwen-research").thresholds == ()


def test_share_alike_and_permissive_families() -> None:
    sa4 = lic("cc-by-sa-4.0")
    assert sa4.share_alike.required and sa4.share_alike.compatible == ("gpl-3.0",)
    assert lic("cc-by-sa-3.0").share_alike.compatible == ("cc-by-sa-4.0",)
    assert (
        lic("cc-by-nc-sa-4.0").share_alike.required
        and not lic("cc-by-nc-sa-4.0").commercial.allowed
    )
    assert lic("odbl").share_alike.required and lic("cdla-sharing-1.0").share_alike.required
    for hf_id in ("apache-2.0", "mit", "bsd-3-clause"):
        entry = lic(hf_id)
        assert entry.family == "permissive" and entry.osi_approved and entry.spdx
        assert entry.flow_down in {"none", "notices_only"}
        assert not entry.share_alike.required and entry.outputs_for_training == "unrestricted"
    assert lic("gemma").use_policy is not None and lic("gemma").use_policy.flows_down
    assert lic("openrail++").outputs_for_training == "derivative_flow_down"


def test_licences_are_frozen_and_hashable() -> None:
    entry = lic("mit")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "changed"  # type: ignore[misc]
    assert len({entry, lic("mit"), lic("apache-2.0")}) == 2
    assert dataclasses.asdict(entry)["sources"]["text"]


# --- lookups ----------------------------------------------------------------------------------
def test_lookups_by_hf_id_license_name_and_id() -> None:
    assert (
        CATALOG.for_hf_id("LLAMA3.1") is CATALOG.for_hf_id(" llama3.1 ") is CATALOG.get("llama3.1")
    )
    assert CATALOG.for_hf_id("Apache-2.0") is CATALOG.find("apache-2.0")
    assert CATALOG.for_hf_id("no-such-licence") is None
    assert CATALOG.for_hf_id("other") is None and CATALOG.for_hf_id("unknown") is None
    assert CATALOG.for_hf_id("qwen") is CATALOG.get("qwen")  # a license_name slug also maps
    assert CATALOG.for_license_name("Deepseek-License") is CATALOG.get("deepseek")
    assert CATALOG.for_license_name("yi-license-2.1") is CATALOG.get("yi-license-2.1")
    assert CATALOG.resolve("other", "mrl") is CATALOG.get("mrl")
    assert CATALOG.resolve("other", None) is None
    assert CATALOG.resolve("unknown") is None and CATALOG.resolve(None) is None
    assert CATALOG.resolve("llama3.3") is CATALOG.get("llama3.3")
    assert CATALOG.find("no-such-licence") is None
    with pytest.raises(NotFoundError, match="no-such-licence"):
        CATALOG.get("no-such-licence")


def test_relations_cover_every_hub_relation() -> None:
    names = {rule.name for rule in CATALOG.relations()}
    assert {kind.value for kind in RelationKind} <= names
    for copy in ("quantized", "format-conversion"):
        rule = CATALOG.relation(copy)
        assert rule.contains_parent_weights and rule.carries("licence_files")
        assert rule.carries("gating")
    for like_finetune in ("finetune", "continued-pretraining", "pruned", "upcycled", "merge"):
        rule = CATALOG.relation(like_finetune)
        assert rule.contains_parent_weights and rule.carries("naming"), like_finetune
    assert not CATALOG.relation("adapter").contains_parent_weights
    assert CATALOG.relation("adapter").carries("commercial")
    distillation = CATALOG.relation(RelationKind.DISTILLATION)
    assert not distillation.contains_parent_weights
    assert all(distillation.teacher_rule(rule) for rule in OUTPUT_RULES)
    assert distillation.maps_from == ("distill_outputs", "distill_logits")
    assert "two_different_mandatory_name_prefixes" in CATALOG.relation("merge").conflicts
    with pytest.raises(NotFoundError):
        CATALOG.relation("telepathy")


# --- garbage is refused, naming the problem -------------------------------------------------------
def entry(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "house",
        "name": "House Licence",
        "version": "1",
        "hf_ids": ["house-licence"],
        "family": "permissive",
        "commercial": {"allowed": True},
        "flow_down": "notices_only",
        "outputs_for_training": "unrestricted",
        "confidence": "high",
        "sources": {
            "text": "LICENSE",
            "commercial": "s.1",
            "flow_down": "s.2",
            "outputs_for_training": "s.3",
        },
    }
    base.update(changes)
    return base


def catalog(*entries: object, **top: object) -> bytes:
    return yaml.safe_dump({"version": "test-1", **top, "licences": list(entries)}).encode()


def load_relation_body(name: str) -> dict[str, object]:
    rule = CATALOG.relation(name)
    return {
        "maps_from": list(rule.maps_from),
        "contains_parent_weights": rule.contains_parent_weights,
        "propagates": list(rule.propagates),
        "declared_licence_rule": rule.declared_licence_rule,
        "source": rule.source,
    }


def test_a_minimal_catalog_loads_with_the_packaged_relations() -> None:
    loaded = parse_catalog(catalog(entry()))
    assert loaded.version == "test-1"
    assert loaded.get("house").applies_to == ("model",)
    assert loaded.relation("quantized").contains_parent_weights


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[1, 2]", "must be a mapping"),
        (b"just text", "must be a mapping"),
        (b"\xff\xfe", "not valid YAML"),
        (b"version: 1\nlicences: [", "not valid YAML"),
        (b"licences: []", "version"),
        (catalog(entry(), version="x" * 40), "version"),
        (yaml.safe_dump({"version": "1", "licences": {"a": 1}}).encode(), "'licences' list"),
        (catalog(entry(), colour="blue"), "unknown top-level keys: colour"),
        (catalog("not a mapping"), "entry 0 must be a mapping"),
        (catalog(entry(), entry()), "repeats the id 'house'"),
        (catalog(entry(), entry(id="other-house")), "'house-licence' already maps to 'house'"),
        (catalog(entry(id="Bad Id")), "id must be"),
        (catalog(entry(flow_down="sideways")), "flow_down must be one of"),
        (catalog(entry(family="exotic")), "family must be one of"),
        (catalog(entry(outputs_for_training="maybe")), "outputs_for_training must be one of"),
        (catalog(entry(confidence="certain")), "confidence must be one of"),
        (catalog(entry(flowdown="none")), "'house': flowdown is not a field"),
        (
            catalog(entry(commercial={"allowed": "yes"})),
            "commercial: allowed must be true or false",
        ),
        (catalog(entry(hf_ids=[], license_names=[])), "hf_ids or license_names"),
        (catalog(entry(hf_ids=["other"])), "'other' is reserved"),
        (catalog(entry(hf_ids=["has space"])), "not a licence identifier"),
        (catalog(entry(applies_to=["weights"])), "applies_to names weights"),
        (catalog(entry(sources={})), "sources must map each fact"),
        (catalog(entry(sources={"commercial": "s.1"})), "where the licence text was read"),
        (catalog(entry(sources={"text": "LICENSE"})), "no source for commercial, flow_down"),
        (
            catalog(entry(sources={**entry()["sources"], "mood": "x"})),  # type: ignore[dict-item]
            "sources.mood names no fact",
        ),
        (
            catalog(
                entry(thresholds=[{"metric": "m", "operator": ">", "value": 1, "effect": "e"}])
            ),
            "no source for thresholds",
        ),
        (
            catalog(
                entry(thresholds=[{"metric": "m", "operator": ">", "value": -1, "effect": "e"}])
            ),
            "value must be a non-negative integer",
        ),
        (
            catalog(
                entry(thresholds=[{"metric": "m", "operator": "~", "value": 1, "effect": "e"}])
            ),
            "operator must be one of",
        ),
        (catalog(entry(naming={"prefix": "House"})), "naming: relations must list"),
        (
            catalog(entry(naming={"prefix": "House", "relations": ["telepathy"]})),
            "relations names telepathy",
        ),
        (
            catalog(entry(attribution={"display_strings_any_of": ["Built with House"]})),
            "needs two or more",
        ),
        (
            catalog(entry(flow_down="same_license", share_alike={"required": True})),
            "no source for share_alike",
        ),
        (catalog(entry(flow_down="same_license")), "share_alike.required must be true"),
        (
            catalog(entry(share_alike={"required": True, "compatible": ["nope"]})),
            "share_alike.compatible names unknown 'nope'",
        ),
        (catalog(entry(inherits_from="nowhere")), "inherits_from names an unknown licence"),
        (
            catalog(entry(inherits_from="b"), entry(id="b", hf_ids=["b"], inherits_from="house")),
            "cycle",
        ),
        (catalog(entry(), relations={"finetune": {}}), "relation 'finetune'"),
        (
            catalog(entry(), relations={"quantized": load_relation_body("quantized")}),
            "'relations' lacks",
        ),
    ],
)
def test_garbage_catalogs_are_refused_naming_the_problem(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        parse_catalog(raw)


def test_inheritance_fills_in_facts_and_a_changed_fact_needs_its_own_source() -> None:
    child = {
        "id": "child",
        "name": "Child Licence",
        "version": "2",
        "hf_ids": ["child"],
        "inherits_from": "house",
        "confidence": "medium",
        "sources": {"text": "C"},
    }
    loaded = parse_catalog(catalog(entry(), child))
    assert loaded.get("child").flow_down == "notices_only"
    assert loaded.get("child").confidence == "medium"  # never inherited
    assert loaded.get("child").sources == {**entry()["sources"], "text": "C"}  # type: ignore[dict-item]
    changed = {**child, "flow_down": "use_restrictions"}
    with pytest.raises(InvalidInputError, match="'child': sources give no source for flow_down"):
        parse_catalog(catalog(entry(), changed))


# --- an operator's catalog ----------------------------------------------------------------------
def test_an_operator_catalog_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(catalog(entry()))
    assert load_catalog(path).for_hf_id("HOUSE-LICENCE") is not None
    assert load_catalog(path).for_hf_id("mit") is None  # a whole catalog replaces the packaged one
    with pytest.raises(InvalidInputError, match="cannot be read"):
        load_catalog(tmp_path / "missing.yaml")


def test_an_operator_catalog_can_extend_the_packaged_one(tmp_path: Path) -> None:
    stricter_mit = entry(
        id="mit", name="MIT as this hub reads it", hf_ids=["mit"], spdx="MIT", confidence="medium"
    )
    path = tmp_path / "extends.yaml"
    path.write_bytes(catalog(entry(), stricter_mit, extends="packaged"))
    extended = load_catalog(path)
    assert extended.version == "test-1"
    assert extended.get("house").hf_ids == ("house-licence",)
    assert extended.get("mit").name == "MIT as this hub reads it"
    assert extended.get("llama3.1") == CATALOG.get("llama3.1")
    assert len(extended.licences()) == len(CATALOG.licences()) + 1
    with pytest.raises(InvalidInputError, match="extends must be 'packaged'"):
        parse_catalog(catalog(entry(), extends="elsewhere"))
