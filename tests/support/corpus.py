"""A mixed Chinese/English corpus from three contributors, with everything curation must find.

Generated from a seed, so the expected count of every stage is known exactly:

- ordinary documents (random common Han characters in sentences; random English words);
- exact copies across contributors and within one;
- near-duplicates across contributors: one character changed in a Chinese document, one
  word changed in an English one;
- traditional-character versions of simplified documents (exact copies once converted);
- planted PII: valid resident IDs, UnionPay cards, mobiles and e-mails, and invalid
  look-alikes (wrong check digit, Luhn-invalid) that must survive untouched;
- junk (too short, symbols, repeated lines) and blank records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import opencc

# Common characters whose simplified -> traditional -> simplified round trip is exact.
_HAN_SOURCE = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
_WORDS = [
    "river",
    "market",
    "season",
    "window",
    "garden",
    "letter",
    "morning",
    "village",
    "history",
    "teacher",
    "student",
    "doctor",
    "engine",
    "forest",
    "harbor",
    "island",
    "kitchen",
    "ladder",
    "mirror",
    "needle",
    "orange",
    "pencil",
    "planet",
    "rabbit",
    "saddle",
    "temple",
    "uncle",
    "valley",
    "wagon",
    "yellow",
    "zipper",
    "bridge",
    "castle",
    "dinner",
    "energy",
    "family",
    "glacier",
    "hammer",
    "insect",
    "jacket",
    "kettle",
    "lemon",
    "meadow",
    "number",
    "ocean",
    "pepper",
    "quarter",
    "rocket",
    "silver",
    "tunnel",
    "umbrella",
    "violin",
    "walnut",
    "yogurt",
    "anchor",
    "bottle",
    "candle",
    "desert",
    "feather",
    "guitar",
    "helmet",
    "igloo",
    "jungle",
    "kingdom",
    "lantern",
    "marble",
    "nephew",
    "oyster",
    "parrot",
    "quiver",
    "ribbon",
    "spider",
    "tomato",
    "unicorn",
    "vessel",
    "whistle",
    "battery",
    "canyon",
    "dolphin",
    "eagle",
    "falcon",
    "giraffe",
    "horizon",
    "ivory",
    "jasmine",
    "koala",
    "lagoon",
    "magnet",
    "nectar",
    "orchid",
    "pebble",
]


def _round_trip_chars() -> str:
    to_trad, to_simp = opencc.OpenCC("s2t.json"), opencc.OpenCC("t2s.json")
    return "".join(sorted({c for c in _HAN_SOURCE if to_simp.convert(to_trad.convert(c)) == c}))


@dataclass
class Planted:
    """What the tests expect curation to do."""

    blank: int = 0
    exact: int = 0
    near: int = 0
    junk: int = 0
    valid_pii: dict[str, list[str]] = field(default_factory=dict)
    invalid_pii: list[str] = field(default_factory=list)
    near_pairs: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    exact_pairs: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    finance_docs: list[tuple[str, int]] = field(default_factory=list)


def resident_id(region: str, birth: str, sequence: str) -> str:
    body = region + birth + sequence
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def luhn_card(prefix: str, length: int) -> str:
    body = prefix + "0" * (length - len(prefix) - 1)
    total = 0
    for index, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


class CorpusBuilder:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.han = _round_trip_chars()
        self.to_trad = opencc.OpenCC("s2t.json")
        self.files: dict[str, list[str]] = {}
        self.planted = Planted()

    def zh(self) -> str:
        sentences = [
            "".join(self.rng.choices(self.han, k=self.rng.randint(18, 30)))
            for _ in range(self.rng.randint(5, 8))
        ]
        return "，".join(sentences[:2]) + "。" + "。".join(sentences[2:]) + "。"

    def en(self) -> str:
        sentences = []
        for _ in range(self.rng.randint(8, 12)):
            words = self.rng.choices(_WORDS, k=self.rng.randint(8, 14))
            sentences.append(" ".join(words).capitalize() + ".")
        return " ".join(sentences)

    def add(self, name: str, text: str) -> tuple[str, int]:
        rows = self.files.setdefault(name, [])
        rows.append(text)
        return name, len(rows) - 1

    def near_zh(self, text: str) -> str:
        at = self.rng.randrange(10, len(text) - 10)
        while not ("\u4e00" <= text[at] <= "\u9fff"):
            at += 1
        replacement = self.rng.choice([c for c in self.han if c != text[at]])
        return text[:at] + replacement + text[at + 1 :]

    def near_en(self, text: str) -> str:
        words = text.split(" ")
        at = self.rng.randrange(5, len(words) - 5)
        words[at] = self.rng.choice([w for w in _WORDS if w not in words[at]])
        return " ".join(words)


def build(root: Path) -> tuple[dict[str, Path], Planted]:  # noqa: C901, PLR0912 - one planted corpus
    """Three contributors' folders under `root`; returns {organisation: folder} and the plan."""
    b = CorpusBuilder()
    p = b.planted
    acme_zh = [b.add("acme/zh.jsonl", b.zh()) for _ in range(40)]
    acme_en = [b.add("acme/en.jsonl", b.en()) for _ in range(40)]
    text = {loc: b.files[loc[0]][loc[1]] for loc in acme_zh + acme_en}
    finance = (
        "今天证券市场的股票指数上涨，银行板块和基金投资者情绪乐观，央行维持利率不变，贷款需求回升。"
    )
    p.finance_docs.append(b.add("acme/zh.jsonl", finance + b.zh()))

    for _ in range(30):
        b.add("beta/mixed.txt", b.zh())
        b.add("beta/mixed.txt", b.en())
    for source in acme_zh[:3] + acme_en[:2]:  # exact copies across contributors
        p.exact_pairs.append((b.add("beta/mixed.txt", text[source]), source))
    for source in acme_zh[3:6]:  # traditional versions: exact copies once converted
        p.exact_pairs.append((b.add("beta/mixed.txt", b.to_trad.convert(text[source])), source))
    for source in acme_zh[6:10]:
        p.near_pairs.append((b.add("beta/mixed.txt", b.near_zh(text[source])), source))
    for source in acme_en[6:10]:
        p.near_pairs.append((b.add("beta/mixed.txt", b.near_en(text[source])), source))
    beta_zh = [("beta/mixed.txt", i) for i in range(0, 60, 2)]

    gamma = "gamma/part.jsonl"
    for _ in range(20):
        b.add(gamma, b.zh())
        b.add(gamma, b.en())
    own = b.files[gamma][0]
    p.exact_pairs.append((b.add(gamma, own), (gamma, 0)))
    for source in beta_zh[:2]:
        p.near_pairs.append((b.add(gamma, b.near_zh(b.files[source[0]][source[1]])), source))
    ids = [resident_id("110105", "19491231", "002"), resident_id("440305", "19900101", "123")]
    ids += [
        resident_id("310104", "20010228", "456"),
        resident_id("510107", "19750615", "018"),
        resident_id("650102", "19881111", "337"),
    ]
    cards = [luhn_card("622202", 19), luhn_card("621700", 16), luhn_card("625807", 19)]
    phones = ["13812345678", "15900001111", "18655556666"]
    emails = ["zhangsan@example.com.cn", "li.si@mail.example.org"]
    bad_ids = [
        ids[0][:-1] + ("1" if ids[0][-1] != "1" else "2"),
        "110105194902301234",
        "991234199001011231",
    ]
    bad_cards = [cards[0][:-1] + str((int(cards[0][-1]) + 1) % 10), "6222020200000000001"]
    p.valid_pii = {"id_card": ids, "bank_card": cards, "phone": phones, "email": emails}
    p.invalid_pii = bad_ids + bad_cards
    for value in ids:
        b.add(gamma, f"身份证号{value}，请核对信息。" + b.zh())
    for value in cards:
        b.add(gamma, f"银行卡号{value}已经登记。" + b.zh())
    for value in phones:
        b.add(gamma, f"联系电话{value}谢谢。" + b.zh())
    for value in emails:
        b.add(gamma, f"邮箱{value}欢迎来信。" + b.zh())
    for value in bad_ids + bad_cards:
        b.add(gamma, f"编号{value}仅供参考。" + b.zh())
    junk = ["!!!!", "#### $$$$ %%%% &&&& **** #### $$$$", "\n".join(["buy now cheap"] * 12), "好"]
    for value in junk:
        b.add(gamma, value)
    for value in ("   ", "\u3000\t"):
        b.add(gamma, value)

    p.blank, p.junk = 2, len(junk)
    p.exact = len(p.exact_pairs)
    p.near = len(p.near_pairs)
    folders: dict[str, Path] = {}
    for name, rows in b.files.items():
        org, filename = name.split("/")
        target = root / org / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        if filename.endswith(".txt"):
            target.write_text("\n".join(rows) + "\n", encoding="utf-8")
        else:
            target.write_text(
                "".join(json.dumps({"text": r}, ensure_ascii=False) + "\n" for r in rows),
                encoding="utf-8",
            )
        folders[org] = root / org
    return folders, p
