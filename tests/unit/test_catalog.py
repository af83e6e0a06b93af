"""The packaged licence catalog: it loads, holds what the checks rely on, and refuses garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.licensing.catalog import load_catalog, parse_catalog

CATALOG = load_catalog()


def test_the_packaged_catalog_holds_model_and_data_licences() -> None:
    licences = CATALOG.licences()
    assert len(licences) >= 30
    assert sum("data" in lic.applies_to for lic in licences) >= 10
    assert CATALOG.version
    for licence in licences:
        assert licence.sources["text"], licence.id
        if licence.confidence != "high":
            assert licence.checked or licence.sources["text"], licence.id


@pytest.mark.parametrize(
    ("hf_id", "prefix", "display", "commercial", "flow"),
    [
        ("llama3", "Llama 3", ("Built with Meta Llama 3",), True, "parent_terms_persist"),
        ("llama3.1", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("LLAMA3.3", "Llama", ("Built with Llama",), True, "parent_terms_persist"),
        ("glm-4", "glm-4", ("Built with glm-4",), True, "parent_terms_persist"),
        ("gemma", None, (), True, "use_restrictions"),
        ("bigscience-openrail-m", None, (), True, "use_restrictions"),
        ("cc-by-nc-4.0", None, (), False, "notices_only"),
        ("cc-by-sa-4.0", None, (), True, "same_license"),
        ("apache-2.0", None, (), True, "notices_only"),
        ("mit", None, (), True, "notices_only"),
        ("mrl", None, (), False, "parent_terms_persist"),
    ],
)
def test_facts_the_checks_rely_on(
    hf_id: str, prefix: str | None, display: tuple[str, ...], commercial: bool, flow: str
) -> None:
    licence = CATALOG.for_hf_id(hf_id)
    assert licence is not None
    assert licence.naming.prefix == prefix
    assert licence.attribution.display_strings == display
    assert licence.commercial.allowed is commercial
    assert licence.flow_down == flow


def test_qwen_asks_for_one_of_two_lines_and_a_threshold() -> None:
    qwen = CATALOG.for_hf_id("qwen")
    assert qwen is not None
    assert qwen.attribution.display_strings_any_of == ("Built with Qwen", "Improved using Qwen")
    assert [t.value for t in qwen.thresholds] == [100_000_000]
    assert "100,000,000" in qwen.thresholds[0].describe()


def test_share_alike_and_lookups() -> None:
    sa = CATALOG.for_hf_id("cc-by-sa-4.0")
    assert sa is not None and sa.share_alike.required and "gpl-3.0" in sa.share_alike.compatible
    assert CATALOG.for_hf_id("no-such-licence") is None
    assert CATALOG.find("llama3.1") is CATALOG.for_hf_id("llama3.1")
    assert CATALOG.relation("quantized") is not None
    assert CATALOG.relation("quantized").contains_parent_weights  # type: ignore[union-attr]


def _minimal(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": "x",
        "name": "X",
        "version": "1",
        "hf_ids": ["x"],
        "family": "permissive",
        "commercial": {"allowed": True},
        "flow_down": "notices_only",
        "outputs_for_training": "unrestricted",
        "confidence": "high",
        "sources": {"text": "somewhere"},
    }
    entry.update(changes)
    return entry


def _catalog(*entries: object, version: object = "1") -> bytes:
    return yaml.safe_dump({"version": version, "licences": list(entries)}).encode()


def test_a_minimal_catalog_loads() -> None:
    assert parse_catalog(_catalog(_minimal())).for_hf_id("X") is not None


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[1, 2]", "mapping"),
        (b"licences: []", "version"),
        (b"\xff\xfe", "not valid YAML"),
        (b"version: 1\nlicences: [", "not valid YAML"),
        (_catalog(_minimal(), _minimal()), "repeats the id"),
        (_catalog(_minimal(), _minimal(id="y")), "already maps"),
        (_catalog(_minimal(flow_down="sideways")), "flow_down must be one of"),
        (_catalog(_minimal(family="exotic")), "family must be one of"),
        (_catalog(_minimal(sources={})), "sources"),
        (_catalog(_minimal(hf_ids=[])), "hf_ids"),
        (_catalog(_minimal(commercial={"allowed": "yes"})), "allowed must be true or false"),
        (_catalog(_minimal(share_alike={"required": True, "compatible": ["nope"]})), "unknown"),
        (
            _catalog(
                _minimal(thresholds=[{"metric": "m", "operator": ">", "value": -1, "effect": "e"}])
            ),
            "value",
        ),
        (
            _catalog(
                _minimal(thresholds=[{"metric": "m", "operator": "~", "value": 1, "effect": "e"}])
            ),
            "operator",
        ),
        (_catalog("not a mapping"), "must be a mapping"),
    ],
)
def test_garbage_catalogs_are_refused_naming_the_problem(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        parse_catalog(raw)


def test_an_operator_catalog_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(_catalog(_minimal(id="house", hf_ids=["house-licence"])))
    assert load_catalog(path).for_hf_id("house-licence") is not None
    with pytest.raises(InvalidInputError, match="cannot be read"):
        load_catalog(tmp_path / "missing.yaml")
