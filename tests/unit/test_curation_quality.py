# Chinese text is written with full-width punctuation
"""Document quality heuristics and the keyword domain classifier of the curation services."""

from __future__ import annotations

import math
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiyuan.services.curation.domains import DOMAINS, KeywordDomainClassifier
from kaiyuan.services.curation.quality import (
    DEFAULT_THRESHOLDS,
    QualitySignals,
    QualityThresholds,
    judge,
    measure,
    thresholds_for,
)

ZH_NEWS = (
    "新华社北京3月5日电 国务院总理在政府工作报告中指出，今年国内生产总值增长预期目标为5%左右。"
    "报告强调，要坚持稳中求进工作总基调，推动经济实现质的有效提升和量的合理增长。"
)
ZH_ENCYCLOPEDIA = "长城是中国古代的军事防御工程，总长度超过两万公里。"
EN_ENCYCLOPEDIA = (
    "The Great Wall of China is a series of fortifications built across the historical northern "
    "borders of ancient Chinese states. Several walls were built from as early as the 7th "
    "century BC."
)
EN_NEWS = "Shares rose 3.2% on Tuesday after the company reported strong quarterly earnings."


def verdict(text: str, lang: str) -> str | None:
    return judge(measure(text, lang), thresholds_for(lang))


# --- quality: ordinary documents pass ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        (ZH_NEWS, "zh"),
        (ZH_ENCYCLOPEDIA, "zh"),
        (EN_ENCYCLOPEDIA, "en"),
        (EN_NEWS, "en"),
        (ZH_NEWS, "zh-CN"),
        (EN_NEWS, "en_US"),
        (
            "La Gran Muralla China es una antigua fortificación construida entre los siglos V a. C. y XVI.",
            "es",
        ),
        ("भारत एक विशाल देश है जिसकी संस्कृति बहुत पुरानी और समृद्ध है।", "hi"),
        # Figures, a repeated name and list markup are ordinary too.
        (
            "2023年，公司实现营业收入1,234.56亿元，同比增长12.3%；净利润456.78亿元，同比增长8.9%。",
            "zh",
        ),
        ("中华人民共和国国务院今天发布通知。中华人民共和国国务院要求各地认真落实。", "zh"),
        ("In 2023, revenue was $1.2 billion, up 12% year over year; net income rose 8.9%.", "en"),
        ("# Title\n\n- item one is here\n- item two is here\n- item three is here", "en"),
    ],
)
def test_ordinary_paragraphs_pass(text: str, lang: str) -> None:
    assert verdict(text, lang) is None


def test_signals_of_an_ordinary_english_paragraph() -> None:
    signals = measure(EN_ENCYCLOPEDIA, "en")
    assert signals.chars == len(EN_ENCYCLOPEDIA)
    assert signals.words == 32
    assert signals.symbol_ratio == 0.0
    assert signals.repeated_line_ratio == 0.0
    assert signals.char_repetition == 0.0
    assert signals.letter_ratio > 0.9
    assert 4 < signals.mean_word_length < 6


# --- quality: junk fails with the expected rule ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "rule"),
    [
        ("abc", "en", "too_short"),
        ("好的。", "zh", "too_short"),
        ("!!!!!!!!!!!", "en", "too_short"),
        ("!!!!!!!!!!!", "zh", "too_short"),
        ("#### $$$$ %%%%", "en", "too_short"),
        ("   \n\t  ", "en", "too_short"),
        ("Supercalifragilistic antidisestablishment", "en", "too_few_words"),
        ("#### @@@@ {{{{ }}}} |||| <<<< >>>> ~~~~ ^^^^ hello world foo bar baz", "en", "symbols"),
        ("★★★★★ 好评如潮 ★★★★★ 全场包邮 ★★★★★ 限时秒杀 ★★★★★", "zh", "symbols"),
        ("Buy cheap watches online now\n" * 10, "en", "repeated_lines"),
        ("欢迎光临本店，全场商品五折优惠\n" * 10, "zh", "repeated_lines"),
        ("点击这里" * 20, "zh", "repetition"),
        ("click here to win " * 12, "en", "repetition"),
        ("12 345 6789 1011 121314 15161718 19 2021 2223 242526 27282930 31", "en", "few_letters"),
        (
            "2023 年 1 月 2 日 3 时 4 分 5 秒 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
            "zh",
            "few_letters",
        ),
    ],
)
def test_junk_fails_with_the_expected_rule(text: str, lang: str, rule: str) -> None:
    assert verdict(text, lang) == rule


def test_gibberish_words_fail_on_word_length() -> None:
    repeated = " ".join(["x" * 40] * 8)
    signals = measure(repeated, "en")
    assert signals.words == 8
    assert signals.mean_word_length == 40
    assert judge(signals, thresholds_for("en")) == "word_length"
    # Distinct 40-letter "words" fail the same way.
    alphabet = string.ascii_lowercase
    distinct = " ".join(((alphabet[i:] + alphabet[:i]) * 2)[:40] for i in range(0, 12, 2))
    assert measure(distinct, "en").char_repetition == 0.0
    assert verdict(distinct, "en") == "word_length"
    # One such word alone is, first of all, too few words.
    assert verdict("x" * 40, "en") == "too_few_words"
    # The English word-length bounds do not apply to Chinese or the fallback.
    assert verdict("长城是中国古代的军事防御工程，总长度超过两万公里。", "zh") is None


def test_too_short_words_fail_on_word_length() -> None:
    assert verdict("a b c d e f g h i j k l m n o p q r s t u v w x y z", "en") == "word_length"


def test_too_long_is_checked_against_max_chars() -> None:
    thresholds = thresholds_for("en", {"en": {"max_chars": 50}})
    assert judge(measure(EN_ENCYCLOPEDIA, "en"), thresholds) == "too_long"


def test_repeated_lines_and_repetition_signals() -> None:
    signals = measure("same line\n" * 10, "en")
    assert signals.repeated_line_ratio == pytest.approx(0.9)
    clicks = measure("点击这里" * 20, "zh")
    assert 0.5 < clicks.char_repetition <= 1.0
    # The same text read as English has no word n-grams to repeat: one long "word".
    assert measure("点击这里" * 20, "en").words == 80


def test_chinese_words_are_han_characters_plus_latin_words() -> None:
    signals = measure("我们使用Python和Rust编写代码。", "zh")
    # 我们使用 (4) + 和 (1) + 编写代码 (4) Han characters, plus Python and Rust.
    assert signals.words == 11
    assert measure(ZH_ENCYCLOPEDIA, "zh").words == 23
    assert measure("长城 是 中国 古代 的 军事 防御 工程", "zh").words == 14
    # Spaces do not count as characters of the text for the ratios.
    assert measure("长城 是 中国 古代 的 军事 防御 工程", "zh").letter_ratio == 1.0


def test_judge_reports_the_first_failed_rule_in_order() -> None:
    signals = QualitySignals(
        chars=3,
        words=0,
        symbol_ratio=1.0,
        repeated_line_ratio=1.0,
        char_repetition=1.0,
        letter_ratio=0.0,
        mean_word_length=0.0,
    )
    assert judge(signals, DEFAULT_THRESHOLDS["en"]) == "too_short"
    good = measure(EN_NEWS, "en")
    assert judge(good, DEFAULT_THRESHOLDS["en"]) is None


# --- quality: thresholds and overrides -----------------------------------------------------------


def test_thresholds_defaults_and_fallback() -> None:
    assert set(DEFAULT_THRESHOLDS) == {"zh", "en", "*"}
    assert thresholds_for("zh") == DEFAULT_THRESHOLDS["zh"]
    assert thresholds_for("zh-Hant") == DEFAULT_THRESHOLDS["zh"]
    assert thresholds_for("EN") == DEFAULT_THRESHOLDS["en"]
    assert thresholds_for("fr") == DEFAULT_THRESHOLDS["*"]
    assert thresholds_for("") == DEFAULT_THRESHOLDS["*"]


def test_thresholds_overrides_apply_per_language() -> None:
    overrides: dict[str, dict[str, float]] = {
        "zh": {"min_chars": 50, "max_symbol_ratio": 0.2},
        "*": {"min_words": 7},
    }
    zh = thresholds_for("zh", overrides)
    assert zh.min_chars == 50
    assert isinstance(zh.min_chars, int)
    assert zh.max_symbol_ratio == 0.2
    assert zh.min_words == DEFAULT_THRESHOLDS["zh"].min_words
    assert thresholds_for("en", overrides) == DEFAULT_THRESHOLDS["en"]
    assert thresholds_for("fr", overrides).min_words == 7
    # A language's own entry goes on top of the "*" entry.
    assert thresholds_for("fr", {**overrides, "fr": {"min_words": 9}}).min_words == 9
    assert thresholds_for("en", {"en": {"min_chars": 10.0}}).min_chars == 10
    # The defaults are not changed by overrides.
    assert DEFAULT_THRESHOLDS["zh"].min_chars == 20
    # The override lets a short document through.
    assert verdict("Hi.", "en") == "too_short"
    relaxed = thresholds_for("en", {"en": {"min_chars": 0, "min_words": 0}})
    assert judge(measure("Hi there.", "en"), relaxed) is None


@pytest.mark.parametrize(
    "values",
    [
        {"min_charz": 10},
        {"min_chars": -1},
        {"max_symbol_ratio": float("nan")},
        {"max_symbol_ratio": float("inf")},
        {"min_chars": True},
        {"max_symbol_ratio": False},
        {"min_chars": 10.5},
        {"min_chars": "10"},
    ],
)
def test_bad_overrides_raise(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(values))):
        thresholds_for("en", {"en": values})
    # Every entry is validated, not only the one for the language asked for.
    with pytest.raises(ValueError, match=next(iter(values))):
        thresholds_for("zh", {"en": values})


def test_overrides_must_be_mappings() -> None:
    with pytest.raises(ValueError, match="zh"):
        thresholds_for("en", {"zh": 5})  # type: ignore[dict-item]


def test_thresholds_are_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_THRESHOLDS["en"].min_chars = 1  # type: ignore[misc]
    assert isinstance(DEFAULT_THRESHOLDS["*"], QualityThresholds)


# --- domains ---------------------------------------------------------------------------------------

FINANCE_ZH = (
    "央行今天宣布下调贷款利率，股市应声上涨，银行股和证券股领涨，基金经理认为投资者信心增强。"
)
SPORTS_EN = (
    "The striker scored two goals as the club won the league championship, and the coach "
    "praised the players in front of a full stadium."
)
MEDICINE_ZH = "患者在医院接受治疗，医生诊断为糖尿病，需要长期服用药物控制症状。"


@pytest.mark.parametrize(
    ("text", "lang", "label"),
    [
        (FINANCE_ZH, "zh", "finance"),
        (SPORTS_EN, "en", "sports"),
        (MEDICINE_ZH, "zh", "medicine"),
        ("我们用Python写了一个数据库服务器。", "zh", "computing"),
        ("INTEREST\n RATES rose as the Central  Bank met.", "en", "finance"),
    ],
)
def test_domain_of_obvious_texts(text: str, lang: str, label: str) -> None:
    got, confidence = KeywordDomainClassifier().classify(text, lang)
    assert got == label
    assert 0.5 < confidence <= 1.0


@pytest.mark.parametrize(
    ("text", "lang"),
    [("今天天气不错，我们去散步吧。", "zh"), ("Hello there, nice to meet you.", "en"), ("", "en")],
)
def test_neutral_text_is_other(text: str, lang: str) -> None:
    assert KeywordDomainClassifier().classify(text, lang) == ("other", 0.0)


def test_english_keywords_match_whole_words_only() -> None:
    classifier = KeywordDomainClassifier(min_hits=1)
    assert classifier.classify("The bankruptcy of a stockist.", "en") == ("other", 0.0)
    assert classifier.classify("The bank.", "en") == ("finance", 1.0)


def test_chinese_keywords_are_not_tried_for_english() -> None:
    assert KeywordDomainClassifier().classify(MEDICINE_ZH, "en") == ("other", 0.0)


def test_custom_lexicon_ties_and_min_hits() -> None:
    lexicon = {"sports": ["goal"], "finance": ["bank"], "gardening": ["rose"]}
    classifier = KeywordDomainClassifier(lexicon, min_hits=1)
    # A tie goes to the label listed first in DOMAINS (finance before sports).
    assert classifier.classify("goal bank", "en") == ("finance", 0.5)
    label, confidence = classifier.classify("rose rose goal", "en")
    assert label == "gardening"
    assert confidence == pytest.approx(2 / 3)
    assert KeywordDomainClassifier(lexicon, min_hits=3).classify("goal bank", "en") == (
        "other",
        0.0,
    )
    with pytest.raises(ValueError, match="min_hits"):
        KeywordDomainClassifier(min_hits=0)
    with pytest.raises(ValueError, match="other"):
        KeywordDomainClassifier({"other": ["x"]})


def test_domains_and_determinism() -> None:
    assert len(DOMAINS) == len(set(DOMAINS)) >= 12
    assert DOMAINS[-1] == "other"
    assert KeywordDomainClassifier.name == "keywords-v1"
    first = [
        KeywordDomainClassifier().classify(t, "zh") for t in (FINANCE_ZH, MEDICINE_ZH, ZH_NEWS)
    ]
    again = [
        KeywordDomainClassifier().classify(t, "zh") for t in (FINANCE_ZH, MEDICINE_ZH, ZH_NEWS)
    ]
    assert first == again
    assert measure(ZH_NEWS, "zh") == measure(ZH_NEWS, "zh")


# --- properties -------------------------------------------------------------------------------------

CLASSIFIER = KeywordDomainClassifier()
_pieces = st.sampled_from(
    ["点击这里", "股票", "bank ", "\n", " ", "#", "...", "é", "\u0301", "x" * 15]
)
_texts = st.one_of(st.text(max_size=400), st.lists(_pieces, max_size=60).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_texts, lang=st.sampled_from(["zh", "en", "fr", "ja", "", "ZH-cn", "*"]))
def test_measure_judge_classify_never_raise(text: str, lang: str) -> None:
    signals = measure(text, lang)
    for ratio in (
        signals.symbol_ratio,
        signals.repeated_line_ratio,
        signals.char_repetition,
        signals.letter_ratio,
    ):
        assert 0.0 <= ratio <= 1.0
        assert math.isfinite(ratio)
    assert signals.chars >= 0
    assert signals.words >= 0
    assert signals.mean_word_length >= 0
    rule = judge(signals, thresholds_for(lang))
    assert rule is None or rule in {
        "too_short",
        "too_long",
        "too_few_words",
        "symbols",
        "repeated_lines",
        "repetition",
        "few_letters",
        "word_length",
    }
    label, confidence = CLASSIFIER.classify(text, lang)
    assert label in DOMAINS
    assert 0.0 <= confidence <= 1.0
    assert (label == "other") == (confidence == 0.0)
