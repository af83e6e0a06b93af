"""Unbiased linear CKA between weight matrices whose rows are the same (aligned) samples.

Linear CKA compares the Gram matrices of two feature sets, so it ignores any orthogonal change
of the features (a permutation of heads or neurons, a rotation) and any overall scale. The
plain estimator is biased upwards when there are few samples compared with features (hundreds
of hidden dimensions against thousands of outputs): unrelated random matrices score far from 0.
The unbiased form (U-centred Grams, Song et al. 2012) centres the null on 0, which is what lets
one threshold hold across model sizes. With U-centring, CKA is the cosine between the two
U-centred Grams, so a whole layer x layer grid is one matrix product of unit vectors.
"""

from __future__ import annotations

import numpy as np

from kaiyuan.services.provenance.source import Floats, as_floats

_MIN_SAMPLES = 4  # U-centring divides by n - 3


def u_centred_unit(features: Floats) -> Floats:
    """The U-centred Gram of `features` (samples x features), flattened to a unit vector.

    A zero vector when the Gram is degenerate (all-zero weights), so it scores 0 with anything.
    """
    n = features.shape[0]
    if n < _MIN_SAMPLES:
        raise ValueError(f"unbiased CKA needs at least {_MIN_SAMPLES} samples, got {n}")
    x = features.astype(np.float64, copy=False)
    gram = x @ x.T
    np.fill_diagonal(gram, 0.0)
    rows = gram.sum(axis=1)
    total = rows.sum()
    centred = gram - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + total / ((n - 1) * (n - 2))
    np.fill_diagonal(centred, 0.0)
    flat = centred.ravel()
    norm = float(np.linalg.norm(flat))
    unit = flat / norm if norm > 0 else np.zeros_like(flat)
    return as_floats(unit)


def grid(left: Floats, right: Floats) -> Floats:
    """CKA of every left row against every right row (each a `u_centred_unit` vector).

    A few dozen rows by a quarter of a million columns is the shape multithreaded BLAS handles
    worst: on a busy two-core machine it took seconds where a plain loop takes a tenth of one,
    so the products are summed without BLAS.
    """
    return as_floats(np.einsum("ik,jk->ij", left, right, optimize=False))


def permuted(units: Floats, order: np.ndarray, n: int) -> Floats:
    """The same U-centred Grams with their samples reordered: a draw from the null.

    Reordering samples commutes with U-centring, so the null needs no new Gram matrices.
    """
    flat_order = (order[:, None] * n + order[None, :]).ravel()
    return as_floats(np.take(units, flat_order, axis=1))
