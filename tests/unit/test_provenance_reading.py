"""How a fingerprint reads: mapped windows, tensor digests, and vocabularies looked up lazily.

The fast paths (a file mapped a window at a time, tokens normalised in bulk, a few texts found
without normalising the vocabulary) must give exactly what the plain paths give.
"""

from __future__ import annotations

import json
import mmap
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance import source
from kaiyuan.services.provenance.fingerprint import DIGEST_PREFIX, _digests, fingerprint
from kaiyuan.services.provenance.model import open_local
from kaiyuan.services.provenance.safetensorsfile import read_safetensors
from kaiyuan.services.provenance.sketch import CANONICAL_TOKENS
from kaiyuan.services.provenance.source import LocalWeightFile, RangedWeightFile
from kaiyuan.services.provenance.vocab import (
    Vocabulary,
    from_tokens,
    normalise,
    normalise_all,
    spellings,
)
from tests.support.synthetic_models import parent, tokens, write

GRANULE = mmap.ALLOCATIONGRANULARITY


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> int:
    """Windows of a few granules and an odd tail, so ranges cross many window edges."""
    block = 3 * GRANULE + 17
    monkeypatch.setattr(source, "READ_BLOCK", block)
    return block


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = np.random.default_rng(3).integers(0, 256, 20 * GRANULE + 1234, np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


@pytest.mark.usefixtures("small_windows")
@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (1, 2), (GRANULE - 1, GRANULE + 1), (5, 7 * GRANULE + 3), (123, None), (0, 0)],
)
def test_mapped_stream_gives_exactly_the_bytes_of_the_range(
    data_file: tuple[Path, bytes], start: int, end: int | None
) -> None:
    path, data = data_file
    stop = len(data) if end is None else end
    pieces = list(LocalWeightFile(path).stream(start, stop))
    assert b"".join(bytes(p) for p in pieces) == data[start:stop]
    # Views held past the end of the stream stay readable (unmapped when they go).
    assert all(len(bytes(p)) == len(p) for p in pieces)


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (0, 10**9)])
def test_mapped_stream_refuses_ranges_outside_the_file(
    data_file: tuple[Path, bytes], start: int, end: int
) -> None:
    path, _ = data_file
    with pytest.raises(InvalidInputError):
        list(LocalWeightFile(path).stream(start, end))


def test_a_stream_abandoned_half_way_unmaps_its_windows(
    data_file: tuple[Path, bytes], small_windows: int
) -> None:
    path, data = data_file
    stream = LocalWeightFile(path).stream(0, len(data))
    first = next(stream)
    assert bytes(first) == data[:small_windows]
    stream.close()  # the generator's cleanup runs; the view we hold keeps its mapping alive
    assert bytes(first) == data[:small_windows]


@pytest.mark.usefixtures("small_windows")
def test_digests_are_the_same_mapped_or_streamed_and_name_their_algorithm(
    tmp_path: Path,
) -> None:
    folder = write(tmp_path / "model", parent())
    path = folder / "model.safetensors"
    data = path.read_bytes()
    mapped = read_safetensors(LocalWeightFile(path, "model.safetensors"))
    streamed = read_safetensors(
        RangedWeightFile("model.safetensors", len(data), lambda s, e: iter([data[s:e]]))
    )
    by_map = {d.name: d.digest for d in _digests(mapped)}
    assert by_map == {d.name: d.digest for d in _digests(streamed)}
    tensor = mapped.tensors[0]
    begin, end = tensor.byte_range
    assert by_map[tensor.name] == DIGEST_PREFIX + xxhash.xxh3_128(data[begin:end]).hexdigest()


def test_spellings_are_how_each_tokenizer_family_writes_a_text() -> None:
    assert spellings(" the", "bpe-bytes") == ("Ġthe",)
    assert spellings("\n\n", "bpe-bytes") == ("ĊĊ",)
    assert spellings(" the", "sentencepiece") == ("▁the",)
    assert spellings(" the", "wordpiece") == ("the",)
    assert spellings("ing", "wordpiece") == ("##ing",)
    assert spellings("[CLS]", "wordpiece") == ("##[CLS]", "[CLS]")
    assert spellings(" the", "plain") == (" the",)


_BYTE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).map(lambda t: unicodedata.normalize("NFC", t))


@settings(max_examples=300, deadline=None)
@given(_BYTE_TEXT)
def test_a_text_spelt_as_a_scheme_writes_it_normalises_back(text: str) -> None:
    for spelling in spellings(text, "bpe-bytes"):
        assert normalise(spelling, "bpe-bytes") == text
    if "▁" not in text:
        assert normalise(spellings(text, "sentencepiece")[0], "sentencepiece") == text
    if text.startswith(" ") and len(text) > 1 and not text[1:].startswith("##"):
        assert normalise(spellings(text, "wordpiece")[0], "wordpiece") == text


_SYMBOLS = "ĠĊĉâĢĻÃ©▁#[]"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.sampled_from(_SYMBOLS + "ab é中\x00"), max_size=8), max_size=30))
def test_normalising_in_bulk_equals_one_token_at_a_time(raw: list[str]) -> None:
    for scheme in ("bpe-bytes", "sentencepiece", "wordpiece", "plain"):
        assert normalise_all(raw, scheme) == tuple(normalise(t, scheme) for t in raw)


@pytest.mark.parametrize("scheme", ["bpe-bytes", "sentencepiece", "wordpiece"])
def test_finding_a_few_texts_agrees_with_the_whole_vocabulary(scheme: str) -> None:
    texts = [t for t in CANONICAL_TOKENS if not t.startswith("[")]
    spelt = [spellings(t, scheme)[0] for t in texts]
    filler = [f"x{i}" for i in range(500)]
    vocabulary = from_tokens([*filler[:250], *spelt[::2], *filler[250:], *spelt], scheme)
    lazy = Vocabulary(vocabulary.tokens, vocabulary.scheme).find(CANONICAL_TOKENS)
    assert lazy == {t: vocabulary.ids[t] for t in CANONICAL_TOKENS if t in vocabulary.ids}
    assert len(lazy) == len(texts)
    # Once the whole vocabulary is normalised, `find` answers from it.
    assert vocabulary.find(texts[:3]) == {t: vocabulary.ids[t] for t in texts[:3]}


def test_an_unreadable_tokenizer_fails_the_fingerprint_not_the_opening(tmp_path: Path) -> None:
    folder = write(tmp_path / "model", parent())
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": -1}}}))
    opened = open_local(folder)  # the tokenizer is parsed when first needed
    with pytest.raises(InvalidInputError, match="natural number"):
        fingerprint(opened)


def test_the_fingerprint_reads_the_tokenizer_once(tmp_path: Path) -> None:
    folder = write(tmp_path / "model", parent(), tokens())
    opened = open_local(folder)
    vocabulary = opened.layout.vocabulary
    assert vocabulary is not None
    result = fingerprint(opened)
    assert result.summary["vocabulary"] == len(tokens())
    assert result.sketch is not None
    assert vocabulary.tokens is vocabulary.tokens  # parsed once, kept
