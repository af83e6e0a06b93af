"""Per-language document quality heuristics (Gopher/C4-style rules), fast enough for bulk curation.

`measure` turns a document into `QualitySignals`; `judge` compares them with `QualityThresholds`
and names the first rule that fails. Definitions used throughout:

- *characters*: the document after `str.strip()`;
- *non-space characters*: characters that are not Unicode whitespace;
- *words*: every Han character counts as one word, and so does every run of other word
  characters (letters, digits; `don't` is one word; combining marks are skipped). This makes
  Chinese, which is written without spaces, comparable with English;
- *letters*: alphabetic characters (Han included) and combining marks, so that Indic and Arabic
  scripts are not mistaken for punctuation.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """The limits one language's documents must keep to (see `judge`)."""

    min_chars: int
    max_chars: int
    min_words: int
    # Share of non-space characters that are symbols: anything but letters, digits, marks and
    # ordinary sentence punctuation (so #, …, |, {, }, <, >, @, ~, ^, *, _, emoji count).
    max_symbol_ratio: float
    # Share of non-empty lines that repeat an earlier line (compared after stripping).
    max_repeated_line_ratio: float
    # Share of the text covered by non-overlapping copies of its most frequent n-gram, once that
    # n-gram occurs at least 3 times (else 0): 10-character n-grams of the non-space text for
    # languages written without spaces (zh, ja, ...), 3-word n-grams (share of word characters)
    # otherwise.
    max_char_repetition: float
    min_letter_ratio: float  # share of non-space characters that are letters
    min_mean_word_length: float = 0.0  # 0 disables
    max_mean_word_length: float = 0.0  # 0 disables


@dataclass(frozen=True, slots=True)
class QualitySignals:
    """What `measure` finds in one document; every ratio lies in [0, 1]."""

    chars: int
    words: int
    symbol_ratio: float
    repeated_line_ratio: float
    char_repetition: float
    letter_ratio: float
    mean_word_length: float


# Chosen to keep a one-sentence news item or encyclopedia stub and to drop fragments, menus,
# symbol art and spam. Chinese punctuation is dense (about one mark in ten characters) and its
# financial news is full of figures, hence the low letter ratio; Gopher's 3..10 mean word length
# applies to English only (words elsewhere are too unlike English ones).
DEFAULT_THRESHOLDS: dict[str, QualityThresholds] = {
    "zh": QualityThresholds(
        min_chars=20,
        max_chars=100_000,
        min_words=10,
        max_symbol_ratio=0.1,
        max_repeated_line_ratio=0.3,
        max_char_repetition=0.3,
        min_letter_ratio=0.35,
    ),
    "en": QualityThresholds(
        min_chars=25,
        max_chars=200_000,
        min_words=5,
        max_symbol_ratio=0.1,
        max_repeated_line_ratio=0.3,
        max_char_repetition=0.3,
        min_letter_ratio=0.5,
        min_mean_word_length=3.0,
        max_mean_word_length=10.0,
    ),
    "*": QualityThresholds(
        min_chars=20,
        max_chars=200_000,
        min_words=3,
        max_symbol_ratio=0.15,
        max_repeated_line_ratio=0.3,
        max_char_repetition=0.35,
        min_letter_ratio=0.4,
    ),
}

_INT_FIELDS = frozenset({"min_chars", "max_chars", "min_words"})
_FIELD_NAMES = tuple(f.name for f in fields(QualityThresholds))
# Languages written without spaces between words: repetition is measured on characters.
_UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
_CHAR_NGRAM = 10
_WORD_NGRAM = 3
# A name mentioned twice is ordinary prose; a sequence seen three times in a short text is not.
_MIN_COPIES = 3


def _mark_class() -> str:
    """The combining marks of the Basic Multilingual Plane, as regex character-class ranges."""
    ranges: list[str] = []
    start: int | None = None
    # Every BMP mark lies in these windows; scanning only them keeps the import cheap.
    windows = (range(0x0300, 0x3100), range(0xA600, 0xAC00), range(0xFB00, 0xFE31))
    for window in windows:
        for cp in window:
            is_mark = unicodedata.category(chr(cp)).startswith("M")
            if is_mark and start is None:
                start = cp
            elif not is_mark and start is not None:
                ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
                start = None
    return "".join(ranges)


_MARKS = _mark_class()
# Sentence punctuation of Latin, CJK, Arabic and Indic text, plus % and currency signs that
# ordinary news carries; everything else that is neither a word character nor space is a symbol.
_ORDINARY = (
    r".,;:!?'\"()\[\]\-/%$€£¥"  # ASCII and currency
    "\u2018\u2019\u201c\u201d\u2013\u2014"  # curly quotes, en and em dash
    "\u00b7\u00ab\u00bb\u00bf\u00a1"  # middle dot, guillemets, inverted ? and !
    "\u3001\u3002\u300a-\u300f\u3010\u3011"  # CJK comma, full stop, brackets
    "\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f\uff05\uffe5"  # full-width forms
    "\u060c\u061b\u061f\u0964\u0965"  # Arabic comma, semicolon, question mark; danda
)
_SPACE = re.compile(r"\s+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
# Marks are removed (and counted) before the other patterns run: a class that mixes \w with
# hundreds of mark ranges is checked range by range, several times slower.
_MARK_RUNS = re.compile(f"[{_MARKS}]+")
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
_SYMBOLS = re.compile(rf"[^\w\s{_ORDINARY}]+")  # plus "_", which \w includes
_NOT_LETTERS = re.compile(r"[\W\d_]+")


def _base_language(lang: str) -> str:
    """`zh-Hant`, `ZH_cn` and `zh` all mean zh."""
    return lang.strip().lower().replace("_", "-").split("-", 1)[0]


def _top_char_ngram_share(compact: str) -> float:
    """Share of `compact` covered by non-overlapping copies of its most frequent 10-gram."""
    count = len(compact) - _CHAR_NGRAM + 1
    if count < _MIN_COPIES:
        return 0.0
    grams = [compact[i : i + _CHAR_NGRAM] for i in range(count)]
    if len(set(grams)) == count:  # the usual case, and a set is much cheaper than a Counter
        return 0.0
    gram, seen = Counter(grams).most_common(1)[0]
    if seen < _MIN_COPIES:
        return 0.0
    return min(1.0, _CHAR_NGRAM * compact.count(gram) / len(compact))


def _top_word_ngram_share(words: list[str], word_chars: int) -> float:
    """Share of word characters covered by non-overlapping copies of the top 3-word n-gram."""
    if len(words) < _WORD_NGRAM + 1 or word_chars == 0:
        return 0.0
    grams = list(zip(words, words[1:], words[2:], strict=False))
    if len(set(grams)) == len(grams):
        return 0.0
    gram, seen = Counter(grams).most_common(1)[0]
    if seen < _MIN_COPIES:
        return 0.0
    # Each word is framed by \x00..\x01 (never inside a word) so that str.count finds whole
    # n-grams, without overlaps, even when copies follow each other directly.
    joined = "\x00" + "\x01\x00".join(words) + "\x01"
    copies = joined.count("\x00" + "\x01\x00".join(gram) + "\x01")
    return min(1.0, copies * sum(map(len, gram)) / word_chars)


def measure(text: str, lang: str) -> QualitySignals:
    """The quality signals of `text`, read as language `lang` (a code such as "zh" or "en-US")."""
    stripped = text.strip()
    lowered = stripped.lower()
    ascii_only = lowered.isascii()  # the common English case: no marks, no Han
    # Marks count as letters; dropping them first keeps the patterns below simple and fast.
    base = lowered if ascii_only else _MARK_RUNS.sub("", lowered)
    marks = len(lowered) - len(base)
    compact = _SPACE.sub("", base)
    nonspace = len(compact) + marks
    if ascii_only:
        han = 0
        latin = _WORD.findall(base)
    else:
        han = len(compact) - len(_HAN.sub("", compact))
        latin = _WORD.findall(_HAN.sub(" ", base))
    latin_chars = sum(map(len, latin))
    words = han + len(latin)
    word_chars = han + latin_chars

    lines = [line for line in map(str.strip, stripped.splitlines()) if line]
    repeated = (len(lines) - len(set(lines))) / len(lines) if lines else 0.0

    if _base_language(lang) in _UNSPACED_LANGUAGES:
        repetition = _top_char_ngram_share(compact)
    else:
        repetition = _top_word_ngram_share(latin, latin_chars)

    symbols = len(compact) - len(_SYMBOLS.sub("", compact)) + compact.count("_")
    letters = len(_NOT_LETTERS.sub("", compact)) + marks
    return QualitySignals(
        chars=len(stripped),
        words=words,
        symbol_ratio=symbols / nonspace if nonspace else 0.0,
        repeated_line_ratio=repeated,
        char_repetition=repetition,
        letter_ratio=letters / nonspace if nonspace else 0.0,
        mean_word_length=word_chars / words if words else 0.0,
    )


def judge(signals: QualitySignals, thresholds: QualityThresholds) -> str | None:
    """None when the document passes, else the id of the first rule it fails.

    Rules, in the order tried: "too_short", "too_long", "too_few_words", "word_length",
    "symbols", "repeated_lines", "repetition", "few_letters". Word length comes early, as in
    Gopher: a text of 40-letter "words" is gibberish however often it repeats them.
    """
    t = thresholds
    checks = (
        ("too_short", signals.chars < t.min_chars),
        ("too_long", signals.chars > t.max_chars),
        ("too_few_words", signals.words < t.min_words),
        (
            "word_length",
            (t.min_mean_word_length > 0 and signals.mean_word_length < t.min_mean_word_length)
            or (t.max_mean_word_length > 0 and signals.mean_word_length > t.max_mean_word_length),
        ),
        ("symbols", signals.symbol_ratio > t.max_symbol_ratio),
        ("repeated_lines", signals.repeated_line_ratio > t.max_repeated_line_ratio),
        ("repetition", signals.char_repetition > t.max_char_repetition),
        ("few_letters", signals.letter_ratio < t.min_letter_ratio),
    )
    return next((rule for rule, failed in checks if failed), None)


def _checked_value(lang: str, key: str, value: object) -> int | float:
    """`value` as the type of field `key`; ValueError unless a finite non-negative number."""
    if key not in _FIELD_NAMES:
        raise ValueError(f"unknown quality threshold {key!r} (for language {lang!r})")
    # bool is an int subclass, but True as a threshold is always a mistake. ValueError (not
    # TypeError) throughout: callers report every bad configuration value the same way.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"quality threshold {key!r} for {lang!r} must be a number")  # noqa: TRY004
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"quality threshold {key!r} for {lang!r} must be finite and >= 0")
    if key in _INT_FIELDS:
        if value != int(value):
            raise ValueError(f"quality threshold {key!r} for {lang!r} must be a whole number")
        return int(value)
    return float(value)


def thresholds_for(
    lang: str, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> QualityThresholds:
    """The thresholds for `lang`: its defaults (or those of "*") with `overrides` applied.

    `overrides` maps a language code ("zh", "en", "*", or any other) to field values. A language
    without defaults of its own takes the "*" overrides, then its own. Every entry is validated,
    whichever language is asked for: unknown keys and values that are not finite non-negative
    numbers (bool included) raise ValueError.
    """
    checked: dict[str, dict[str, int | float]] = {}
    for code, values in (overrides or {}).items():
        # Overrides come from configuration files, so a wrong shape is a value error there.
        if not isinstance(values, Mapping):
            raise ValueError(f"quality overrides for {code!r} must be a mapping")  # noqa: TRY004
        key = code if code == "*" else _base_language(code)
        entry = checked.setdefault(key, {})
        entry.update({name: _checked_value(code, name, v) for name, v in values.items()})

    base = _base_language(lang)
    layers = [base] if base in DEFAULT_THRESHOLDS else ["*", base]
    result = DEFAULT_THRESHOLDS[layers[0]]
    for layer in layers:
        if layer in checked:
            result = replace(result, **checked[layer])  # type: ignore[arg-type]
    return result
