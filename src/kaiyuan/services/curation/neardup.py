"""Near-duplicate detection: MinHash signatures, LSH banding, and clusters across all contributors.

Shingles are character n-grams for Chinese, Japanese and Korean (no spaces to split words on;
datatrove's word tokenizer silently yields no shingle for such text) and word n-grams for the
rest. Shingling and signatures are compiled with numba over one UTF-32 array per batch, so a
batch costs a few array passes instead of a Python call per shingle. Signatures are pure
functions of the text and the parameters: any engine, any batch split, the same bits.

Clusters come from LSH band collisions whose estimated Jaccard similarity (the share of equal
signature values) reaches the threshold; in each cluster the earliest document is kept.
"""

# ruff: noqa: PLR2004 - the compiled kernels compare code points with Unicode block bounds
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_MERSENNE_SEED = 0x9E3779B97F4A7C15
_EMPTY = np.uint32(0xFFFFFFFF)
# Languages written without spaces between words: shingled by characters.
CJK_LANGUAGES = frozenset(
    {"zh", "zho", "cmn", "yue", "wuu", "lzh", "ja", "jpn", "ko", "kor", "th", "lo", "km", "my"}
)


@dataclass(frozen=True, slots=True)
class MinHashParams:
    """How documents are shingled and compared; part of the pipeline config and its hash."""

    # 28 x 4 over 112 values: looser bands than datatrove's 14 x 8 (more candidates), because
    # every candidate pair is then checked against `threshold` (benchmarks/curation.py).
    bands: int = 28
    rows: int = 4
    word_ngram: int = 5
    char_ngram: int = 5
    threshold: float = 0.7
    seed: int = 1

    @property
    def permutations(self) -> int:
        return self.bands * self.rows

    def check(self) -> None:
        for name in ("bands", "rows", "word_ngram", "char_ngram"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"minhash {name} must be an integer from 1 to 64")
            if not 1 <= value <= 64:
                raise ValueError(f"minhash {name} must be an integer from 1 to 64")
        if self.permutations > 1024:
            raise ValueError("minhash bands x rows must be at most 1024")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise TypeError("minhash threshold must be a number")
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError("minhash threshold must be in (0, 1]")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError("minhash seed must be a non-negative integer")
        if self.seed < 0:
            raise ValueError("minhash seed must be a non-negative integer")


def _coefficients(params: MinHashParams) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Odd multipliers and offsets of the multiply-shift hash family, fixed by the seed."""
    rng = np.random.Generator(np.random.PCG64(params.seed))
    count = params.permutations
    mult = rng.integers(1, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    add = rng.integers(0, 2**63, size=count, dtype=np.uint64)
    return mult, add


@njit(cache=True, nogil=True, boundscheck=False)
def _is_word_char(c: int) -> bool:  # pragma: no cover - compiled
    if c < 128:
        return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
    # General punctuation, CJK symbols and punctuation, full-width forms' punctuation.
    if 0x2000 <= c <= 0x206F or 0x3000 <= c <= 0x303F:
        return False
    if 0xFF00 <= c <= 0xFF0F or 0xFF1A <= c <= 0xFF20 or 0xFF3B <= c <= 0xFF40:
        return False
    return not (0xFF5B <= c <= 0xFF65 or c in (0x00A0, 0x00B7, 0xFEFF))


@njit(cache=True, nogil=True, boundscheck=False)
def _mix(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    # splitmix64's finaliser: spreads polynomial hashes over all 64 bits.
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@njit(cache=True, nogil=True, boundscheck=False)
def _signatures(  # noqa: C901, PLR0912 - one compiled loop is the point
    codes: npt.NDArray[np.uint32],
    offsets: npt.NDArray[np.int64],
    char_mode: npt.NDArray[np.bool_],
    word_n: int,
    char_n: int,
    mult: npt.NDArray[np.uint64],
    add: npt.NDArray[np.uint64],
    out: npt.NDArray[np.uint32],
) -> None:  # pragma: no cover - compiled
    k = mult.shape[0]
    prime = np.uint64(0x100000001B3)
    for d in range(offsets.shape[0] - 1):
        start = offsets[d]
        end = offsets[d + 1]
        tokens = np.empty(end - start, dtype=np.uint64)
        count = 0
        if char_mode[d]:
            for i in range(start, end):
                c = codes[i]
                if _is_word_char(c):
                    if 65 <= c <= 90:
                        c += 32
                    tokens[count] = np.uint64(c)
                    count += 1
            n = char_n
        else:
            h = np.uint64(0)
            inside = False
            for i in range(start, end):
                c = codes[i]
                if _is_word_char(c):
                    if 65 <= c <= 90:
                        c += 32
                    h = h * prime + np.uint64(c) + np.uint64(1)
                    inside = True
                elif inside:
                    tokens[count] = _mix(h)
                    count += 1
                    h = np.uint64(0)
                    inside = False
            if inside:
                tokens[count] = _mix(h)
                count += 1
            n = word_n
        for j in range(k):
            out[d, j] = np.uint32(0xFFFFFFFF)
        if count == 0:
            continue
        grams = count - n + 1 if count >= n else 1
        width = min(n, count)
        for g in range(grams):
            s = np.uint64(0)
            for t in range(width):
                s = s * prime + tokens[g + t]
            s = _mix(s)
            for j in range(k):
                v = np.uint32((mult[j] * s + add[j]) >> np.uint64(32))
                out[d, j] = min(out[d, j], v)


def _base(lang: str) -> str:
    """`zh-Hans`, `zh_CN`, `ZH` -> `zh`."""
    return lang.replace("_", "-").split("-", 1)[0].lower()


def signatures(
    texts: Sequence[str], languages: Sequence[str], params: MinHashParams
) -> npt.NDArray[np.uint32]:
    """One MinHash signature row per text; a text without any word character gets all ones."""
    out = np.empty((len(texts), params.permutations), dtype=np.uint32)
    if not texts:
        return out
    joined = "".join(texts)
    # surrogatepass: a lone surrogate is a code point like any other here, not an error
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    char_mode = np.fromiter(
        (_base(lang) in CJK_LANGUAGES for lang in languages), dtype=np.bool_, count=len(texts)
    )
    mult, add = _coefficients(params)
    _signatures(codes, offsets, char_mode, params.word_ngram, params.char_ngram, mult, add, out)
    return out


@njit(cache=True, nogil=True, boundscheck=False)
def _band_keys(
    signatures: npt.NDArray[np.uint32], bands: int, rows: int, out: npt.NDArray[np.uint64]
) -> None:  # pragma: no cover - compiled
    for d in range(signatures.shape[0]):
        for b in range(bands):
            h = np.uint64(b + 1)
            for r in range(rows):
                h = h * np.uint64(0x100000001B3) + np.uint64(signatures[d, b * rows + r])
            out[b, d] = _mix(h)


@dataclass(frozen=True, slots=True)
class Clusters:
    """For each document, the index of the document kept in its place (itself when kept)."""

    kept_as: npt.NDArray[np.int64]

    @property
    def removed(self) -> npt.NDArray[np.bool_]:
        removed: npt.NDArray[np.bool_] = self.kept_as != np.arange(len(self.kept_as))
        return removed


def cluster(sigs: npt.NDArray[np.uint32], params: MinHashParams) -> Clusters:
    """Group near-duplicates; each group is represented by its earliest document."""
    count = sigs.shape[0]
    if count == 0:
        return Clusters(np.zeros(0, dtype=np.int64))
    keys = np.empty((params.bands, count), dtype=np.uint64)
    _band_keys(sigs, params.bands, params.rows, keys)
    empty = np.all(sigs == _EMPTY, axis=1)
    left: list[npt.NDArray[np.int64]] = []
    right: list[npt.NDArray[np.int64]] = []
    for band in keys:
        order = np.argsort(band, kind="stable")
        ordered = band[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        if same.size:
            # Each record in a bucket is checked against its neighbour and against the bucket's
            # first record, so one unrelated record sorted between two copies cannot part them.
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            first = starts[np.searchsorted(starts, same + 1, side="right") - 1]
            left += [order[same], order[first]]
            right += [order[same + 1], order[same + 1]]
    if not left:
        return Clusters(np.arange(count, dtype=np.int64))
    a = np.concatenate(left)
    b = np.concatenate(right)
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep_pair = low != high
    pairs = np.unique(low[keep_pair] * np.int64(count) + high[keep_pair])  # one key per pair
    a, b = pairs // count, pairs % count
    # Band collisions are candidates; keep those whose signatures agree often enough.
    similar = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), 65536):
        stop = start + 65536
        similar[start:stop] = np.mean(sigs[a[start:stop]] == sigs[b[start:stop]], axis=1)
    keep = (similar >= params.threshold) & ~empty[a] & ~empty[b]
    a, b = a[keep], b[keep]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, count, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(count, dtype=np.int64))
    return Clusters(first[labels])
