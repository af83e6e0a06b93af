"""Derivatives of a :class:`Model`, built with numpy, deterministic by seed.

Every builder takes a Model and returns a new one; the input (and its arrays) is never modified.
Each docstring says which real-world derivation the builder stands for (see
``/work/shared/research/provenance.md`` section 2). The function-preserving ones
(:func:`permute_hidden`, :func:`scale_qk`, :func:`scale_vo`, :func:`fold_norms`,
:func:`rotate_residual`) really preserve the function: the small numpy forward passes below
(:func:`forward_bert`, :func:`forward_llama`, :func:`forward_gemma3`) are what the self-check uses
to confirm it, and they match transformers' ``BertModel`` / ``LlamaForCausalLM`` /
``Gemma3ForCausalLM`` on the real weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from tests.provenance_models.weights import Model, is_weight_matrix, layer_prefix

__all__ = [
    "add_noise",
    "combine",
    "drop_layers",
    "duplicate_layers",
    "extend_vocab",
    "fold_norms",
    "forward",
    "forward_bert",
    "forward_gemma3",
    "forward_llama",
    "merge",
    "permute_hidden",
    "prune",
    "prune_vocab",
    "quantize_roundtrip",
    "random_like",
    "rotate_residual",
    "scale_qk",
    "scale_vo",
    "shuffle_entries",
]

Step = Callable[[Model], Model]

# --- tensor roles per architecture ------------------------------------------------------------------
# For each layer: which tensors read the residual stream (input columns = hidden dims), which write
# it (output rows = hidden dims), which are hidden-sized vectors (norm gains, biases of writers).

_BERT_Q = "attention.self.query"
_BERT_K = "attention.self.key"
_BERT_V = "attention.self.value"
_BERT_O = "attention.output.dense"
_BERT_LN1 = "attention.output.LayerNorm"
_BERT_FFN_IN = "intermediate.dense"
_BERT_FFN_OUT = "output.dense"
_BERT_LN2 = "output.LayerNorm"


def _decoder_norms(model: Model) -> tuple[str, ...]:
    if model.arch == "gemma3":
        return (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        )
    return ("input_layernorm", "post_attention_layernorm")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


# --- noise, quantisation, pruning, merging, negatives -------------------------------------------------


def add_noise(m: Model, rel_sigma: float, seed: int) -> Model:
    """Gaussian noise with std ``rel_sigma`` x each tensor's std, on every tensor.

    Models a lazy copy disguised by noise: the Llama3-V case (MiniCPM-Llama3-V 2.5 weights plus
    noise of sigma ~ 1/708). At ``rel_sigma`` 0.01-0.05 it is also a crude stand-in for a fine-tune
    (dense small deltas); at >= 1 it is heavy continued training.
    """
    rng = _rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, array in m.tensors.items():
        noise = rng.standard_normal(array.shape, dtype=np.float32)
        noise *= np.float32(rel_sigma * float(array.std()))
        out[name] = array + noise
    return m.replace(tensors=out)


def quantize_roundtrip(m: Model, kind: str) -> Model:
    """Quantise and dequantise every 2-D matrix (embeddings included); norms and biases untouched.

    ``"int8"``: symmetric per-output-channel (bitsandbytes LLM.int8 / ONNX dynamic int8 style);
    ``"4bit"``: blocks of 32 along the input dimension with an absmax scale and levels -7..7
    (GGUF Q4_0 / GPTQ-less 4-bit exports). Models a quantised re-upload.
    """
    if kind not in {"int8", "4bit"}:
        msg = f"unknown quantisation kind {kind!r}"
        raise ValueError(msg)
    out: dict[str, np.ndarray] = {}
    for name, array in m.tensors.items():
        if array.ndim != 2:
            out[name] = array
        elif kind == "int8":
            scale = np.abs(array).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            out[name] = _f32(np.round(array / scale) * scale)
        else:
            out[name] = _blockwise_4bit(array)
    return m.replace(tensors=out)


def _blockwise_4bit(array: np.ndarray, block: int = 32) -> np.ndarray:
    rows, cols = array.shape
    pad = (-cols) % block
    padded = np.pad(array, ((0, 0), (0, pad))) if pad else array
    blocks = padded.reshape(rows, -1, block)
    scale = np.abs(blocks).max(axis=2, keepdims=True) / 7.0
    scale[scale == 0] = 1.0
    deq = np.clip(np.round(blocks / scale), -7, 7) * scale
    return _f32(deq.reshape(rows, -1)[:, :cols])


def prune(m: Model, fraction: float) -> Model:
    """Unstructured magnitude pruning: zero the smallest ``fraction`` of each linear weight matrix.

    Embedding tables and the LM head are left alone (as Wanda / SparseGPT / magnitude pruning
    recipes do). Models a sparse derivative (e.g. 50 % unstructured sparsity).
    """
    out: dict[str, np.ndarray] = {}
    for name, array in m.tensors.items():
        if not is_weight_matrix(name, array) or fraction <= 0:
            out[name] = array
            continue
        k = round(fraction * array.size)
        magnitude = np.abs(array).ravel()
        cut = np.partition(magnitude, k - 1)[k - 1] if k > 0 else -1.0
        pruned = array.copy()
        pruned[np.abs(array) <= cut] = 0.0
        out[name] = pruned
    return m.replace(tensors=out)


def merge(a: Model, b: Model, weight: float) -> Model:
    """Linear merge ``(1 - weight)·a + weight·b`` of two same-shape models (model soups, mergekit
    ``linear``). Tokens and config come from ``a``."""
    if a.tensors.keys() != b.tensors.keys():
        msg = "merge needs the same tensor names"
        raise ValueError(msg)
    out: dict[str, np.ndarray] = {}
    for name, left in a.tensors.items():
        right = b.tensors[name]
        if left.shape != right.shape:
            msg = f"merge: {name} has shapes {left.shape} and {right.shape}"
            raise ValueError(msg)
        out[name] = _f32((1.0 - weight) * left + weight * right)
    return a.replace(tensors=out)


def random_like(m: Model, seed: int) -> Model:
    """Independent Gaussian weights with each tensor's mean and std.

    The "same architecture, never trained together" negative: it has every shape and every
    per-tensor statistic of ``m`` (so a std fingerprint scores it 1.0) and nothing else.
    """
    rng = _rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, array in m.tensors.items():
        sample = rng.standard_normal(array.shape, dtype=np.float32)
        sample *= np.float32(array.std())
        sample += np.float32(array.mean())
        out[name] = sample
    return m.replace(tensors=out)


def shuffle_entries(m: Model, seed: int) -> Model:
    """Each tensor's entries randomly permuted: identical value histograms, no structure.

    A negative that defeats any statistic computed from per-tensor value distributions.
    """
    rng = _rng(seed)
    out = {
        name: rng.permutation(array.ravel()).reshape(array.shape)
        for name, array in m.tensors.items()
    }
    return m.replace(tensors=out)


# --- function-preserving reparametrisations ------------------------------------------------------------


def permute_hidden(m: Model, seed: int) -> Model:
    """Permute residual dimensions, attention heads and FFN neurons (function-preserving).

    The residual permutation is applied to every reader (input columns) and writer (output rows),
    to the embeddings, to every hidden-sized norm gain / bias and to the LM head. Heads are permuted
    per layer: for GQA the KV groups are permuted and the query heads inside each group move with
    their group (plus a permutation of the query heads within the group). FFN neurons are permuted
    per layer. Models a "disguised copy" (and the hidden-unit symmetry any weight test must ignore).
    """
    rng = _rng(seed)
    res = rng.permutation(int(m.config["hidden_size"]))
    if m.arch == "bert":
        return _permute_bert(m, rng, res)
    return _permute_decoder(m, rng, res)


def _permute_bert(m: Model, rng: np.random.Generator, res: np.ndarray) -> Model:
    t = dict(m.tensors)
    for name in (
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
    ):
        t[name] = _f32(t[name][:, res])
    for part in ("weight", "bias"):
        t[f"embeddings.LayerNorm.{part}"] = _f32(t[f"embeddings.LayerNorm.{part}"][res])
    t["pooler.dense.weight"] = _f32(t["pooler.dense.weight"][:, res])
    hd, nh = m.head_dim, m.num_heads
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        heads = rng.permutation(nh)
        rows = (heads[:, None] * hd + np.arange(hd)[None, :]).ravel()
        neurons = rng.permutation(int(m.config["intermediate_size"]))
        for proj in (_BERT_Q, _BERT_K, _BERT_V):
            t[f"{p}{proj}.weight"] = _f32(t[f"{p}{proj}.weight"][rows][:, res])
            t[f"{p}{proj}.bias"] = _f32(t[f"{p}{proj}.bias"][rows])
        t[f"{p}{_BERT_O}.weight"] = _f32(t[f"{p}{_BERT_O}.weight"][res][:, rows])
        t[f"{p}{_BERT_O}.bias"] = _f32(t[f"{p}{_BERT_O}.bias"][res])
        t[f"{p}{_BERT_FFN_IN}.weight"] = _f32(t[f"{p}{_BERT_FFN_IN}.weight"][neurons][:, res])
        t[f"{p}{_BERT_FFN_IN}.bias"] = _f32(t[f"{p}{_BERT_FFN_IN}.bias"][neurons])
        t[f"{p}{_BERT_FFN_OUT}.weight"] = _f32(t[f"{p}{_BERT_FFN_OUT}.weight"][res][:, neurons])
        t[f"{p}{_BERT_FFN_OUT}.bias"] = _f32(t[f"{p}{_BERT_FFN_OUT}.bias"][res])
        for ln in (_BERT_LN1, _BERT_LN2):
            for part in ("weight", "bias"):
                t[f"{p}{ln}.{part}"] = _f32(t[f"{p}{ln}.{part}"][res])
    return m.replace(tensors=t)


def _permute_decoder(m: Model, rng: np.random.Generator, res: np.ndarray) -> Model:
    t = dict(m.tensors)
    t["model.embed_tokens.weight"] = _f32(t["model.embed_tokens.weight"][:, res])
    t["model.norm.weight"] = _f32(t["model.norm.weight"][res])
    if "lm_head.weight" in t:
        t["lm_head.weight"] = _f32(t["lm_head.weight"][:, res])
    hd, nh, nkv = m.head_dim, m.num_heads, m.num_kv_heads
    rep = nh // nkv
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        groups = rng.permutation(nkv)
        q_heads = np.concatenate([g * rep + rng.permutation(rep) for g in groups])
        q_rows = (q_heads[:, None] * hd + np.arange(hd)[None, :]).ravel()
        kv_rows = (groups[:, None] * hd + np.arange(hd)[None, :]).ravel()
        neurons = rng.permutation(int(m.config["intermediate_size"]))
        t[f"{p}self_attn.q_proj.weight"] = _f32(t[f"{p}self_attn.q_proj.weight"][q_rows][:, res])
        for proj in ("k_proj", "v_proj"):
            t[f"{p}self_attn.{proj}.weight"] = _f32(
                t[f"{p}self_attn.{proj}.weight"][kv_rows][:, res]
            )
        t[f"{p}self_attn.o_proj.weight"] = _f32(t[f"{p}self_attn.o_proj.weight"][res][:, q_rows])
        for proj in ("gate_proj", "up_proj"):
            t[f"{p}mlp.{proj}.weight"] = _f32(t[f"{p}mlp.{proj}.weight"][neurons][:, res])
        t[f"{p}mlp.down_proj.weight"] = _f32(t[f"{p}mlp.down_proj.weight"][res][:, neurons])
        for norm in _decoder_norms(m):
            t[f"{p}{norm}.weight"] = _f32(t[f"{p}{norm}.weight"][res])
    return m.replace(tensors=t)


def _per_kv_head(m: Model, c: float | Sequence[float] | np.ndarray) -> np.ndarray:
    factors = np.broadcast_to(np.asarray(c, dtype=np.float64), (m.num_kv_heads,))
    if np.any(factors == 0):
        msg = "scale factors must be non-zero"
        raise ValueError(msg)
    return factors


def scale_qk(m: Model, c: float | Sequence[float] | np.ndarray) -> Model:
    """Query rows * c, key rows / c (per KV head if ``c`` is a sequence; BERT biases too).

    ``q·k`` is unchanged, so this is function-preserving (for Gemma-3 the q/k RMSNorms make it
    trivially so). Models the per-head rescaling symmetry that defeats std fingerprints.
    """
    factors = _per_kv_head(m, c)
    hd, rep = m.head_dim, m.num_heads // m.num_kv_heads
    q_scale = np.repeat(np.repeat(factors, rep), hd)[:, None]
    k_scale = np.repeat(factors, hd)[:, None]
    t = dict(m.tensors)
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        if m.arch == "bert":
            t[f"{p}{_BERT_Q}.weight"] = _f32(t[f"{p}{_BERT_Q}.weight"] * q_scale)
            t[f"{p}{_BERT_Q}.bias"] = _f32(t[f"{p}{_BERT_Q}.bias"] * q_scale[:, 0])
            t[f"{p}{_BERT_K}.weight"] = _f32(t[f"{p}{_BERT_K}.weight"] / k_scale)
            t[f"{p}{_BERT_K}.bias"] = _f32(t[f"{p}{_BERT_K}.bias"] / k_scale[:, 0])
        else:
            t[f"{p}self_attn.q_proj.weight"] = _f32(t[f"{p}self_attn.q_proj.weight"] * q_scale)
            t[f"{p}self_attn.k_proj.weight"] = _f32(t[f"{p}self_attn.k_proj.weight"] / k_scale)
    return m.replace(tensors=t)


def scale_vo(m: Model, c: float | Sequence[float] | np.ndarray) -> Model:
    """Value rows * c (BERT bias too), output-projection columns / c, per KV head if a sequence.

    Function-preserving (attention mixes values linearly). The v/o half of the rescaling symmetry.
    """
    factors = _per_kv_head(m, c)
    hd, rep = m.head_dim, m.num_heads // m.num_kv_heads
    v_scale = np.repeat(factors, hd)[:, None]
    o_scale = np.repeat(np.repeat(factors, rep), hd)[None, :]
    t = dict(m.tensors)
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        if m.arch == "bert":
            t[f"{p}{_BERT_V}.weight"] = _f32(t[f"{p}{_BERT_V}.weight"] * v_scale)
            t[f"{p}{_BERT_V}.bias"] = _f32(t[f"{p}{_BERT_V}.bias"] * v_scale[:, 0])
            t[f"{p}{_BERT_O}.weight"] = _f32(t[f"{p}{_BERT_O}.weight"] / o_scale)
        else:
            t[f"{p}self_attn.v_proj.weight"] = _f32(t[f"{p}self_attn.v_proj.weight"] * v_scale)
            t[f"{p}self_attn.o_proj.weight"] = _f32(t[f"{p}self_attn.o_proj.weight"] / o_scale)
    return m.replace(tensors=t)


def fold_norms(m: Model) -> Model:
    """Fold the pre-norm gains into the linears that read them and set the gains to 1.

    LLaMA: ``input_layernorm`` into q/k/v, ``post_attention_layernorm`` into gate/up, and
    ``model.norm`` into the LM head (which unties it from the embedding). Gemma-3: the same for
    its pre-norms (gain ``1 + w`` folded, ``w`` set to 0); its post-norms feed the residual stream
    and stay. This is the first step of SliceGPT / QuaRot / SpinQuant, and what some exporters do.
    BERT's post-LN LayerNorms feed the residual stream, so there is nothing to fold.
    """
    if m.arch == "bert":
        msg = "fold_norms: BERT's post-LN LayerNorms cannot be folded"
        raise ValueError(msg)
    gemma = m.arch == "gemma3"
    t = dict(m.tensors)
    pre_ffn = "pre_feedforward_layernorm" if gemma else "post_attention_layernorm"
    folds = []
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        folds.append(
            (f"{p}input_layernorm.weight", [f"{p}self_attn.{x}_proj.weight" for x in "qkv"])
        )
        folds.append(
            (f"{p}{pre_ffn}.weight", [f"{p}mlp.gate_proj.weight", f"{p}mlp.up_proj.weight"])
        )
    if "lm_head.weight" not in t:
        t["lm_head.weight"] = t["model.embed_tokens.weight"]
    folds.append(("model.norm.weight", ["lm_head.weight"]))
    for norm, readers in folds:
        gain = t[norm].astype(np.float64) + (1.0 if gemma else 0.0)
        for reader in readers:
            t[reader] = _f32(t[reader] * gain[None, :])
        t[norm] = np.full_like(t[norm], 0.0 if gemma else 1.0)
    config = dict(m.config)
    config["tie_word_embeddings"] = False
    return m.replace(tensors=t, config=config)


def _random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))[None, :]  # Haar-distributed


def rotate_residual(m: Model, seed: int) -> Model:
    """SliceGPT-style rotation of the residual stream by a random orthogonal Q (LLaMA only).

    Norms are folded first (:func:`fold_norms`); then E → EQ, every reader W → WQ, every writer
    W → QᵀW and the LM head → WQ. RMSNorm with unit gain commutes with an orthogonal transform,
    so the function is preserved exactly (up to float rounding). Defeats alignment by assignment
    (LAP) on embedding columns; see research notes §4.
    """
    if m.arch != "llama":
        msg = f"rotate_residual is exact only for LLaMA-style models, not {m.arch}"
        raise ValueError(msg)
    folded = fold_norms(m)
    d = int(m.config["hidden_size"])
    q = _random_orthogonal(d, _rng(seed)).astype(np.float32)  # float32 products: 2x faster
    t = dict(folded.tensors)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        t[name] = _f32(t[name] @ q)
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        for reader in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
        ):
            t[f"{p}{reader}.weight"] = _f32(t[f"{p}{reader}.weight"] @ q)
        for writer in ("self_attn.o_proj", "mlp.down_proj"):
            t[f"{p}{writer}.weight"] = _f32(q.T @ t[f"{p}{writer}.weight"])
    return folded.replace(tensors=t)


# --- vocabulary and depth changes -------------------------------------------------------------------


def _vocab_tensors(m: Model) -> list[str]:
    names = [m.embedding_name]
    if "lm_head.weight" in m.tensors:
        names.append("lm_head.weight")
    return names


def _remap_special_ids(config: dict[str, object], old_to_new: dict[int, int]) -> dict[str, object]:
    out = dict(config)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = out.get(key)
        if isinstance(value, int):
            out[key] = old_to_new.get(value)
    return out


def prune_vocab(m: Model, keep_ids: Sequence[int]) -> Model:
    """Keep only ``keep_ids`` (in that order) of the vocabulary: embedding rows, LM head rows and
    token strings. Models vocabulary trimming (e.g. a multilingual model cut to one language)."""
    keep = np.asarray(keep_ids, dtype=np.int64)
    t = dict(m.tensors)
    for name in _vocab_tensors(m):
        t[name] = _f32(t[name][keep])
    tokens = [m.tokens[i] for i in keep]
    config = _remap_special_ids(m.config, {int(old): new for new, old in enumerate(keep)})
    config["vocab_size"] = len(tokens)
    return m.replace(tensors=t, config=config, tokens=tokens)


def _new_token_strings(existing: set[str], count: int, rng: np.random.Generator) -> list[str]:
    """Two-character CJK words that are not yet in the vocabulary (Chinese-LLaMA-style additions)."""
    out: list[str] = []
    seen = set(existing)
    while len(out) < count:
        codes = rng.integers(0x4E00, 0x9FA5, size=(max(count, 64), 2))
        for a, b in codes:
            word = chr(int(a)) + chr(int(b))
            if word not in seen:
                seen.add(word)
                out.append(word)
                if len(out) == count:
                    break
    return out


def extend_vocab(m: Model, n_new: int, seed: int) -> Model:
    """Add ``n_new`` tokens (rows ~ N(column mean, column std) of the existing rows), then shuffle
    all ids; the token list moves with the rows. Models vocabulary extension before continued
    pretraining (Chinese-LLaMA) and a re-ordered tokenizer."""
    rng = _rng(seed)
    t = dict(m.tensors)
    perm = rng.permutation(len(m.tokens) + n_new)
    for name in _vocab_tensors(m):
        rows = t[name]
        mean = rows.mean(axis=0, dtype=np.float64)
        std = rows.std(axis=0, dtype=np.float64)
        new = rng.standard_normal((n_new, rows.shape[1])) * std + mean
        t[name] = _f32(np.concatenate([rows, new.astype(np.float32)])[perm])
    tokens = m.tokens + _new_token_strings(set(m.tokens), n_new, rng)
    tokens = [tokens[i] for i in perm]
    config = _remap_special_ids(m.config, {int(old): new for new, old in enumerate(perm)})
    config["vocab_size"] = len(tokens)
    return m.replace(tensors=t, config=config, tokens=tokens)


def _select_layers(m: Model, order: Sequence[int]) -> Model:
    for index in order:
        if not 0 <= index < m.num_layers:
            msg = f"layer {index} out of range 0..{m.num_layers - 1}"
            raise ValueError(msg)
    prefixes = [layer_prefix(m, i) for i in range(m.num_layers)]
    t = {
        name: array
        for name, array in m.tensors.items()
        if not any(name.startswith(p) for p in prefixes)
    }
    used: set[int] = set()
    for new, old in enumerate(order):
        src, dst = prefixes[old], layer_prefix(m, new)
        for name, array in m.tensors.items():
            if name.startswith(src):
                t[dst + name[len(src) :]] = array.copy() if old in used else array
        used.add(old)
    config = dict(m.config)
    config["num_hidden_layers"] = len(order)
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = [config["layer_types"][i] for i in order]
    return m.replace(tensors=t, config=config)


def drop_layers(m: Model, keep: Sequence[int]) -> Model:
    """Keep only the layers ``keep`` (renumbered in order): structured depth pruning
    (ShortGPT / Minitron-depth / Sheared-LLaMA-style layer removal)."""
    return _select_layers(m, list(keep))


def duplicate_layers(m: Model, order: Sequence[int]) -> Model:
    """A new layer stack built from existing layer indices, repeats allowed: depth up-scaling
    (SOLAR-10.7B's 2 x 24 of 32 layers) and frankenmerge "passthrough" stacks."""
    return _select_layers(m, list(order))


def combine(m: Model, steps: Sequence[Step]) -> Model:
    """Apply ``steps`` in order, e.g. ``combine(m, [partial(permute_hidden, seed=1),
    partial(add_noise, rel_sigma=0.3, seed=2), partial(quantize_roundtrip, kind="4bit")])``."""
    for step in steps:
        m = step(m)
    return m


# --- numpy forward passes (float64 inside; for function-preservation checks) -------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gain


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _w(m: Model, name: str) -> np.ndarray:
    return m.tensors[name].astype(np.float64)


def forward_bert(model: Model, token_ids: Sequence[int], pooled: bool = False) -> np.ndarray:
    """Post-LN BERT encoder on one unpadded sequence: last hidden states ``[T, d]``.

    Word + position + token-type (0) embeddings, embedding LayerNorm, then per layer
    self-attention → add & LayerNorm → GELU (erf) FFN → add & LayerNorm. With ``pooled`` the
    pooler output ``tanh(W h[0] + b)`` (shape ``[d]``) is returned instead.
    """
    m, cfg = model, model.config
    ids = np.asarray(token_ids)
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    n = len(ids)
    x = m.tensors["embeddings.word_embeddings.weight"][ids].astype(np.float64)
    x = x + m.tensors["embeddings.position_embeddings.weight"][:n].astype(np.float64)
    x = x + m.tensors["embeddings.token_type_embeddings.weight"][0].astype(np.float64)
    x = _layer_norm(
        x, _w(m, "embeddings.LayerNorm.weight"), _w(m, "embeddings.LayerNorm.bias"), eps
    )
    nh, hd = m.num_heads, m.head_dim
    for i in range(m.num_layers):
        p = layer_prefix(m, i)

        def lin(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ _w(m, f"{p}{name}.weight").T + _w(m, f"{p}{name}.bias")

        q = lin(x, _BERT_Q).reshape(n, nh, hd).transpose(1, 0, 2)
        k = lin(x, _BERT_K).reshape(n, nh, hd).transpose(1, 0, 2)
        v = lin(x, _BERT_V).reshape(n, nh, hd).transpose(1, 0, 2)
        att = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd))
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, nh * hd)
        x = _layer_norm(
            x + lin(ctx, _BERT_O),
            _w(m, f"{p}{_BERT_LN1}.weight"),
            _w(m, f"{p}{_BERT_LN1}.bias"),
            eps,
        )
        h = _gelu(lin(x, _BERT_FFN_IN))
        x = _layer_norm(
            x + lin(h, _BERT_FFN_OUT),
            _w(m, f"{p}{_BERT_LN2}.weight"),
            _w(m, f"{p}{_BERT_LN2}.bias"),
            eps,
        )
    if pooled:
        return np.tanh(x[0] @ _w(m, "pooler.dense.weight").T + _w(m, "pooler.dense.bias"))
    return x


def _rope(x: np.ndarray, theta: float) -> np.ndarray:
    """HF rotate-half RoPE on ``[heads, T, hd]``."""
    _, n, hd = x.shape
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    angles = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))
    sin = np.sin(np.concatenate([angles, angles], axis=-1))
    half = hd // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, window: int | None = None
) -> np.ndarray:
    """Causal GQA attention: q ``[nh, T, hd]``, k/v ``[nkv, T, hd]`` -> ``[T, nh*hd]``."""
    nh, n, hd = q.shape
    rep = nh // k.shape[0]
    k = np.repeat(k, rep, axis=0)
    v = np.repeat(v, rep, axis=0)
    scores = q @ k.transpose(0, 2, 1) * scale
    i, j = np.indices((n, n))
    blocked = j > i
    if window is not None:
        blocked |= j <= i - window
    scores = np.where(blocked[None], -np.inf, scores)
    return (_softmax(scores) @ v).transpose(1, 0, 2).reshape(n, nh * hd)


def _logits(m: Model, h: np.ndarray) -> np.ndarray:
    head = m.tensors.get("lm_head.weight", m.tensors["model.embed_tokens.weight"])
    return (h.astype(np.float32) @ head.T).astype(np.float64)  # vocab-sized: float32 suffices


def forward_llama(model: Model, token_ids: Sequence[int]) -> np.ndarray:
    """LLaMA decoder on one sequence: logits ``[T, vocab]``.

    RMSNorm pre-norms, rotate-half RoPE (``rope_theta``), causal GQA attention, SiLU-gated FFN,
    final RMSNorm, LM head (tied to the embedding when ``lm_head.weight`` is absent).
    """
    m, cfg = model, model.config
    ids = np.asarray(token_ids)
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    theta = float(cfg.get("rope_theta", 10000.0))
    nh, nkv, hd = m.num_heads, m.num_kv_heads, m.head_dim
    n = len(ids)
    x = m.tensors["model.embed_tokens.weight"][ids].astype(np.float64)
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        h = _rms_norm(x, _w(m, f"{p}input_layernorm.weight"), eps)
        q = (h @ _w(m, f"{p}self_attn.q_proj.weight").T).reshape(n, nh, hd).transpose(1, 0, 2)
        k = (h @ _w(m, f"{p}self_attn.k_proj.weight").T).reshape(n, nkv, hd).transpose(1, 0, 2)
        v = (h @ _w(m, f"{p}self_attn.v_proj.weight").T).reshape(n, nkv, hd).transpose(1, 0, 2)
        ctx = _attention(_rope(q, theta), _rope(k, theta), v, 1.0 / math.sqrt(hd))
        x = x + ctx @ _w(m, f"{p}self_attn.o_proj.weight").T
        h = _rms_norm(x, _w(m, f"{p}post_attention_layernorm.weight"), eps)
        gate = _silu(h @ _w(m, f"{p}mlp.gate_proj.weight").T)
        up = h @ _w(m, f"{p}mlp.up_proj.weight").T
        x = x + (gate * up) @ _w(m, f"{p}mlp.down_proj.weight").T
    return _logits(m, _rms_norm(x, _w(m, "model.norm.weight"), eps))


def forward_gemma3(model: Model, token_ids: Sequence[int]) -> np.ndarray:
    """Gemma-3 text decoder on one sequence: logits ``[T, vocab]``.

    Embedding * sqrt(d), sandwich RMSNorms with gain ``1 + w``, q/k RMSNorm per head, RoPE with
    ``rope_local_base_freq`` on sliding-window layers and ``rope_theta`` on global ones, query
    scaling ``query_pre_attn_scalar**-0.5``, GELU(tanh)-gated FFN, tied LM head.
    """
    m, cfg = model, model.config
    ids = np.asarray(token_ids)
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    nh, nkv, hd = m.num_heads, m.num_kv_heads, m.head_dim
    n = len(ids)
    d = int(cfg["hidden_size"])
    scale = float(cfg.get("query_pre_attn_scalar", hd)) ** -0.5
    window = int(cfg.get("sliding_window", 512))
    layer_types = cfg.get("layer_types") or [
        "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(m.num_layers)
    ]

    def norm(h: np.ndarray, name: str) -> np.ndarray:
        return _rms_norm(h, 1.0 + _w(m, name), eps)

    x = m.tensors["model.embed_tokens.weight"][ids].astype(np.float64) * np.float64(
        np.float32(math.sqrt(d))
    )
    for i in range(m.num_layers):
        p = layer_prefix(m, i)
        local = layer_types[i] == "sliding_attention"
        theta = (
            float(cfg.get("rope_local_base_freq", 10000.0))
            if local
            else float(cfg.get("rope_theta", 1e6))
        )
        h = norm(x, f"{p}input_layernorm.weight")
        q = (h @ _w(m, f"{p}self_attn.q_proj.weight").T).reshape(n, nh, hd).transpose(1, 0, 2)
        k = (h @ _w(m, f"{p}self_attn.k_proj.weight").T).reshape(n, nkv, hd).transpose(1, 0, 2)
        v = (h @ _w(m, f"{p}self_attn.v_proj.weight").T).reshape(n, nkv, hd).transpose(1, 0, 2)
        q = _rope(norm(q, f"{p}self_attn.q_norm.weight"), theta)
        k = _rope(norm(k, f"{p}self_attn.k_norm.weight"), theta)
        ctx = _attention(q, k, v, scale, window if local else None)
        x = x + norm(
            ctx @ _w(m, f"{p}self_attn.o_proj.weight").T, f"{p}post_attention_layernorm.weight"
        )
        h = norm(x, f"{p}pre_feedforward_layernorm.weight")
        gate = _gelu_tanh(h @ _w(m, f"{p}mlp.gate_proj.weight").T)
        up = h @ _w(m, f"{p}mlp.up_proj.weight").T
        f = (gate * up) @ _w(m, f"{p}mlp.down_proj.weight").T
        x = x + norm(f, f"{p}post_feedforward_layernorm.weight")
    logits = _logits(m, norm(x, "model.norm.weight"))
    cap = cfg.get("final_logit_softcapping")
    if cap:
        logits = np.tanh(logits / cap) * cap
    return logits


def forward(model: Model, token_ids: Sequence[int]) -> np.ndarray:
    """The forward pass for ``model.arch`` (BERT: last hidden states; decoders: logits)."""
    if model.arch == "bert":
        return forward_bert(model, token_ids)
    if model.arch == "gemma3":
        return forward_gemma3(model, token_ids)
    return forward_llama(model, token_ids)
