"""Terms of a transformer layer that no function-preserving change of basis can alter.

For token embedding rows X, the attention scores `X Wqᵀ Wk Xᵀ` and the value-output map
`X Wvᵀ Woᵀ Xᵀ` are unchanged by any orthogonal transform of the residual stream (the rotation
that defeats a permutation matching), by permuting heads or units inside a head, and by
scaling q against k or v against o (HuRef, Zeng et al. 2024). They are token x token, so models
of different widths compare directly on the tokens they share. Standardised (zero mean, unit
norm), the dot product of two terms is their Pearson correlation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kaiyuan.services.provenance.layout import Role
from kaiyuan.services.provenance.source import Floats, as_floats


def attention_terms(
    tokens: Floats,
    layer: Mapping[Role, Floats],
    heads: int | None,
    kv_heads: int | None,
) -> dict[str, Floats]:
    """The standardised invariant terms this layer's matrices allow (`qk`, `vo`)."""
    x = tokens.astype(np.float32, copy=False)
    width = x.shape[1]
    terms: dict[str, Floats] = {}
    q, k, v, o = (layer.get(r) for r in (Role.Q, Role.K, Role.V, Role.O))
    if q is not None and k is not None and q.shape[1] == width == k.shape[1]:
        keys = _expanded(x @ k.T, heads, kv_heads)  # projected first: kv_heads/heads the work
        if keys is not None and keys.shape[1] == q.shape[0]:
            terms["qk"] = standardised(as_floats((x @ q.T) @ keys.T))
    if v is not None and o is not None and v.shape[1] == width == o.shape[0]:
        values = _expanded(x @ v.T, heads, kv_heads)
        if values is not None and values.shape[1] == o.shape[1]:
            terms["vo"] = standardised(as_floats(values @ (x @ o).T))
    return terms


def standardised(term: Floats) -> Floats:
    """The term flattened, centred and scaled to unit norm (zeros if constant)."""
    flat = term.astype(np.float64).ravel()
    flat = flat - flat.mean()
    norm = float(np.linalg.norm(flat))
    return as_floats(flat / norm if norm > 0 else flat)


def correlation(a: Floats, b: Floats) -> float:
    """Pearson correlation of two standardised terms of the same tokens."""
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


def _expanded(projected: Floats, heads: int | None, kv_heads: int | None) -> Floats | None:
    """Tokens' K or V projections, each head's columns repeated for the query heads sharing it.

    (Grouped-query attention; projecting first costs kv_heads/heads of expanding the matrix.)
    """
    if not heads or not kv_heads or heads == kv_heads:
        return projected
    if heads % kv_heads or projected.shape[1] % kv_heads:
        return None
    n, head_dim = projected.shape[0], projected.shape[1] // kv_heads
    groups = projected.reshape(n, kv_heads, head_dim)
    return np.repeat(groups, heads // kv_heads, axis=1).reshape(n, -1)
