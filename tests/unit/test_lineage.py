"""Lineage from cards: parents, relations (declared, aliased, inferred) and what is refused."""

from __future__ import annotations

import pytest

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId
from kaiyuan.core.lineage import Relation, validate_check_id
from kaiyuan.services.lineage import declaration

REPO = RepoId("acme", "chat-model")


@pytest.mark.parametrize(
    ("value", "relation"),
    [
        ("finetune", Relation.FINETUNE),
        ("fine-tune", Relation.FINETUNE),
        ("Fine_Tuned", Relation.FINETUNE),
        ("adapter", Relation.ADAPTER),
        ("lora", Relation.ADAPTER),
        ("quantized", Relation.QUANTIZED),
        ("quantised", Relation.QUANTIZED),
        ("merge", Relation.MERGE),
        ("distillation", Relation.DISTILLATION),
        ("distilled", Relation.DISTILLATION),
        ("continued-pretraining", Relation.CONTINUED_PRETRAINING),
        ("continued_pretrain", Relation.CONTINUED_PRETRAINING),
        ("pruned", Relation.PRUNED),
        ("upcycled", Relation.UPCYCLED),
        ("format-conversion", Relation.FORMAT_CONVERSION),
        ("converted", Relation.FORMAT_CONVERSION),
    ],
)
def test_relations_and_their_spellings(value: str, relation: Relation) -> None:
    assert Relation.parse(value) is relation


@pytest.mark.parametrize("value", ["", "cousin", "fine tune please", "x" * 500, "\x00"])
def test_unknown_relations_are_refused_with_the_list(value: str) -> None:
    with pytest.raises(InvalidInputError, match="finetune, adapter"):
        Relation.parse(value)


def test_copies_are_quantized_and_converted_only() -> None:
    assert {r for r in Relation if r.copies_parent} == {
        Relation.QUANTIZED,
        Relation.FORMAT_CONVERSION,
    }


def test_a_card_without_base_model_declares_nothing() -> None:
    found = declaration({"license": "mit"}, REPO, ["README.md"])
    assert found.parents == () and found.relation is None and found.problems == ()


def test_declared_relation_wins_over_inference() -> None:
    found = declaration(
        {"base_model": "acme/base", "base_model_relation": "distillation"},
        REPO,
        ["adapter_config.json"],
    )
    assert found.parents == ("acme/base",)
    assert found.relation is Relation.DISTILLATION and found.relation_declared


@pytest.mark.parametrize(
    ("card", "name", "paths", "relation"),
    [
        ({"base_model": ["a/x", "b/y"]}, "merged", ["model.safetensors"], Relation.MERGE),
        ({"base_model": "a/x"}, "lora", ["adapter_config.json"], Relation.ADAPTER),
        ({"base_model": "a/x"}, "m", ["sub/adapter_config.json"], Relation.ADAPTER),
        ({"base_model": "a/x"}, "m", ["model-Q4_K_M.gguf"], Relation.QUANTIZED),
        ({"base_model": "a/x"}, "Model-AWQ", ["model.safetensors"], Relation.QUANTIZED),
        ({"base_model": "a/x"}, "model-4bit", ["model.safetensors"], Relation.QUANTIZED),
        ({"base_model": "a/x"}, "chat", ["model.safetensors"], Relation.FINETUNE),
    ],
)
def test_relation_is_inferred_as_the_hf_hub_does(
    card: dict[str, object], name: str, paths: list[str], relation: Relation
) -> None:
    found = declaration(card, RepoId("acme", name), paths)
    assert found.relation is relation and not found.relation_declared


def test_problems_are_reported_not_raised() -> None:
    found = declaration({"base_model": "a/x", "base_model_relation": "cousin"}, REPO, [])
    assert found.relation is Relation.FINETUNE  # inferred in its place
    assert len(found.problems) == 1 and "cousin" in found.problems[0]
    odd = declaration({"base_model": "a/x", "base_model_relation": 3}, REPO, [])
    assert odd.problems == ("base_model_relation must be a string",)


def test_parents_are_deduplicated_and_bounded() -> None:
    found = declaration({"base_model": ["a/x", "a/x", " b/y ", ""]}, REPO, [])
    assert found.parents == ("a/x", "b/y")
    many = declaration({"base_model": [f"a/m{i}" for i in range(40)]}, REPO, [])
    assert len(many.parents) == 32 and "more than 32" in many.problems[0]


def test_check_ids() -> None:
    assert validate_check_id("lic-006") == "LIC-006"
    for bad in ("LIC-000", "LIC-016", "LIC-6", "", "LIC-0061"):
        with pytest.raises(InvalidInputError):
            validate_check_id(bad)
