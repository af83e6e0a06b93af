r"""Mask personal data (PII) in Chinese and English text before it enters a dataset.

Only values that validate are masked: a resident ID needs a known province, a real birth date and
the right check character, and a bank card must pass Luhn. Look-alikes (order numbers, hashes,
version strings) are left alone so that curation does not shred ordinary numbers.

Digit boundaries are explicit lookarounds, never `\b`: Han characters are `\w` to Python's `re`,
so `\b` would find no edge in "号码13812345678谢谢".
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone

PII_KINDS: tuple[str, ...] = ("id_card", "phone", "bank_card", "email", "ip")
PLACEHOLDERS: dict[str, str] = {
    "id_card": "<ID_CARD>",
    "phone": "<PHONE>",
    "bank_card": "<BANK_CARD>",
    "email": "<EMAIL>",
    "ip": "<IP>",
}

# GB 11643-1999: province codes in use, check weights 2^(17-i) mod 11, check chars by remainder.
_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"}
    | {"41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64"}
    | {"65", "71", "81", "82"}
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_ID_EARLIEST_YEAR = 1800
# Birth dates on the ID are Beijing dates, so "this year" is judged there, not in UTC.
_BEIJING = timezone(timedelta(hours=8))
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]")

_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # digit sum of 2*d, looked up instead of computed
_CARD_LENGTHS = range(13, 20)
# Compressed forms with only two colons ("1::2", "a::b", "::1") are mostly Python slices and
# scope operators in code; real addresses worth masking have at least three.
_MIN_IPV6_COLONS = 3

_ID_RE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_CARD_RE = re.compile(
    r"(?<![0-9])(?:"
    r"(?P<plain>[0-9]{13,19})"
    r"|(?P<head>[0-9]{4}(?P<sep>[ -])[0-9]{4}(?:(?P=sep)[0-9]{4}){1,2})"
    r"(?P<tail>(?P=sep)[0-9]{1,4})?"
    r")(?![0-9])"
)
# A mobile written with its country code is a 13- or 15-digit run; it belongs to the phone rule.
_PREFIXED_MOBILE = re.compile(r"(?:0086|86)1[3-9][0-9]{9}")
_PHONE_RE = re.compile(
    r"(?<![0-9])(?:"
    r"(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?P<sep>[ -]?)[0-9]{4}(?P=sep)[0-9]{4}"
    r"|0[1-9][0-9]{1,2}-[0-9]{7,8}"
    r")(?![0-9])"
)
# The lookbehind pins the local part to the start of its run: no "邮箱" kept out by `\b`, and no
# quadratic rescans of long letter runs (base64) from every position inside them.
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# No digit or "digit." on either side, so "1.2.3.4.5" (a version) is not an address.
_IPV4_RE = re.compile(rf"(?<![0-9])(?<![0-9]\.){_OCTET}(?:\.{_OCTET}){{3}}(?![0-9])(?!\.[0-9])")
# A loose candidate; `ipaddress` decides. Tried before IPv4 so "::ffff:1.2.3.4" goes whole.
_IPV6_RE = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![0-9A-Za-z:])(?!\.[0-9])"
)
# Every digit rule needs seven digits in a row or a "ddd dddd" group (a spaced mobile or card);
# text without either skips them all.
_DIGIT_HINT = re.compile(r"[0-9]{3}[ -]?[0-9]{4}")


def luhn_valid(digits: str) -> bool:
    """Whether an all-ASCII-digit string passes the Luhn check; False for anything else."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _LUHN_DOUBLED[digit] if position % 2 else digit
    return total % 10 == 0


def valid_resident_id(value: str) -> bool:
    """Whether `value` is an 18-character mainland resident ID with a valid check character."""
    if _ID_SHAPE.fullmatch(value) is None or value[:2] not in _PROVINCES:
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not _ID_EARLIEST_YEAR <= year <= datetime.now(_BEIJING).year:
        return False
    try:
        date(year, month, day)
    except ValueError:  # 19490230 and friends
        return False
    total = sum(int(char) * weight for char, weight in zip(value, _ID_WEIGHTS, strict=False))
    return _ID_CHECK_CHARS[total % 11] == value[17].upper()


def _is_card(digits: str) -> bool:
    # A valid ID must be reported as an ID even when the caller did not ask for IDs.
    return (
        len(digits) in _CARD_LENGTHS
        and _PREFIXED_MOBILE.fullmatch(digits) is None
        and not valid_resident_id(digits)
        and luhn_valid(digits)
    )


def _id_replacement(match: re.Match[str]) -> str | None:
    return PLACEHOLDERS["id_card"] if valid_resident_id(match.group()) else None


def _card_replacement(match: re.Match[str]) -> str | None:
    placeholder = PLACEHOLDERS["bank_card"]
    plain = match["plain"]
    if plain is not None:
        return placeholder if _is_card(plain) else None
    sep, tail = match["sep"], match["tail"]
    if _is_card(match.group().replace(sep, "")):
        return placeholder
    # "6222 0202 0000 0000 5 件": the greedy tail took a stray group; the card may end before it.
    if tail is not None and _is_card(match["head"].replace(sep, "")):
        return placeholder + tail
    return None


def _ipv6_replacement(match: re.Match[str]) -> str | None:
    candidate = match.group()
    if candidate.count(":") < _MIN_IPV6_COLONS:
        return None
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return PLACEHOLDERS["ip"]


def _substitute(
    pattern: re.Pattern[str], text: str, replacement: Callable[[re.Match[str]], str | None]
) -> tuple[str, int]:
    # Counts only the matches that validated; the rest are written back unchanged.
    hits = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal hits
        out = replacement(match)
        if out is None:
            return match.group()
        hits += 1
        return out

    return pattern.sub(replace, text), hits


def _one_pass(text: str, wanted: frozenset[str], counts: Counter[str]) -> tuple[str, int]:
    found = 0
    # Masking only removes digits, so one hint check covers the three digit rules.
    if _DIGIT_HINT.search(text) is not None:
        if "id_card" in wanted:
            text, hits = _substitute(_ID_RE, text, _id_replacement)
            counts["id_card"] += hits
            found += hits
        if "bank_card" in wanted:
            text, hits = _substitute(_CARD_RE, text, _card_replacement)
            counts["bank_card"] += hits
            found += hits
        if "phone" in wanted:
            text, hits = _PHONE_RE.subn(PLACEHOLDERS["phone"], text)
            counts["phone"] += hits
            found += hits
    if "email" in wanted and "@" in text:
        text, hits = _EMAIL_RE.subn(PLACEHOLDERS["email"], text)
        counts["email"] += hits
        found += hits
    if "ip" in wanted:
        if ":" in text:
            text, hits = _substitute(_IPV6_RE, text, _ipv6_replacement)
            counts["ip"] += hits
            found += hits
        if "." in text:
            text, hits = _IPV4_RE.subn(PLACEHOLDERS["ip"], text)
            counts["ip"] += hits
            found += hits
    return text, found


def redact(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, dict[str, int]]:
    """Return the text with every valid PII value replaced by its placeholder, and counts per kind.

    `kinds` chooses among `PII_KINDS` (a single name is accepted too); an unknown name raises
    `ValueError`. Rules always run in the order ID, bank card, phone, email, IP, so a longer
    digit structure claims its digits first and a valid ID is never counted as a card.
    Placeholders hold no digits, "@", "." or ":", so no rule ever matches one. The counts hold
    only kinds found (count > 0). Values are never returned or logged.

    Masking a value can expose a neighbour that it was shielding ("…002X13812345678": the ID is
    glued to the phone until the phone is masked), so passes repeat until one finds nothing;
    the result is therefore stable: redacting it again changes nothing.
    """
    wanted = frozenset((kinds,) if isinstance(kinds, str) else kinds)
    unknown = sorted(wanted.difference(PII_KINDS))
    if unknown:
        raise ValueError(f"unknown PII kind(s): {', '.join(map(repr, unknown))}")
    counts: Counter[str] = Counter()
    # Terminates: every masked value holds a digit, "@" or ":", and placeholders hold none.
    while True:
        text, found = _one_pass(text, wanted, counts)
        if not found:
            break
    return text, {kind: counts[kind] for kind in PII_KINDS if counts[kind]}
