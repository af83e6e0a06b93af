"""The curation pipeline's parts: config parsing, the record reader, near-dup detection, stages."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.curation import stages
from kaiyuan.services.curation.config import DEFAULT_CONFIG, parse_config
from kaiyuan.services.curation.engines import LocalEngine
from kaiyuan.services.curation.neardup import MinHashParams, cluster, signatures
from kaiyuan.services.curation.pipeline import SourceFile, curate
from kaiyuan.services.curation.records import read_records
from tests.support.corpus import CorpusBuilder

CHECKERS = stages.checkers()


# --- config ------------------------------------------------------------------------------------
def test_the_default_config_is_valid_and_its_hash_is_stable() -> None:
    first = parse_config(None, CHECKERS)
    again = parse_config(json.dumps(DEFAULT_CONFIG), CHECKERS)
    assert [s.name for s in first.stages] == [next(iter(s)) for s in DEFAULT_CONFIG["stages"]]
    assert first.hash == again.hash
    changed = parse_config("stages: [{near_dedup: {threshold: 0.9}}]", CHECKERS)
    assert changed.hash != first.hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "mapping"),
        ("stages: {a: 1}", "stages"),
        ("stages: [{nope: {}}]", "unknown stage"),
        ("stages: [{normalize: {form: NFD}}]", "form"),
        ("stages: [{normalize: {bogus: 1}}]", "unknown option"),
        ("stages: [{langid: {min_score: 2}}]", "min_score"),
        ("stages: [{langid: {keep: zh}}]", "keep"),
        ("stages: [{chinese: {convert: s2t}}]", "convert"),
        ("stages: [{near_dedup: {bands: 0}}]", "bands"),
        ("stages: [{near_dedup: {bands: 64, rows: 64}}]", "1024"),
        ("stages: [{near_dedup: {threshold: true}}]", "threshold"),
        ("stages: [{quality: {overrides: {zh: {min_chars: -1}}}}]", "quality"),
        ("stages: [{quality: {overrides: {zh: {nonsense: 1}}}}]", "quality"),
        ("stages: [{pii: {kinds: [ssn]}}]", "kinds"),
        ("stages: [{domains: {classifier: bert}}]", "classifier"),
        ("stages: [{a: 1, b: 2}]", "one-key"),
        ("output: {path: ../up}", "path"),
        ("output: {shard_rows: 0}", "shard_rows"),
        ("output: {branch: 'a..b'}", "branch"),
        ("inputs: []", "inputs"),
        ("surprise: 1", "unknown key"),
        ("version: 2", "version"),
        ("a: [unclosed", "YAML"),
        ("x" * 70_000, "larger"),
        ("!!python/object/apply:os.system ['true']", "YAML"),
    ],
)
def test_a_bad_config_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_config(text, CHECKERS)
    assert message.lower() in caught.value.message.lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_config_text_is_parsed_or_refused_cleanly(text: str) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_config(text, CHECKERS)


# --- reader ------------------------------------------------------------------------------------
def test_the_reader_reads_json_lines_text_and_parquet(tmp_path: Path) -> None:
    lines = b'{"text": "one"}\n\n{"text": "\xe4\xba\x8c", "id": 2}\n'
    assert list(read_records("a.jsonl", io.BytesIO(lines))) == [(0, "one"), (1, "二")]
    assert list(read_records("a.txt", io.BytesIO(b"x\n\ny\r\n"))) == [(0, "x"), (1, "y")]
    target = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["p", "q"], "n": [1, 2]}), target, row_group_size=1)
    with target.open("rb") as handle:
        assert list(read_records("a.parquet", handle)) == [(0, "p"), (1, "q")]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.jsonl", b"[1]\n"),
        ("a.jsonl", b'{"text": 5}\n'),
        ("a.jsonl", b"{" * 100_000 + b"\n"),
        ("a.txt", b"\xc3\x28"),
        ("a.parquet", b"PAR1garbagePAR1"),
        ("a.jsonl", b'{"text": "\\ud800"}\n'),  # a lone surrogate is not text
        ("a.jsonl", b'{"text": "x", "n": ' + b"1" * 5000 + b"}\n"),  # too long to convert
        ("a.csv", b"text\nx\n"),
    ],
)
def test_a_malformed_file_is_refused(name: str, content: bytes) -> None:
    with pytest.raises(InvalidInputError):
        list(read_records(name, io.BytesIO(content)))


def test_a_parquet_file_without_a_string_text_column_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), target)
    with target.open("rb") as handle, pytest.raises(InvalidInputError, match="string column"):
        list(read_records("a.parquet", handle))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["a.jsonl", "a.txt", "a.parquet"]))
def test_any_bytes_are_read_or_refused_cleanly(content: bytes, name: str) -> None:
    with contextlib.suppress(InvalidInputError):
        list(read_records(name, io.BytesIO(content)))


# --- near-duplicates ---------------------------------------------------------------------------
def test_chinese_near_duplicates_are_found_by_character_shingles() -> None:
    builder = CorpusBuilder(seed=3)
    originals = [builder.zh() for _ in range(50)]
    copies = [builder.near_zh(text) for text in originals[:10]]
    texts = originals + copies
    sigs = signatures(texts, ["zh"] * len(texts), MinHashParams())
    removed = cluster(sigs, MinHashParams())
    assert removed.kept_as.tolist() == list(range(50)) + list(range(10))
    # Taken as words (no spaces to split on), the same Chinese texts share nothing.
    as_words = cluster(signatures(texts, ["en"] * len(texts), MinHashParams()), MinHashParams())
    assert not as_words.removed.any()


def test_signatures_do_not_depend_on_how_records_are_batched() -> None:
    builder = CorpusBuilder(seed=5)
    texts = [builder.en() if i % 2 else builder.zh() for i in range(40)]
    langs = ["en" if i % 2 else "zh" for i in range(40)]
    whole = signatures(texts, langs, MinHashParams())
    parts = np.concatenate(
        [signatures(texts[i : i + 7], langs[i : i + 7], MinHashParams()) for i in range(0, 40, 7)]
    )
    assert np.array_equal(whole, parts)


def test_texts_without_words_never_cluster_together() -> None:
    texts = ["!!!", "...", "", "？？"]
    result = cluster(signatures(texts, ["en"] * 4, MinHashParams()), MinHashParams())
    assert not result.removed.any()


def test_a_cluster_keeps_its_earliest_record() -> None:
    rng = random.Random(1)
    words = [f"w{i}" for i in range(500)]
    base = " ".join(rng.choices(words, k=120))
    edited = base.replace(base.split()[60], "changed", 1)
    texts = ["unrelated " + " ".join(rng.choices(words, k=80)), edited, base]
    result = cluster(signatures(texts, ["en"] * 3, MinHashParams()), MinHashParams())
    assert result.kept_as.tolist() == [0, 1, 1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=20))
def test_any_texts_get_signatures(texts: list[str]) -> None:
    sigs = signatures(texts, ["zh"] * len(texts), MinHashParams(bands=4, rows=2))
    assert sigs.shape == (len(texts), 8)
    cluster(sigs, MinHashParams(bands=4, rows=2))


# --- the driver --------------------------------------------------------------------------------
def test_one_process_and_a_pool_give_the_same_result() -> None:
    builder = CorpusBuilder(seed=11)
    rows = [builder.zh() for _ in range(30)] + [builder.en() for _ in range(30)]
    rows += rows[:5]
    data = "".join(json.dumps({"text": r}, ensure_ascii=False) + "\n" for r in rows).encode()
    source = SourceFile("contributions/a/1/x.jsonl", "", len(data), "a", "u", "mit", 1)
    config = parse_config(None, CHECKERS)
    results = [
        curate(config, [source], lambda _: io.BytesIO(data), LocalEngine(n), lambda *_: None, 16)
        for n in (1, 2)
    ]
    assert results[0].kept.equals(results[1].kept)
    assert results[0].removed.equals(results[1].removed)
    assert results[0].report["stages"]["exact_dedup"]["removed"] == 5


def test_normalisation_keeps_chinese_punctuation_and_folds_full_width_letters() -> None:
    columns = {
        "text": ["你好，世界！ＡＢＣ１２３\u200b  x\r\ny"],
        stages.REMOVED: [""],
        stages.REASON: [""],
    }
    stages.stage("normalize").apply(columns, [0], stages.stage("normalize").check({}))
    assert columns["text"] == ["你好，世界！ABC123 x\ny"]


def test_traditional_chinese_is_converted_but_japanese_is_not() -> None:
    columns = {
        "text": ["這是繁體中文的句子", "這是繁體中文的句子", "漢字"],
        "lang": ["zh", "ja", None],
        stages.REMOVED: ["", "", ""],
        stages.REASON: ["", "", ""],
    }
    stages.stage("chinese").apply(columns, [0, 1, 2], stages.stage("chinese").check({}))
    assert columns["text"] == ["这是繁体中文的句子", "這是繁體中文的句子", "汉字"]


def test_a_parquet_file_that_decodes_to_far_more_than_its_size_is_refused() -> None:
    bomb = io.BytesIO()
    pq.write_table(pa.table({"text": ["x" * 1_000_000] * 300}), bomb, compression="zstd")
    assert bomb.tell() < 10_000
    bomb.seek(0)
    with pytest.raises(InvalidInputError, match="decodes"):
        list(read_records("a.parquet", bomb))


def test_the_hubs_own_output_is_never_an_input() -> None:
    config = parse_config("inputs: ['**']", CHECKERS)
    assert config.selects("contributions/a/1/x.jsonl")
    assert not config.selects("data/part-00000.parquet")
    assert not config.selects("curation/removed.parquet")


def test_chinese_language_codes_in_any_spelling_get_character_shingles() -> None:
    builder = CorpusBuilder(seed=9)
    text = builder.zh()
    copy = builder.near_zh(text)
    for lang in ("zh-Hans", "zh_CN", "ZH", "cmn"):
        result = cluster(signatures([text, copy], [lang, lang], MinHashParams()), MinHashParams())
        assert result.kept_as.tolist() == [0, 0], lang
