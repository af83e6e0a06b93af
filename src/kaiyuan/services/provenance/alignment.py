"""Pairing two models' hidden dimensions through the tokens both vocabularies hold.

A derivative may have its hidden units permuted, sign-flipped, rotated or rescaled without any
change in what it computes, so weights can only be compared after the two residual bases are
matched. The embedding rows of shared tokens give two views of one set of points: a linear
assignment on the absolute correlation of embedding columns recovers a permutation (with signs),
an orthogonal Procrustes fit recovers a rotation. Both are computed; each comparison reports what
each finds, since a rotation defeats the assignment and the Procrustes fit has a higher floor on
unrelated models (it fits width² parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from kaiyuan.services.provenance.source import Floats, as_floats

Indices = np.ndarray  # int64 index vectors


@dataclass(frozen=True, slots=True)
class Alignment:
    """How A's hidden dimensions map onto B's."""

    a_dims: Indices  # assignment: A dimension for each matched B dimension
    b_dims: Indices
    signs: Floats
    assignment_score: float  # mean |correlation| of the matched embedding columns
    rotation: Floats  # Procrustes: (width_a, width_b), A's basis carried into B's
    tokens: int  # shared tokens the alignment was computed from

    @property
    def identity_share(self) -> float:
        """The share of matched dimensions that kept their index and sign: a plain copy is 1."""
        same = (self.a_dims == self.b_dims) & (self.signs > 0)
        return float(same.mean()) if len(same) else 0.0


def align(rows_a: Floats, rows_b: Floats) -> Alignment:
    """Align the hidden dimensions of A and B from the embedding rows of the same tokens."""
    a = _centred(rows_a)
    b = _centred(rows_b)
    correlation = _unit_columns(a).T @ _unit_columns(b)
    a_dims, b_dims = linear_sum_assignment(np.abs(correlation), maximize=True)
    matched = correlation[a_dims, b_dims]
    signs = np.where(matched < 0, -1.0, 1.0).astype(np.float32)
    u, _, vt = np.linalg.svd(a.T.astype(np.float64) @ b.astype(np.float64), full_matrices=False)
    rotation = (u @ vt).astype(np.float32)
    return Alignment(
        a_dims=a_dims.astype(np.int64),
        b_dims=b_dims.astype(np.int64),
        signs=signs,
        assignment_score=float(np.abs(matched).mean()) if len(matched) else 0.0,
        rotation=rotation,
        tokens=rows_a.shape[0],
    )


def _centred(rows: Floats) -> Floats:
    rows = rows.astype(np.float32, copy=False)
    return as_floats(rows - rows.mean(axis=0, keepdims=True))


def _unit_columns(matrix: Floats) -> Floats:
    norms = np.linalg.norm(matrix, axis=0, keepdims=True)
    return as_floats(matrix / np.where(norms > 0, norms, 1.0))
