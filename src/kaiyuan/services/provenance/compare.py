"""Verifying a candidate pair: is model A derived from model B, as far as weights can tell.

1. Pair embedding rows through the tokens both vocabularies spell alike; align hidden dimensions
   (assignment and rotation, `alignment`).
2. For every layer of A against every layer of B, unbiased CKA of the query and key matrices
   with the aligned residual dimensions as samples (`cka`): a layer x layer grid, whose best
   match per layer is the layer map (removed, repeated or reordered layers show there).
3. The rotation-proof invariant terms (`invariants`) of A's last layers against their matches.
4. A null for each statistic from the same matrices with the alignment broken (samples or
   tokens shuffled): what this very pair of shapes scores by chance.

The score is the best statistic; it is judged against a fixed threshold set from the null levels
measured on independent models (docs/provenance.md) and against this pair's own null, whichever
is higher. Weights show relatedness, not direction: which model is the parent is for the caller
to decide (the hub uses publication order and declarations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance import cka
from kaiyuan.services.provenance.alignment import Alignment, align
from kaiyuan.services.provenance.invariants import attention_terms, correlation
from kaiyuan.services.provenance.layout import ModelLayout, Role
from kaiyuan.services.provenance.source import Floats, as_floats, one_blas_thread
from kaiyuan.services.provenance.vocab import shared_tokens

METHOD = "kaiyuan-weights-1"
THRESHOLD = 0.15  # above every independent pair measured, below every derivative (docs)
DERIVED_LEVEL = 0.6  # at or above: one model is a derivative of the other
MIN_SHARED_TOKENS = 64
MAX_ALIGN_TOKENS = 8192
MAX_SAMPLES = 512  # aligned hidden dimensions used as CKA samples
INVARIANT_TOKENS = 512
INVARIANT_LAYERS = 2  # HuRef uses the last two layers
NULL_DRAWS = 8
_CKA_ROLES = (Role.Q, Role.K)


class Relation(StrEnum):
    DERIVED = "derived"
    SHARES_ANCESTOR = "shares-ancestor"
    INDEPENDENT = "independent"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class MethodScore:
    value: float
    null_mean: float
    null_sd: float
    null_max: float


@dataclass(frozen=True, slots=True)
class LayerMatch:
    layer: int  # in A
    source: int  # best-matching layer of B
    score: float


@dataclass(frozen=True, slots=True)
class NearCopy:
    """Same-index matrices compared directly: how far a plain copy has drifted."""

    direct_cosine: float
    relative_noise: float  # |A - B| / min(|A|, |B|): the noise std over the weight std
    layers: int


@dataclass(frozen=True, slots=True)
class Comparison:
    score: float
    null_level: float
    threshold: float
    relation: Relation
    methods: dict[str, MethodScore]
    layer_map: tuple[LayerMatch, ...] = ()
    absent_layers: tuple[int, ...] = ()  # layers of B no layer of A matches
    repeated_layers: tuple[int, ...] = ()  # layers of B that several layers of A match
    shared_tokens: int = 0
    embedding_match: float = 0.0  # mean |corr| of assigned embedding columns (evidence only)
    near_copy: NearCopy | None = None
    notes: tuple[str, ...] = field(default=())
    method: str = METHOD

    def as_json(self) -> dict[str, object]:
        """The verdict and its evidence, as the API and `--json` print it."""
        near = self.near_copy
        return {
            "score": self.score,
            "null_level": self.null_level,
            "threshold": self.threshold,
            "relation": self.relation.value,
            "method": self.method,
            "methods": {
                name: {
                    "value": m.value,
                    "null_mean": m.null_mean,
                    "null_sd": m.null_sd,
                    "null_max": m.null_max,
                }
                for name, m in self.methods.items()
            },
            "layer_map": [[m.layer, m.source, round(m.score, 4)] for m in self.layer_map],
            "absent_layers": list(self.absent_layers),
            "repeated_layers": list(self.repeated_layers),
            "shared_tokens": self.shared_tokens,
            "embedding_match": self.embedding_match,
            "near_copy": (
                {
                    "direct_cosine": near.direct_cosine,
                    "relative_noise": near.relative_noise,
                    "layers": near.layers,
                }
                if near is not None
                else None
            ),
            "notes": list(self.notes),
        }


@one_blas_thread
def compare(a: ModelLayout, b: ModelLayout, *, seed: int = 0) -> Comparison:
    """How A's weights relate to B's (A is read as the possible derivative)."""
    rng = np.random.default_rng(seed)
    ids_a, ids_b, notes = _token_pairs(a, b)
    if len(ids_a) < MIN_SHARED_TOKENS:
        return _undetermined(len(ids_a), (*notes, "too few shared tokens to align the models"))
    rows_a, rows_b = a.embedding.rows(ids_a), b.embedding.rows(ids_b)
    alignment = align(rows_a, rows_b)
    samples = min(MAX_SAMPLES, len(alignment.b_dims))
    if samples < 8:  # noqa: PLR2004
        return _undetermined(len(ids_a), (*notes, "hidden width too small to compare"))
    chosen = np.sort(rng.choice(len(alignment.b_dims), size=samples, replace=False))

    assigned, rotated, units_b = _grams(a, b, alignment, chosen)
    grid_assigned = _mean_grid(assigned, units_b)
    grid_rotated = _mean_grid(rotated, units_b)
    methods = {
        "cka-assignment": _cka_score(grid_assigned, assigned, units_b, samples, rng),
        "cka-rotation": _cka_score(grid_rotated, rotated, units_b, samples, rng),
    }
    best_grid = (
        grid_assigned
        if _directional(grid_assigned) >= _directional(grid_rotated)
        else (grid_rotated)
    )
    sources = best_grid.argmax(axis=1)
    layer_map = tuple(LayerMatch(i, int(j), float(best_grid[i, j])) for i, j in enumerate(sources))
    invariant = _invariant_score(a, b, rows_a, rows_b, sources, rng)
    if invariant is not None:
        methods["invariants"] = invariant
    score = max(m.value for m in methods.values())
    null_level = max(max(m.null_max, m.null_mean + 3 * m.null_sd) for m in methods.values())
    threshold = max(THRESHOLD, 2 * null_level)
    relation = (
        Relation.INDEPENDENT
        if score < threshold
        else Relation.DERIVED
        if score >= DERIVED_LEVEL
        else Relation.SHARES_ANCESTOR
    )
    counts = np.bincount(sources, minlength=len(b.layers))
    related = relation is not Relation.INDEPENDENT
    return Comparison(
        score=round(score, 4),
        null_level=round(null_level, 4),
        threshold=round(threshold, 4),
        relation=relation,
        methods=methods,
        layer_map=layer_map,
        absent_layers=tuple(int(j) for j in np.flatnonzero(counts == 0)) if related else (),
        repeated_layers=tuple(int(j) for j in np.flatnonzero(counts > 1)) if related else (),
        shared_tokens=len(ids_a),
        embedding_match=round(alignment.assignment_score, 4),
        near_copy=_near_copy(a, b, alignment) if related else None,
        notes=notes,
    )


def _token_pairs(a: ModelLayout, b: ModelLayout) -> tuple[list[int], list[int], tuple[str, ...]]:
    rows_a, rows_b = a.embedding.shape[0], b.embedding.shape[0]
    if a.vocabulary is not None and b.vocabulary is not None:
        pairs = [
            (i, j)
            for i, j in shared_tokens(a.vocabulary, b.vocabulary)
            if i < rows_a and j < rows_b
        ]
        notes: tuple[str, ...] = ()
    elif rows_a == rows_b:
        order = np.random.default_rng(0).permutation(rows_a)
        pairs = [(int(i), int(i)) for i in order]
        notes = ("no vocabulary for one model: embedding rows paired by token id",)
    else:
        raise InvalidInputError(
            "cannot align the models: one has no vocabulary and their vocabulary sizes differ"
        )
    pairs = pairs[:MAX_ALIGN_TOKENS]
    return [i for i, _ in pairs], [j for _, j in pairs], notes


def _grams(
    a: ModelLayout, b: ModelLayout, alignment: Alignment, chosen: np.ndarray
) -> tuple[dict[Role, Floats], dict[Role, Floats], dict[Role, Floats]]:
    """U-centred Grams per layer and role: A assigned, A rotated, and B, as stacked rows."""
    dims_a, dims_b = alignment.a_dims[chosen], alignment.b_dims[chosen]
    signs = alignment.signs[chosen]
    carry = alignment.rotation[:, dims_b]
    assigned: dict[Role, list[Floats]] = {r: [] for r in _CKA_ROLES}
    rotated: dict[Role, list[Floats]] = {r: [] for r in _CKA_ROLES}
    units_b: dict[Role, list[Floats]] = {r: [] for r in _CKA_ROLES}
    n = len(chosen)
    for layer in a.layers:
        for role in _CKA_ROLES:
            matrix = layer.get(role)
            if matrix is None or matrix.shape[1] != a.width:
                assigned[role].append(np.zeros(n * n, np.float32))
                rotated[role].append(np.zeros(n * n, np.float32))
                continue
            w = matrix.load()
            assigned[role].append(cka.u_centred_unit((w[:, dims_a] * signs).T))
            rotated[role].append(cka.u_centred_unit((w @ carry).T))
    for layer in b.layers:
        for role in _CKA_ROLES:
            matrix = layer.get(role)
            if matrix is None or matrix.shape[1] != b.width:
                units_b[role].append(np.zeros(n * n, np.float32))
                continue
            units_b[role].append(cka.u_centred_unit(matrix.load()[:, dims_b].T))
    return (
        {r: np.stack(v) for r, v in assigned.items()},
        {r: np.stack(v) for r, v in rotated.items()},
        {r: np.stack(v) for r, v in units_b.items()},
    )


def _mean_grid(units_a: dict[Role, Floats], units_b: dict[Role, Floats]) -> Floats:
    grids = [cka.grid(units_a[r], units_b[r]) for r in _CKA_ROLES]
    return as_floats(np.mean(grids, axis=0))


def _directional(grid: Floats) -> float:
    """Each layer of A scored by its best match in B, averaged; and the same from B's side."""
    return float(max(grid.max(axis=1).mean(), grid.max(axis=0).mean()))


def _cka_score(
    grid: Floats,
    units_a: dict[Role, Floats],
    units_b: dict[Role, Floats],
    n: int,
    rng: np.random.Generator,
) -> MethodScore:
    draws = []
    for _ in range(NULL_DRAWS):
        order = rng.permutation(n)
        shuffled = {r: cka.permuted(units_a[r], order, n) for r in _CKA_ROLES}
        draws.append(_directional(_mean_grid(shuffled, units_b)))
    return _method(_directional(grid), draws)


def _invariant_score(
    a: ModelLayout,
    b: ModelLayout,
    rows_a: Floats,
    rows_b: Floats,
    sources: np.ndarray,
    rng: np.random.Generator,
) -> MethodScore | None:
    tokens = min(INVARIANT_TOKENS, rows_a.shape[0])
    x_a, x_b = rows_a[:tokens], rows_b[:tokens]
    values: list[float] = []
    draws: list[list[float]] = [[] for _ in range(NULL_DRAWS)]
    orders = [rng.permutation(tokens) for _ in range(NULL_DRAWS)]
    for i in range(max(0, len(a.layers) - INVARIANT_LAYERS), len(a.layers)):
        terms_a = attention_terms(x_a, _loaded(a, i), a.heads, a.kv_heads)
        terms_b = attention_terms(x_b, _loaded(b, int(sources[i])), b.heads, b.kv_heads)
        for name in terms_a.keys() & terms_b.keys():
            values.append(correlation(terms_a[name], terms_b[name]))
            square = terms_b[name].reshape(tokens, tokens)
            for draw, order in zip(draws, orders, strict=True):
                draw.append(correlation(terms_a[name], square[order][:, order].ravel()))
    if not values:
        return None
    return _method(float(np.mean(values)), [float(np.mean(d)) for d in draws])


def _loaded(model: ModelLayout, index: int) -> dict[Role, Floats]:
    layer = model.layers[index]
    return {role: layer[role].load() for role in (Role.Q, Role.K, Role.V, Role.O) if role in layer}


def _near_copy(a: ModelLayout, b: ModelLayout, alignment: Alignment) -> NearCopy | None:
    """Direct comparison of same-index query matrices, when the bases were not reordered."""
    if a.width != b.width or alignment.identity_share < 0.9:  # noqa: PLR2004
        return None
    cosines, noise = [], []
    count = min(len(a.layers), len(b.layers))
    for i in sorted({0, count // 3, 2 * count // 3, count - 1}):
        qa, qb = a.layers[i].get(Role.Q), b.layers[i].get(Role.Q)
        if qa is None or qb is None or qa.shape != qb.shape:
            continue
        wa, wb = qa.load().astype(np.float64), qb.load().astype(np.float64)
        norm_a, norm_b = np.linalg.norm(wa), np.linalg.norm(wb)
        if norm_a == 0 or norm_b == 0:
            continue
        cosines.append(float((wa * wb).sum() / (norm_a * norm_b)))
        # against the smaller of the two: the original, when one is the other plus noise
        noise.append(float(np.linalg.norm(wa - wb) / min(norm_a, norm_b)))
    if not cosines:
        return None
    return NearCopy(
        round(float(np.median(cosines)), 4), round(float(np.median(noise)), 4), len(cosines)
    )


def _method(value: float, draws: list[float]) -> MethodScore:
    null = np.asarray(draws, dtype=np.float64)
    return MethodScore(
        round(value, 4),
        round(float(null.mean()), 4),
        round(float(null.std()), 4),
        round(float(null.max()), 4),
    )


def _undetermined(shared: int, notes: tuple[str, ...]) -> Comparison:
    return Comparison(
        score=0.0,
        null_level=0.0,
        threshold=THRESHOLD,
        relation=Relation.UNDETERMINED,
        methods={},
        shared_tokens=shared,
        notes=notes,
    )
