"""The provenance engine on small synthetic transformers: readers, layout, CKA, comparison.

Fast checks of each part's contract; the real-model suite (real weights, real training) is
`tests/integration/test_provenance_suite.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance import cka
from kaiyuan.services.provenance.compare import Relation, compare
from kaiyuan.services.provenance.fingerprint import fingerprint
from kaiyuan.services.provenance.layout import Role
from kaiyuan.services.provenance.model import choose_files, open_local
from kaiyuan.services.provenance.safetensorsfile import read_index, read_safetensors
from kaiyuan.services.provenance.sketch import Sketch, similarity
from kaiyuan.services.provenance.source import LocalWeightFile, RangedWeightFile
from kaiyuan.services.provenance.vocab import (
    from_tokenizer_json,
    from_tokens,
    from_vocab_txt,
    normalise,
)
from tests.support.synthetic_models import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    LAYERS,
    WIDTH,
    parent,
    residual_permutation,
    tokens,
    write,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    base = parent()
    rng = np.random.default_rng(1)
    order = rng.permutation(WIDTH)
    noisy = {
        k: v + rng.normal(0, 0.3 * v.std(), v.shape).astype(np.float32) for k, v in base.items()
    }
    pruned = {k: v for k, v in base.items() if ".layers.1." not in k and ".layers.3." not in k}
    pruned = {k.replace(".layers.2.", ".layers.1."): v for k, v in pruned.items()}
    extended_tokens = tokens()
    extra = [f"Ġnew{i}" for i in range(300)]
    shuffle = rng.permutation(len(extended_tokens) + len(extra))
    embedding = np.concatenate(
        [base["model.embed_tokens.weight"], rng.normal(0, 0.05, (300, WIDTH)).astype(np.float32)]
    )
    extended = {**base, "model.embed_tokens.weight": embedding[shuffle]}
    extended_vocab = [[*extended_tokens, *extra][i] for i in shuffle]
    return {
        "base": write(root / "base", base),
        "permuted": write(root / "permuted", residual_permutation(base, order)),
        "noisy": write(root / "noisy", noisy),
        "pruned": write(root / "pruned", pruned),
        "extended": write(root / "extended", extended, extended_vocab),
        "independent": write(root / "independent", parent(seed=42)),
    }


def test_layout_reads_llama_names_and_folds_the_input_norm(models: dict[str, Path]) -> None:
    layout = open_local(models["base"]).layout
    assert (layout.width, len(layout.layers), layout.heads, layout.kv_heads) == (
        WIDTH,
        LAYERS,
        HEADS,
        KV_HEADS,
    )
    assert set(layout.layers[0]) == set(Role)
    q = layout.layers[0][Role.Q].load()
    weights = read_safetensors(LocalWeightFile(models["base"] / "model.safetensors"))
    by_name = {t.name: t for t in weights.tensors}
    raw = by_name["model.layers.0.self_attn.q_proj.weight"].read_rows(0, HEADS * HEAD_DIM)
    gain = by_name["model.layers.0.input_layernorm.weight"].read_rows(0, WIDTH)
    np.testing.assert_allclose(q, raw * gain[None, :], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "relation"),
    [
        ("permuted", Relation.DERIVED),
        ("noisy", Relation.DERIVED),
        ("pruned", Relation.DERIVED),
        ("extended", Relation.DERIVED),
        ("independent", Relation.INDEPENDENT),
    ],
)
def test_compare_recognises_derivatives_and_independent_models(
    models: dict[str, Path], name: str, relation: Relation
) -> None:
    base = open_local(models["base"]).layout
    result = compare(open_local(models[name]).layout, base)
    assert result.relation is relation, result
    if relation is Relation.DERIVED:
        assert result.score > result.threshold
    else:
        assert result.score < result.threshold
    assert result.null_level < result.threshold


def test_layer_map_shows_removed_layers(models: dict[str, Path]) -> None:
    result = compare(open_local(models["pruned"]).layout, open_local(models["base"]).layout)
    assert [(m.layer, m.source) for m in result.layer_map] == [(0, 0), (1, 2)]
    assert result.absent_layers == (1, 3)


def test_near_copy_reports_the_noise_level(models: dict[str, Path]) -> None:
    result = compare(open_local(models["noisy"]).layout, open_local(models["base"]).layout)
    assert result.near_copy is not None
    # the norm gain folds into Q, so the relative difference includes the gain's noise too
    assert 0.25 < result.near_copy.relative_noise < 0.5


def test_unbiased_cka_is_zero_for_unrelated_and_one_under_orthogonal_maps() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 400)).astype(np.float32)
    y = rng.normal(size=(200, 600)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(400, 400)))
    unrelated = cka.grid(cka.u_centred_unit(x)[None], cka.u_centred_unit(y)[None])[0, 0]
    rotated = cka.grid(cka.u_centred_unit(x)[None], cka.u_centred_unit(3.0 * x @ rotation)[None])[
        0, 0
    ]
    assert abs(unrelated) < 0.02  # the biased estimator gives about 0.4 here
    assert rotated == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="at least"):
        cka.u_centred_unit(x[:3])


def test_fingerprint_digests_match_tensor_bytes_whatever_the_read_pieces(
    models: dict[str, Path],
) -> None:
    opened = open_local(models["base"])
    whole = {d.name: d.digest for d in fingerprint(opened).tensors}
    path = models["base"] / "model.safetensors"
    data = path.read_bytes()

    def pieces(start: int, end: int) -> Iterator[bytes]:
        for offset in range(start, end, 7777):  # odd-sized pieces straddle tensor boundaries
            yield data[offset : min(end, offset + 7777)]

    ranged = RangedWeightFile("model.safetensors", len(data), pieces)
    parsed = read_safetensors(ranged)
    from kaiyuan.services.provenance.fingerprint import _digests

    assert {d.name: d.digest for d in _digests(parsed)} == whole
    permuted = {d.name: d.digest for d in fingerprint(open_local(models["pruned"])).tensors}
    assert (
        permuted["model.layers.0.self_attn.q_proj.weight"]
        == (whole["model.layers.0.self_attn.q_proj.weight"])
    )


def test_sketch_shortlists_relatives_and_round_trips(models: dict[str, Path]) -> None:
    def sketch_of(name: str) -> Sketch:
        raw = fingerprint(open_local(models[name])).sketch
        assert raw is not None
        return Sketch.from_bytes(raw)

    base = sketch_of("base")
    assert similarity(base, sketch_of("permuted")) == pytest.approx(1.0, abs=1e-3)
    assert similarity(base, sketch_of("extended")) == pytest.approx(1.0, abs=1e-3)
    assert abs(similarity(base, sketch_of("independent"))) < 0.1
    for garbage in (b"", b"PK\x03\x04junk", b"\x93NUMPY" + b"\x00" * 50):
        with pytest.raises(InvalidInputError):
            Sketch.from_bytes(garbage)


def test_tokens_normalise_across_tokenizer_families() -> None:
    assert normalise("Ġthe", "bpe-bytes") == " the"
    assert normalise("ĊĊ", "bpe-bytes") == "\n\n"
    assert normalise("▁the", "sentencepiece") == " the"
    assert normalise("the", "wordpiece") == " the"
    assert normalise("##ing", "wordpiece") == "ing"
    assert normalise("[CLS]", "wordpiece") == "[CLS]"
    bert = from_vocab_txt(b"[PAD]\nthe\n##ing\n")
    llama = from_tokens(["<s>", "▁the", "ing"], "llama")
    assert bert.ids[" the"] == 1 and llama.ids[" the"] == 1 and bert.ids["ing"] == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"model": 3}',
        b'{"model": {"vocab": 3}}',
        b'{"model": {"vocab": {"a": -1}}}',
        b'{"model": {"vocab": {"a": 99999999999}}}',
        b'{"model": {"vocab": {"a": true}}}',
        b'{"model": {"vocab": [[1, 2]]}}',
        b'{"model": {"vocab": {}}}',
        b"[" * 100_000,
    ],
)
def test_garbage_tokenizers_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInputError):
        from_tokenizer_json(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b'{"weight_map": {}}',
        b'{"weight_map": {"a": "../model.safetensors"}}',
        b'{"weight_map": {"a": "sub/model.safetensors"}}',
        b'{"weight_map": {"a": "model.bin"}}',
        b'{"weight_map": {"a": 3}}',
        b"not json",
    ],
)
def test_garbage_shard_indexes_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInputError):
        read_index(raw, "model.safetensors.index.json")


def test_bf16_rows_decode_exactly(tmp_path: Path) -> None:
    values = torch.randn(6, 5).to(torch.bfloat16)
    from safetensors.torch import save_file as save_torch

    save_torch({"w": values}, str(tmp_path / "m.safetensors"))
    tensor = read_safetensors(LocalWeightFile(tmp_path / "m.safetensors")).tensors[0]
    np.testing.assert_array_equal(tensor.read_rows(2, 5), values[2:5].float().numpy())
    with pytest.raises(InvalidInputError):
        tensor.read_rows(4, 9)


def test_choose_files_prefers_safetensors_and_never_pickles() -> None:
    assert choose_files({"pytorch_model.bin": 10, "README.md": 1}) is None
    chosen = choose_files(
        {
            "model.safetensors": 5,
            "q4.gguf": 3,
            "q8.gguf": 6,
            "onnx/model.onnx": 9,
            "config.json": 1,
            "tokenizer.json": 1,
        }
    )
    assert chosen is not None
    assert (chosen.format, chosen.weights, chosen.config) == (
        "safetensors",
        ("model.safetensors",),
        "config.json",
    )
    gguf = choose_files({"q4.gguf": 3, "q8.gguf": 6})
    assert gguf is not None and gguf.weights == ("q8.gguf",)  # the highest precision
    sharded = choose_files(
        {"model.safetensors.index.json": 1, "model-00001-of-00002.safetensors": 5}
    )
    assert sharded is not None and sharded.index == "model.safetensors.index.json"
