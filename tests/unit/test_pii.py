# Chinese text is written with full-width punctuation and digits
"""PII masking: only values that validate are masked, Chinese text around them survives.

Check characters and Luhn digits are computed here from the published definitions (weights as
powers of two mod 11, Luhn as "double every second digit"), not with the module's own helpers.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiyuan.services.curation.pii import (
    PII_KINDS,
    PLACEHOLDERS,
    luhn_valid,
    redact,
    valid_resident_id,
)

SAMPLE_ID = "11010519491231002X"
PROVINCES = ("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36")
PROVINCES += ("37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62")
PROVINCES += ("63", "64", "65", "71", "81", "82")


def id_check_char(first17: str) -> str:
    # GB 11643: weight of position i (from the left, 0-based) is 2^(17-i) mod 11, and the
    # check value is (12 - sum mod 11) mod 11, written X when it is 10.
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    return "0123456789X"[(12 - total % 11) % 11]


def make_id(region: str, birth: str, seq: str) -> str:
    first17 = region + birth + seq
    assert len(first17) == 17
    return first17 + id_check_char(first17)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number]
    odd = digits[-1::-2]
    even = [sum(divmod(2 * d, 10)) for d in digits[-2::-2]]
    return (sum(odd) + sum(even)) % 10 == 0


def with_luhn_digit(body: str) -> str:
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


CARD16 = with_luhn_digit("622202020000000")
CARD19 = with_luhn_digit("621700123456789012")
assert len(CARD16) == 16 and len(CARD19) == 19


def test_check_char_helper_agrees_with_the_published_sample() -> None:
    assert make_id("110105", "19491231", "002") == SAMPLE_ID


# --- resident IDs -------------------------------------------------------------------------------


def test_sample_id_is_valid_and_redacted() -> None:
    assert valid_resident_id(SAMPLE_ID)
    assert redact(SAMPLE_ID) == ("<ID_CARD>", {"id_card": 1})


@pytest.mark.parametrize(
    ("region", "birth", "seq"),
    [
        ("440305", "19900101", "123"),
        ("310101", "20000229", "456"),  # leap day
        ("820000", "18000101", "007"),  # earliest year allowed
        ("650102", "19751130", "318"),
    ],
)
def test_generated_ids_are_valid_and_redacted(region: str, birth: str, seq: str) -> None:
    value = make_id(region, birth, seq)
    assert valid_resident_id(value)
    assert redact(f"证件 {value} 结束") == ("证件 <ID_CARD> 结束", {"id_card": 1})


def test_lower_case_x_is_accepted() -> None:
    assert valid_resident_id(SAMPLE_ID.lower())
    assert redact("id: " + SAMPLE_ID.lower()) == ("id: <ID_CARD>", {"id_card": 1})


@pytest.mark.parametrize("wrong", [c for c in "0123456789X" if c != "X"])
def test_wrong_check_char_is_not_an_id(wrong: str) -> None:
    value = SAMPLE_ID[:17] + wrong
    assert not valid_resident_id(value)
    assert redact(value, kinds=["id_card"]) == (value, {})


def test_wrong_check_char_untouched_by_all_rules() -> None:
    value = "110105194912310021"
    assert not luhn_ok(value)  # otherwise it would rightly be taken as a card
    assert redact(f"号码{value}。") == (f"号码{value}。", {})


def test_impossible_birth_date_untouched() -> None:
    value = make_id("110105", "19490230", "002")
    assert not luhn_ok(value)
    assert not valid_resident_id(value)
    assert redact(value) == (value, {})


@pytest.mark.parametrize("birth", ["17991231", "20991231", "19491301", "19490431"])
def test_other_bad_dates_are_not_ids(birth: str) -> None:
    assert not valid_resident_id(make_id("110105", birth, "002"))


def test_unknown_province_untouched() -> None:
    value = make_id("990105", "19491231", "004")
    assert value.endswith("X")  # not a digit run, so no card rule can apply either
    assert not valid_resident_id(value)
    assert redact(value) == (value, {})


def test_id_inside_chinese_text_keeps_the_chinese() -> None:
    text = f"身份证号{SAMPLE_ID}，请核对"
    assert redact(text) == ("身份证号<ID_CARD>，请核对", {"id_card": 1})


def test_id_inside_a_longer_digit_run_untouched() -> None:
    value = make_id("440305", "19900101", "124")
    assert value[-1].isdigit()
    for text in (f"1{value}2", f"000{value}", f"{SAMPLE_ID[:17]}0{SAMPLE_ID}"):
        assert redact(text) == (text, {})


def test_valid_id_that_passes_luhn_is_an_id_never_a_card() -> None:
    value = make_id("110105", "19800101", "075")
    assert valid_resident_id(value) and luhn_ok(value)
    assert redact(value) == ("<ID_CARD>", {"id_card": 1})
    assert redact(value, kinds=["bank_card"]) == (value, {})


# --- phones ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13812345678", "<PHONE>"),
        ("+86 138-1234-5678", "<PHONE>"),
        ("+8613812345678", "<PHONE>"),
        ("0086 13812345678", "<PHONE>"),
        ("86-13812345678", "<PHONE>"),
        ("138 1234 5678", "<PHONE>"),
        ("号码13812345678谢谢", "号码<PHONE>谢谢"),
        ("手机：19912345678。", "手机：<PHONE>。"),
        ("电话 010-88886666 转", "电话 <PHONE> 转"),
        ("0755-1234567", "<PHONE>"),
    ],
)
def test_phones_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == (expected, {"phone": 1})


@pytest.mark.parametrize(
    "text", ["138123456789", "订单号 913812345678", "12812345678", "138-1234 5678"]
)
def test_phone_look_alikes_untouched(text: str) -> None:
    assert redact(text) == (text, {})


def test_prefixed_mobile_run_is_a_phone_not_a_card() -> None:
    assert redact("8613812345678") == ("<PHONE>", {"phone": 1})
    assert redact("008613812345678") == ("<PHONE>", {"phone": 1})


# --- bank cards ---------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [CARD16, CARD19])
def test_luhn_valid_cards_are_redacted(card: str) -> None:
    assert luhn_valid(card)
    assert redact(f"卡号{card}，") == ("卡号<BANK_CARD>，", {"bank_card": 1})


@pytest.mark.parametrize("sep", [" ", "-"])
def test_grouped_cards_are_redacted(sep: str) -> None:
    grouped19 = sep.join(CARD19[i : i + 4] for i in range(0, 19, 4))
    grouped16 = sep.join(CARD16[i : i + 4] for i in range(0, 16, 4))
    assert grouped19.count(sep) == 4
    text = f"卡 {grouped19} 与 {grouped16}"
    assert redact(text) == ("卡 <BANK_CARD> 与 <BANK_CARD>", {"bank_card": 2})


def test_grouped_card_followed_by_a_stray_number_keeps_the_number() -> None:
    grouped = " ".join(CARD16[i : i + 4] for i in range(0, 16, 4))
    stray = next(d for d in "123456789" if not luhn_ok(CARD16 + d))
    assert redact(f"{grouped} {stray} 件") == (f"<BANK_CARD> {stray} 件", {"bank_card": 1})


def test_luhn_invalid_cards_untouched() -> None:
    for card in (CARD16, CARD19):
        bad = card[:-1] + str((int(card[-1]) + 1) % 10)
        assert not luhn_valid(bad)
        assert redact(f"卡号{bad}") == (f"卡号{bad}", {})


def test_card_inside_a_longer_digit_run_untouched() -> None:
    text = "1" + CARD19 + "2"
    assert redact(text) == (text, {})


def test_luhn_helper() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("7992 7398 713")
    assert not luhn_valid("７９９２７３９８７１３")  # full-width digits are not ASCII digits


# --- emails and IPs -----------------------------------------------------------------------------


def test_email_after_chinese_keeps_the_chinese() -> None:
    assert redact("邮箱zhangsan@example.com.cn") == ("邮箱<EMAIL>", {"email": 1})
    assert redact("请联系 li.si+ai@mail.163.com。谢谢") == ("请联系 <EMAIL>。谢谢", {"email": 1})


def test_not_an_email_untouched() -> None:
    for text in ("user@localhost", "@handle", "a@b.c"):
        assert redact(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("服务器192.168.1.10上", "服务器<IP>上"),
        ("from 8.8.8.8.", "from <IP>."),
        ("255.255.255.255", "<IP>"),
    ],
)
def test_ipv4_redacted(text: str, expected: str) -> None:
    assert redact(text) == (expected, {"ip": 1})


@pytest.mark.parametrize("text", ["256.1.1.1", "1.2.3.4.5", "v 1.2.3.4.5", "1.2.3", "10.0.0.256"])
def test_ipv4_look_alikes_untouched(text: str) -> None:
    assert redact(text) == (text, {})


@pytest.mark.parametrize(
    "address",
    [
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "2001:db8::8a2e:370:7334",
        "fe80::1ff:fe23:4567:890a",
        "::ffff:192.0.2.1",
    ],
)
def test_ipv6_redacted(address: str) -> None:
    assert redact(f"地址[{address}]:8080") == ("地址[<IP>]:8080", {"ip": 1})


@pytest.mark.parametrize(
    "text", ["12:30:45", "std::vector<int>", "x[1::2]", "a :: b", "00:1A:2B:3C:4D:5E", "1:2:3"]
)
def test_ipv6_look_alikes_untouched(text: str) -> None:
    assert redact(text) == (text, {})


# --- the whole ----------------------------------------------------------------------------------


MIXED = (
    f"张三，身份证{SAMPLE_ID}，手机13812345678，座机010-88886666，"
    f"卡号{CARD16}，邮箱zhangsan@example.com，登录IP 10.1.2.3 与 2001:db8::1:2。"
)


def test_counts_are_exact() -> None:
    out, counts = redact(MIXED)
    assert counts == {"id_card": 1, "phone": 2, "bank_card": 1, "email": 1, "ip": 2}
    assert out == (
        "张三，身份证<ID_CARD>，手机<PHONE>，座机<PHONE>，"
        "卡号<BANK_CARD>，邮箱<EMAIL>，登录IP <IP> 与 <IP>。"
    )


def test_no_pii_gives_empty_counts() -> None:
    text = "今天天气很好，版本 1.2.3.4.5，订单 12345。"
    assert redact(text) == (text, {})
    assert redact("") == ("", {})


def test_kinds_subset_redacts_only_those() -> None:
    out, counts = redact(MIXED, kinds=["email", "ip"])
    assert counts == {"email": 1, "ip": 2}
    assert SAMPLE_ID in out and "13812345678" in out and CARD16 in out
    assert "<EMAIL>" in out and "<ID_CARD>" not in out
    assert redact(MIXED, kinds="phone")[1] == {"phone": 2}
    assert redact(MIXED, kinds=[]) == (MIXED, {})


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="passport"):
        redact("x", kinds=["phone", "passport"])


def test_public_constants() -> None:
    assert PII_KINDS == ("id_card", "phone", "bank_card", "email", "ip")
    assert set(PLACEHOLDERS) == set(PII_KINDS)
    assert PLACEHOLDERS["id_card"] == "<ID_CARD>"


def test_placeholders_are_never_rematched() -> None:
    text = " ".join(PLACEHOLDERS.values()) + "".join(PLACEHOLDERS.values())
    assert redact(text) == (text, {})


def test_masking_one_value_exposes_its_neighbour() -> None:
    # The ID is glued to the phone, so it only stands alone once the phone is masked.
    assert redact(SAMPLE_ID + "13812345678") == ("<ID_CARD><PHONE>", {"id_card": 1, "phone": 1})


# --- properties ---------------------------------------------------------------------------------


@st.composite
def valid_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(PROVINCES)) + f"{draw(st.integers(0, 9999)):04d}"
    born = draw(st.dates(date(1900, 1, 1), date(2020, 12, 31))).strftime("%Y%m%d")
    value = make_id(region, born, f"{draw(st.integers(0, 999)):03d}")
    return value.lower() if draw(st.booleans()) else value


# Characters the rules care about, so that random text gets near the edges of every pattern.
pii_ish_text = st.text(alphabet=st.sampled_from(list("0123456789Xx .-+@:abcf中文，<>_")))
SETTINGS = settings(max_examples=300, deadline=None, database=None)


@SETTINGS
@given(st.text())
def test_any_text_is_handled_and_redaction_is_stable(text: str) -> None:
    out, counts = redact(text)
    assert all(counts[kind] > 0 for kind in counts)
    assert redact(out) == (out, {})


@SETTINGS
@given(pii_ish_text)
def test_pii_like_text_redaction_is_stable(text: str) -> None:
    out, _ = redact(text)
    assert redact(out)[0] == out


@SETTINGS
@given(st.lists(st.tuples(pii_ish_text, valid_ids(), st.sampled_from([" ", "，", "\n", "号"]))))
def test_inserted_ids_never_survive(parts: list[tuple[str, str, str]]) -> None:
    text = "".join(noise + sep + value + sep for noise, value, sep in parts)
    out, counts = redact(text)
    for _, value, _ in parts:
        assert value not in out
    assert counts.get("id_card", 0) >= len(parts)
    assert redact(out)[0] == out
