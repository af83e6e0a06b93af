"""A transformer's weights in one canonical layout, whatever format and naming they came in.

Comparisons need the token embedding and, per layer, the attention and FFN matrices as
`[out, in]` float32 (`in` being the residual width for the matrices that read the residual
stream, `out` for those that write it). Names are only a first guess: the same matrix is
`model.layers.3.self_attn.q_proj` in Hugging Face checkpoints, `blk.3.attn_q` in GGUF, a fused
`h.3.attn.c_attn` stored transposed in GPT-2, so each matrix's orientation is checked against the
embedding width, and the Q/K row order llama.cpp's converter applies is undone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.source import Floats, ParsedWeights, StoredTensor
from kaiyuan.services.provenance.vocab import Vocabulary

_BLOCK_BYTES = 64 * 1024 * 1024  # float32 bytes read per block of rows
_MATRIX = 2


class Role(StrEnum):
    Q = "q"
    K = "k"
    V = "v"
    O = "o"  # noqa: E741 - the attention output projection's usual name
    GATE = "gate"
    UP = "up"
    DOWN = "down"


READERS = (Role.Q, Role.K, Role.V, Role.GATE, Role.UP)  # matrices whose input is the residual

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blk|blocks|block)\.(\d{1,5})\.(.+)$")
_EMBEDDING = re.compile(
    r"(?:^|\.)(?:embed_tokens|word_embeddings|wte|tok_embeddings|token_embd|embed_in|"
    r"embeddings)\.weight$"
)
_ROLES: tuple[tuple[re.Pattern[str], Role], ...] = tuple(
    (re.compile(pattern), role)
    for pattern, role in (
        (r"(?:^|\.)(?:q_proj|query|attn_q|wq|q_lin)\.weight$", Role.Q),
        (r"(?:^|\.)(?:k_proj|key|attn_k|wk|k_lin)\.weight$", Role.K),
        (r"(?:^|\.)(?:v_proj|value|attn_v|wv|v_lin)\.weight$", Role.V),
        (
            (
                r"(?:^|\.)(?:o_proj|out_proj|attn_output|wo|out_lin|attention\.output\.dense|"
                r"attn\.c_proj|self_attention\.dense|attention\.dense)\.weight$"
            ),
            Role.O,
        ),
        (r"(?:^|\.)(?:gate_proj|ffn_gate|w1)\.weight$", Role.GATE),
        (
            r"(?:^|\.)(?:up_proj|ffn_up|w3|intermediate\.dense|fc1|c_fc|dense_h_to_4h)\.weight$",
            Role.UP,
        ),
        (
            r"(?:^|\.)(?:down_proj|ffn_down|w2|^output\.dense|fc2|mlp\.c_proj|dense_4h_to_h)\.weight$",
            Role.DOWN,
        ),
    )
)
_FUSED_QKV = re.compile(r"(?:^|\.)(?:qkv_proj|query_key_value|c_attn|attn_qkv|Wqkv)\.weight$")
_INPUT_NORM = re.compile(
    r"(?:^|\.)(?:input_layernorm|attn_norm|ln_1|attention_norm|pre_attention_layernorm)\.weight$"
)
_CONV1D = re.compile(r"(?:^|\.)(?:c_attn|c_proj|c_fc)\.weight$")  # GPT-2 stores [in, out]
# Architectures whose GGUF converter reorders Q/K rows for llama.cpp's rotary embedding.
_GGUF_PERMUTED_QK = frozenset({"llama", "mistral", "granite", "deci"})


@dataclass(frozen=True, slots=True)
class Matrix:
    """A weight matrix in canonical `[out, in]` orientation, loaded on demand."""

    tensor: StoredTensor
    transposed: bool = False  # stored as [in, out]
    rows: tuple[int, int] | None = None  # a slice of a fused matrix, in canonical rows
    head_order: int | None = None  # undo llama.cpp's Q/K row order over this many heads
    # The pre-attention norm's gain, folded into the input columns: a model whose gains were
    # folded into its matrices (a function-preserving edit) then reads as its parent.
    gain: StoredTensor | None = None
    gain_offset: float = 0.0  # Gemma's checkpoints store the gain minus one

    @property
    def shape(self) -> tuple[int, int]:
        out, inner = self.tensor.shape[::-1] if self.transposed else self.tensor.shape
        if self.rows is not None:
            out = self.rows[1] - self.rows[0]
        return out, inner

    def load(self) -> Floats:
        """The matrix as float32 `[out, in]`, read in bounded blocks of rows."""
        stored = self.tensor.shape
        if self.transposed:
            whole = _read_all(self.tensor).T
            start, stop = self.rows or (0, whole.shape[0])
            matrix = np.ascontiguousarray(whole[start:stop])
        else:
            start, stop = self.rows or (0, stored[0])
            matrix = _read_rows(self.tensor, start, stop)
        if self.head_order:
            out, inner = matrix.shape
            halves = matrix.reshape(self.head_order, out // self.head_order // 2, 2, inner)
            matrix = halves.swapaxes(1, 2).reshape(out, inner)
        if self.gain is not None and self.gain.shape == (matrix.shape[1],):
            gain = self.gain.read_rows(0, matrix.shape[1]) + self.gain_offset
            matrix = matrix * gain[None, :]
        return matrix


@dataclass(frozen=True, slots=True)
class Embedding:
    """The token embedding `[vocab, width]`; rows are read only for the tokens asked for."""

    tensor: StoredTensor

    @property
    def shape(self) -> tuple[int, int]:
        rows, width = self.tensor.shape
        return rows, width

    def rows(self, ids: Sequence[int]) -> Floats:
        """Rows `ids` (in that order) as float32."""
        vocab, width = self.shape
        if not ids:
            return np.zeros((0, width), np.float32)
        wanted = np.asarray(ids, dtype=np.int64)
        if wanted.min() < 0 or wanted.max() >= vocab:
            raise InvalidInputError(f"{self.tensor.name}: token id outside 0..{vocab - 1}")
        order = np.unique(wanted)
        found: dict[int, Floats] = {}
        if len(order) * 8 > vocab:  # many rows: one pass over the whole tensor is cheaper
            step = max(1, _BLOCK_BYTES // (4 * width))
            for start in range(0, vocab, step):
                stop = min(vocab, start + step)
                inside = order[(order >= start) & (order < stop)]
                if len(inside):
                    block = self.tensor.read_rows(start, stop)
                    found.update(zip(inside.tolist(), block[inside - start], strict=True))
        else:
            for run_start, run_stop in _runs(order.tolist()):
                block = self.tensor.read_rows(run_start, run_stop)
                for offset, row in enumerate(block):
                    found[run_start + offset] = row
        return np.stack([found[i] for i in wanted.tolist()]).astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """Where a model's comparable weights are, and what is known of its shape."""

    format: str
    architecture: str
    embedding: Embedding
    layers: tuple[Mapping[Role, Matrix], ...]
    heads: int | None = None
    kv_heads: int | None = None
    vocabulary: Vocabulary | None = None
    tensors: tuple[StoredTensor, ...] = field(default=(), repr=False)

    @property
    def width(self) -> int:
        return self.embedding.shape[1]


def build_layout(
    weights: Sequence[ParsedWeights],
    *,
    config: Mapping[str, object] | None = None,
    vocabulary: Vocabulary | None = None,
) -> ModelLayout:
    """The canonical layout of a model stored in `weights` (one file, or all shards).

    `config` is the model's `config.json` (head counts), `vocabulary` its tokenizer's; a GGUF
    file carries both. InvalidInput when no token embedding or no layer is recognised.
    """
    if not weights:
        raise InvalidInputError("no weight files")
    tensors = _by_name(weights)
    stored_transposed: set[str] = set()
    for parsed in weights:
        if parsed.format == "onnx":
            named = _onnx_names(parsed)
            tensors.update(named)
            stored_transposed.update(named)
    formats = {w.format for w in weights}
    metadata = weights[0].metadata
    architecture = str(metadata.get("general.architecture") or _config_arch(config) or "")
    heads, kv_heads = _head_counts(metadata, architecture, config)
    embedding = _embedding(tensors)
    width = embedding.shape[1]
    permuted = "gguf" in formats and architecture in _GGUF_PERMUTED_QK
    layers = _layers(tensors, width, (heads, kv_heads), stored_transposed, permuted=permuted)
    offset = 1.0 if _stores_gain_minus_one(architecture, formats) else 0.0
    _fold_input_norms(tensors, layers, width, offset=offset)
    ordered = tuple(layers[i] for i in sorted(layers) if layers[i])
    if not ordered:
        raise InvalidInputError("no transformer layer recognised among the tensors")
    if vocabulary is None and weights[0].tokens is not None:
        from kaiyuan.services.provenance.vocab import from_tokens  # noqa: PLC0415

        model = str(metadata.get("tokenizer.ggml.model") or "")
        vocabulary = from_tokens(weights[0].tokens, model)
    return ModelLayout(
        format="+".join(sorted(formats)),
        architecture=architecture,
        embedding=embedding,
        layers=ordered,
        heads=heads,
        kv_heads=kv_heads,
        vocabulary=vocabulary,
        tensors=tuple(t for w in weights for t in w.tensors),
    )


def _layers(
    tensors: Mapping[str, StoredTensor],
    width: int,
    counts: tuple[int | None, int | None],
    stored_transposed: set[str],
    *,
    permuted: bool,
) -> dict[int, dict[Role, Matrix]]:
    """Each layer's matrices by role, oriented `[out, in]`."""
    heads, kv_heads = counts
    layers: dict[int, dict[Role, Matrix]] = {}
    for name, tensor in tensors.items():
        found = _LAYER.search(name)
        if found is None or len(tensor.shape) != _MATRIX:
            continue
        index, rest = int(found.group(1)), found.group(2)
        slot = layers.setdefault(index, {})
        if _FUSED_QKV.search(rest):
            slot.update(_split_fused(tensor, width, heads, kv_heads, name))
            continue
        role = next((r for pattern, r in _ROLES if pattern.search(rest)), None)
        if role is None:
            continue
        transposed = bool(_CONV1D.search(rest)) or name in stored_transposed
        matrix = _oriented(tensor, role, width, conv1d=transposed)
        if permuted and role in {Role.Q, Role.K}:
            count = heads if role is Role.Q else kv_heads
            if count and matrix.shape[0] % (2 * count) == 0:
                matrix = dataclasses.replace(matrix, head_order=count)
        slot[role] = matrix
    return layers


def _fold_input_norms(
    tensors: Mapping[str, StoredTensor],
    layers: dict[int, dict[Role, Matrix]],
    width: int,
    *,
    offset: float,
) -> None:
    gains: dict[int, StoredTensor] = {}
    for name, tensor in tensors.items():
        found = _LAYER.search(name)
        if found and tensor.shape == (width,) and _INPUT_NORM.search(found.group(2)):
            gains[int(found.group(1))] = tensor
    for index, slot in layers.items():
        gain = gains.get(index)
        if gain is None:
            continue
        for role in (Role.Q, Role.K, Role.V):
            if role in slot and slot[role].shape[1] == width:
                slot[role] = dataclasses.replace(slot[role], gain=gain, gain_offset=offset)


def _stores_gain_minus_one(architecture: str, formats: set[str]) -> bool:
    """Gemma's PyTorch checkpoints keep RMSNorm gains as w and apply 1 + w; GGUF stores 1 + w."""
    return architecture.startswith("gemma") and "gguf" not in formats


def _onnx_names(parsed: ParsedWeights) -> dict[str, StoredTensor]:
    """Names for an ONNX export's anonymous matrices, recovered from the graph.

    Exporters name a linear layer's weight `onnx::MatMul_470` (stored as `[in, out]`) but keep
    its bias's name, and the bias is added right after the product: each MatMul weight takes the
    name of the next bias, `….query.bias` giving `….query.weight`. Weights with no bias after
    them (bias-free architectures) stay anonymous.
    """
    by_name = {t.name: t for t in parsed.tensors}
    graph = parsed.metadata.get("graph")
    named: dict[str, StoredTensor] = {}
    pending: StoredTensor | None = None
    for node in graph if isinstance(graph, list) else []:
        if not isinstance(node, dict):
            continue
        inputs = [by_name[i] for i in node.get("inputs", ()) if i in by_name]
        matrices = [t for t in inputs if len(t.shape) == _MATRIX]
        if node.get("op") == "MatMul" and matrices:
            pending = matrices[0]
        elif node.get("op") == "Add" and pending is not None:
            bias = next((t for t in inputs if t.name.endswith(".bias")), None)
            if bias is not None and bias.shape == (pending.shape[1],):
                named[bias.name.removesuffix(".bias") + ".weight"] = pending
            pending = None
    return named


def _by_name(weights: Sequence[ParsedWeights]) -> dict[str, StoredTensor]:
    tensors: dict[str, StoredTensor] = {}
    for parsed in weights:
        for tensor in parsed.tensors:
            if tensor.name in tensors:
                raise InvalidInputError(f"tensor {tensor.name!r} appears in two weight files")
            tensors[tensor.name] = tensor
    return tensors


def _embedding(tensors: Mapping[str, StoredTensor]) -> Embedding:
    candidates = [
        t
        for name, t in tensors.items()
        if _EMBEDDING.search(name)
        and len(t.shape) == _MATRIX
        and min(t.shape) > 1
        and not _LAYER.search(name)
    ]
    if not candidates:
        raise InvalidInputError("no token embedding recognised among the tensors")
    return Embedding(max(candidates, key=lambda t: t.shape[0]))


def _oriented(tensor: StoredTensor, role: Role, width: int, *, conv1d: bool) -> Matrix:
    rows, cols = tensor.shape
    if rows == cols:
        return Matrix(tensor, transposed=conv1d)
    residual_is_input = role in READERS
    if (cols == width) == residual_is_input and (rows == width) != residual_is_input:
        return Matrix(tensor)
    if (rows == width) == residual_is_input:
        return Matrix(tensor, transposed=True)
    return Matrix(tensor, transposed=conv1d)


def _split_fused(
    tensor: StoredTensor, width: int, heads: int | None, kv_heads: int | None, name: str
) -> dict[Role, Matrix]:
    conv1d = bool(_CONV1D.search(name))
    whole = Matrix(tensor, transposed=conv1d or tensor.shape[0] == width != tensor.shape[1])
    out = whole.shape[0]
    if heads and kv_heads and width % heads == 0:
        head_dim = width // heads
        q, kv = heads * head_dim, kv_heads * head_dim
    else:
        q = kv = out // 3
    if q + 2 * kv != out:
        raise InvalidInputError(f"fused attention tensor {name!r} has {out} rows, not q+k+v")
    bounds = {Role.Q: (0, q), Role.K: (q, q + kv), Role.V: (q + kv, out)}
    return {role: Matrix(tensor, whole.transposed, span) for role, span in bounds.items()}


def _head_counts(
    metadata: Mapping[str, object], architecture: str, config: Mapping[str, object] | None
) -> tuple[int | None, int | None]:
    heads = _count(metadata.get(f"{architecture}.attention.head_count"))
    kv = _count(metadata.get(f"{architecture}.attention.head_count_kv"))
    if config:
        heads = heads or _count(config.get("num_attention_heads") or config.get("n_head"))
        kv = kv or _count(config.get("num_key_value_heads"))
    return heads, kv or heads


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 20:
        return value
    return None


def _config_arch(config: Mapping[str, object] | None) -> str:
    if not config:
        return ""
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else ""


def _read_rows(tensor: StoredTensor, start: int, stop: int) -> Floats:
    row_floats = math.prod(tensor.shape[1:]) or 1
    step = max(1, _BLOCK_BYTES // (4 * row_floats))
    blocks = [tensor.read_rows(i, min(stop, i + step)) for i in range(start, stop, step)]
    return np.concatenate(blocks) if len(blocks) != 1 else blocks[0]


def _read_all(tensor: StoredTensor) -> Floats:
    return _read_rows(tensor, 0, tensor.shape[0])


def _runs(ids: list[int], gap: int = 4) -> list[tuple[int, int]]:
    """Sorted ids grouped into [start, stop) runs, joining ids less than `gap` apart."""
    runs: list[tuple[int, int]] = []
    for i in ids:
        if runs and i - runs[-1][1] < gap:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
