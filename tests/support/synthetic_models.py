"""Small synthetic llama-shaped models for fast provenance tests (random weights, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from kaiyuan.services.provenance.sketch import CANONICAL_TOKENS

WIDTH, LAYERS, HEADS, KV_HEADS, FFN = 64, 4, 4, 2, 96
HEAD_DIM = WIDTH // HEADS
Weights = dict[str, np.ndarray]


def tokens(count: int = 1500) -> list[str]:
    canonical = [("Ġ" + t[1:]) if t.startswith(" ") else t for t in CANONICAL_TOKENS]
    return [*canonical, *(f"Ġw{i}" for i in range(count - len(canonical)))]


def parent(seed: int = 0) -> Weights:
    """A llama-shaped model with random weights (a stand-in parent for fast checks)."""
    rng = np.random.default_rng(seed)
    vocab = len(tokens())

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.05, shape).astype(np.float32)

    weights: Weights = {"model.embed_tokens.weight": normal(vocab, WIDTH)}
    for i in range(LAYERS):
        prefix = f"model.layers.{i}."
        weights |= {
            prefix + "self_attn.q_proj.weight": normal(HEADS * HEAD_DIM, WIDTH),
            prefix + "self_attn.k_proj.weight": normal(KV_HEADS * HEAD_DIM, WIDTH),
            prefix + "self_attn.v_proj.weight": normal(KV_HEADS * HEAD_DIM, WIDTH),
            prefix + "self_attn.o_proj.weight": normal(WIDTH, HEADS * HEAD_DIM),
            prefix + "mlp.gate_proj.weight": normal(FFN, WIDTH),
            prefix + "mlp.up_proj.weight": normal(FFN, WIDTH),
            prefix + "mlp.down_proj.weight": normal(WIDTH, FFN),
            prefix + "input_layernorm.weight": (1 + rng.normal(0, 0.1, WIDTH)).astype(np.float32),
        }
    return weights


def write(folder: Path, weights: Weights, vocabulary: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model.safetensors"))
    config = {
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_size": WIDTH,
    }
    (folder / "config.json").write_text(json.dumps(config))
    vocab = {t: i for i, t in enumerate(vocabulary or tokens())}
    (folder / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": []}})
    )
    return folder


def residual_permutation(weights: Weights, order: np.ndarray) -> Weights:
    """Permute the residual stream: readers' columns, writers' rows, embedding, norms."""
    out: Weights = {}
    for name, value in weights.items():
        if name.endswith(
            (
                "embed_tokens.weight",
                "q_proj.weight",
                "k_proj.weight",
                "v_proj.weight",
                "gate_proj.weight",
                "up_proj.weight",
            )
        ):
            out[name] = value[:, order]
        elif name.endswith(("o_proj.weight", "down_proj.weight", "layernorm.weight")):
            out[name] = value[order]
        else:
            out[name] = value
    return {k: np.ascontiguousarray(v) for k, v in out.items()}
