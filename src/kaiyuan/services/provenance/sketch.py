"""A small, width-free summary of a model's weights for shortlisting related models.

Verifying a pair reads both models; the hub cannot do that for every model it holds. Each
revision therefore keeps a sketch: the invariant attention terms (`invariants`) of a few layers
spread over the depth, over a fixed list of common tokens (English words, digits, punctuation,
common Chinese characters) as each model's vocabulary spells them. The terms are token x token,
unchanged by permutation, rotation and q/k or v/o rescaling, so two sketches compare on the
tokens both models hold whatever their widths; layers are matched best-to-best, so depth changes
do not hide a relative. Stored as float16 (about a quarter of a megabyte).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

import numpy as np

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.invariants import attention_terms
from kaiyuan.services.provenance.layout import ModelLayout, Role
from kaiyuan.services.provenance.source import Floats, as_floats

SKETCH_LAYERS = 4
# At most this many of the canonical tokens a model holds go into its sketch. The products
# behind the terms grow with the token count and cost as much as hashing a 2 GB model at 262
# tokens; 128 tokens still give 16k term entries a layer (independent models correlate within
# ±0.02, derivatives near 1).
SKETCH_TOKENS = 128
MIN_SHARED = 24
MAX_SKETCH_BYTES = 4 * 1024 * 1024
_TERMS = ("qk", "vo")

_SYMBOLS = [*".,;:!?()[]\"'-/", *"0123456789"]


def _canonical_tokens() -> tuple[str, ...]:
    text = (resources.files(__package__) / "data" / "sketch_tokens.txt").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    split = lines.index("[chinese]")
    words, chinese = lines[:split], lines[split + 1 :]
    return tuple(dict.fromkeys([*(" " + w for w in words), *words[:60], *chinese, *_SYMBOLS]))


CANONICAL_TOKENS = _canonical_tokens()
# The order in which a model's canonical tokens are taken up to SKETCH_TOKENS: a fixed hash
# order, so any prefix mixes English words, Chinese characters and symbols, and two models with
# the same vocabulary take the same tokens.
_PRIORITY = tuple(
    sorted(
        range(len(CANONICAL_TOKENS)),
        key=lambda i: hashlib.blake2b(CANONICAL_TOKENS[i].encode("utf-8"), digest_size=8).digest(),
    )
)


@dataclass(frozen=True, slots=True)
class Sketch:
    tokens: np.ndarray  # indices into CANONICAL_TOKENS that the model's vocabulary holds
    terms: dict[str, Floats]  # name -> (layers, tokens, tokens)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            f"term_{k}": v.astype(np.float16) for k, v in self.terms.items()
        }
        arrays["tokens"] = self.tokens.astype(np.int32)
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Sketch:
        if len(raw) > MAX_SKETCH_BYTES:
            raise InvalidInputError("sketch too large")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                tokens = np.asarray(data["tokens"], dtype=np.int64)
                terms = {
                    key.removeprefix("term_"): np.asarray(data[key], dtype=np.float32)
                    for key in data.files
                    if key.startswith("term_")
                }
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidInputError(f"unreadable sketch: {exc}") from None
        n = len(tokens)
        for term in terms.values():
            if term.ndim != 3 or term.shape[1:] != (n, n):  # noqa: PLR2004
                raise InvalidInputError("sketch terms do not match its tokens")
        return cls(tokens, terms)


def sketch(model: ModelLayout) -> Sketch | None:
    """The model's sketch; None when its vocabulary holds too few of the canonical tokens."""
    if model.vocabulary is None:
        return None
    ids = model.vocabulary.find(CANONICAL_TOKENS)
    rows = model.embedding.shape[0]
    held = [i for i in _PRIORITY if ids.get(CANONICAL_TOKENS[i], rows) < rows]
    present = [(i, ids[CANONICAL_TOKENS[i]]) for i in sorted(held[:SKETCH_TOKENS])]
    if len(present) < MIN_SHARED:
        return None
    x = model.embedding.rows([j for _, j in present])
    count = len(model.layers)
    chosen = sorted({round(v) for v in np.linspace(0, count - 1, min(SKETCH_LAYERS, count))})
    stacks: dict[str, list[Floats]] = {name: [] for name in _TERMS}
    n = len(present)

    def layer_terms(index: int) -> dict[str, Floats]:
        layer = model.layers[index]
        loaded = {r: layer[r].load() for r in (Role.Q, Role.K, Role.V, Role.O) if r in layer}
        return attention_terms(x, loaded, model.heads, model.kv_heads)

    # Layers on two threads: reading, decoding and the products release the GIL.
    with ThreadPoolExecutor(2, thread_name_prefix="kaiyuan-sketch") as pool:
        for terms in pool.map(layer_terms, chosen):
            for name in _TERMS:
                if name in terms:
                    stacks[name].append(terms[name].reshape(n, n))
    found = {name: np.stack(v) for name, v in stacks.items() if v}
    if not found:
        return None
    return Sketch(np.asarray([i for i, _ in present], dtype=np.int64), found)


def similarity(a: Sketch, b: Sketch) -> float:
    """Best layer-to-layer correlation of the terms on the tokens both sketches hold."""
    shared, in_a, in_b = np.intersect1d(a.tokens, b.tokens, return_indices=True)
    if len(shared) < MIN_SHARED:
        return 0.0
    scores = []
    for name in a.terms.keys() & b.terms.keys():
        left = _standardised_rows(a.terms[name][:, in_a][:, :, in_a])
        right = _standardised_rows(b.terms[name][:, in_b][:, :, in_b])
        scores.append(float((left @ right.T).max()))
    return float(np.mean(scores)) if scores else 0.0


def _standardised_rows(terms: Floats) -> Floats:
    flat = terms.reshape(terms.shape[0], -1).astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return as_floats(flat / np.where(norms > 0, norms, 1.0))
