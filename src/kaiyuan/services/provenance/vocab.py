"""A model's vocabulary as comparable strings: how two models' embedding rows are paired.

Token ids mean nothing across models (a vocabulary extension reshuffles them), so rows are
paired by the token's text. Tokenizers spell the same text differently: byte-level BPE writes
a leading space as `Ġ` and bytes as printable stand-ins, SentencePiece writes `▁`, WordPiece
marks continuations with `##` and word starts with nothing. `normalise` maps each spelling to
the text it stands for, so " the" from GPT-2, Llama and BERT vocabularies is one key.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import cache, cached_property
from operator import itemgetter

from kaiyuan.core.errors import InvalidInputError

MAX_TOKENIZER_BYTES = 64 * 1024 * 1024
MAX_VOCABULARY = 4_000_000
MAX_TOKEN_CHARS = 1024


class Vocabulary:
    """A model's tokens by id and the text each stands for.

    Normalising every token costs about a second per million tokens, and a fingerprint needs
    only a few hundred of them: `texts` and `ids` are worked out on first use, and `find`
    answers for a few texts without them.
    """

    __slots__ = ("__dict__", "_load")

    def __init__(self, tokens: Sequence[str], scheme: str) -> None:
        self.__dict__.update(tokens=tuple(tokens), scheme=scheme)
        self._load: Callable[[], Vocabulary] | None = None

    @classmethod
    def deferred(cls, load: Callable[[], Vocabulary]) -> Vocabulary:
        """A vocabulary read by `load` when first used.

        A tokenizer file is then parsed while the weights are being hashed; InvalidInput from
        `load` surfaces at that first use.
        """
        vocabulary = cls.__new__(cls)
        object.__setattr__(vocabulary, "_load", load)
        return vocabulary

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        """The tokens by id, as the tokenizer spells them."""
        return self._source.tokens

    @cached_property
    def scheme(self) -> str:
        """How the tokens are spelt: bpe-bytes, sentencepiece, wordpiece or plain."""
        return self._source.scheme

    @cached_property
    def _source(self) -> Vocabulary:
        if self._load is None:  # built from tokens: `tokens` and `scheme` are set already
            raise AttributeError("tokens")
        return self._load()

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def texts(self) -> tuple[str, ...]:
        """Each token's normalised text, by id."""
        return normalise_all(self.tokens, self.scheme)

    @cached_property
    def ids(self) -> dict[str, int]:
        """Each text to the first id that stands for it."""
        return _first_ids(self.texts)

    def find(self, texts: Iterable[str]) -> dict[str, int]:
        """The first id of each of `texts` the vocabulary holds.

        Before `ids` exists, each text is spelt the way this scheme writes it and the raw
        tokens are searched for those spellings: one pass without normalising anything. A
        token spelt some other way (an added token in plain text) is not found that way.
        """
        wanted = list(texts)
        if "ids" in self.__dict__:
            return {t: self.ids[t] for t in wanted if t in self.ids}
        spelt: dict[str, str] = {}
        for text in wanted:
            for spelling in spellings(text, self.scheme):
                spelt.setdefault(spelling, text)
        found: dict[str, int] = {}
        for index in [i for i, token in enumerate(self.tokens) if token in spelt]:
            token = self.tokens[index]
            text = spelt[token]
            if text not in found and normalise(token, self.scheme) == text:
                found[text] = index
        return found


def shared_tokens(a: Vocabulary, b: Vocabulary) -> list[tuple[int, int]]:
    """(id in a, id in b) for each text both vocabularies hold, in a fixed, spread order."""
    ids_b = b.ids
    pairs = [(i, ids_b[t]) for t, i in a.ids.items() if t in ids_b]
    # A hash order spreads any prefix of the list over the whole vocabulary, so a capped
    # sample is not just the first (byte and punctuation) tokens.
    pairs.sort(key=lambda p: (_spread(a.texts[p[0]]), p[0]))
    return pairs


def from_tokens(tokens: Sequence[str], model: str = "") -> Vocabulary:
    """A vocabulary from token strings by id (GGUF `tokenizer.ggml.tokens`)."""
    if len(tokens) > MAX_VOCABULARY:
        raise InvalidInputError(f"vocabulary of {len(tokens)} tokens exceeds {MAX_VOCABULARY}")
    return Vocabulary(tokens, _scheme(tokens, model))


def from_vocab_txt(raw: bytes) -> Vocabulary:
    """A WordPiece `vocab.txt`: one token per line, the line number is its id."""
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise InvalidInputError("vocab.txt is not UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()
    return from_tokens([line.rstrip("\r") for line in lines], "wordpiece")


def from_tokenizer_json(raw: bytes) -> Vocabulary:
    """The vocabulary of a `tokenizer.json` (BPE, WordPiece or Unigram models)."""
    if len(raw) > MAX_TOKENIZER_BYTES:
        raise InvalidInputError(f"tokenizer.json larger than {MAX_TOKENIZER_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInputError("tokenizer.json is not UTF-8 JSON") from None
    model = document.get("model") if isinstance(document, dict) else None
    if not isinstance(model, dict):
        raise InvalidInputError("tokenizer.json has no 'model' object")
    kind = str(model.get("type", "")).lower()
    by_id = _model_vocab(model.get("vocab"))
    _add_special(by_id, document.get("added_tokens"))
    if not by_id:
        raise InvalidInputError("tokenizer.json vocabulary is empty")
    size = max(by_id) + 1
    if size > MAX_VOCABULARY:
        raise InvalidInputError(f"tokenizer.json ids reach {size}, above {MAX_VOCABULARY}")
    tokens = [by_id.get(i, "") for i in range(size)]
    hint = "wordpiece" if kind == "wordpiece" else ("sentencepiece" if kind == "unigram" else "")
    return from_tokens(tokens, hint)


def _add_special(by_id: dict[int, str], added_tokens: object) -> None:
    for added in added_tokens if isinstance(added_tokens, list) else []:
        if isinstance(added, dict) and isinstance(added.get("content"), str):
            _check_id(added.get("id"))
            by_id.setdefault(added["id"], added["content"])


def _model_vocab(vocab: object) -> dict[int, str]:
    by_id: dict[int, str] = {}
    if isinstance(vocab, dict):
        ids = list(vocab.values())
        if ids and not (
            set(map(type, ids)) == {int} and min(ids) >= 0 and max(ids) < MAX_VOCABULARY
        ):
            for token_id in ids:  # the first offender, named
                _check_id(token_id)
        # The first text of an id wins: built from the end so earlier entries overwrite.
        by_id = dict(zip(reversed(ids), reversed(list(vocab)), strict=True))
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...] by id
        for token_id, item in enumerate(vocab):
            if not isinstance(item, list) or not item or not isinstance(item[0], str):
                raise InvalidInputError("tokenizer.json Unigram entries must be [piece, score]")
            by_id[token_id] = item[0]
    else:
        raise InvalidInputError("tokenizer.json model has no 'vocab'")
    return by_id


def _check_id(token_id: object) -> None:
    if not isinstance(token_id, int) or isinstance(token_id, bool) or not token_id >= 0:
        raise InvalidInputError(f"tokenizer.json token id {token_id!r} is not a natural number")
    if token_id >= MAX_VOCABULARY:
        raise InvalidInputError(f"tokenizer.json token id {token_id} exceeds {MAX_VOCABULARY}")


def _scheme(tokens: Sequence[str], model: str) -> str:
    if model in {"wordpiece", "sentencepiece"}:
        return model
    sample = tokens[:50_000]
    enough = len(sample) // 20
    starts = Counter(map(itemgetter(slice(0, 1)), sample))  # counted without a Python loop
    if model == "llama" or starts["▁"] > enough:
        return "sentencepiece"
    if model in {"gpt2", "bpe"} or starts["Ġ"] > enough:
        return "bpe-bytes"
    if Counter(map(itemgetter(slice(0, 2)), sample))["##"] > enough:
        return "wordpiece"
    return "plain"


def normalise_all(tokens: Sequence[str], scheme: str) -> tuple[str, ...]:
    """`normalise` of every token; the common schemes without a call per token."""
    if scheme == "sentencepiece":
        spoken = [t[:MAX_TOKEN_CHARS].replace("▁", " ") for t in tokens]
    elif scheme == "bpe-bytes":
        spoken = [_bytes_text(t[:MAX_TOKEN_CHARS]) for t in tokens]
    else:
        return tuple(normalise(t, scheme) for t in tokens)
    nfc = unicodedata.normalize
    return tuple(t if t.isascii() else nfc("NFC", t) for t in spoken)


def spellings(text: str, scheme: str) -> tuple[str, ...]:
    """How a tokenizer of `scheme` writes the token for `text` (the inverse of normalise)."""
    if scheme == "bpe-bytes":
        symbols = _symbol_of_byte()
        return ("".join(symbols[b] for b in text.encode("utf-8")),)
    if scheme == "sentencepiece":
        return (text.replace(" ", "▁"),)
    if scheme == "wordpiece":
        if text.startswith(" "):
            return (text[1:],)
        return ("##" + text, text) if text.startswith("[") else ("##" + text,)
    return (text,)


def normalise(token: str, scheme: str) -> str:
    """The text a token stands for, as one key across tokenizer families."""
    token = token[:MAX_TOKEN_CHARS]
    if scheme == "bpe-bytes":
        text = _bytes_text(token)
    elif scheme == "sentencepiece":
        text = token.replace("▁", " ")
    elif scheme == "wordpiece":
        if token.startswith("##") and len(token) > 2:  # noqa: PLR2004
            text = token[2:]
        elif token.startswith("[") and token.endswith("]"):
            text = token  # [CLS], [unused1]: markers, not words
        else:
            text = " " + token
    else:
        text = token
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _bytes_text(token: str) -> str:
    """A byte-level BPE token's text; a token of a partial UTF-8 sequence gets a marked key."""
    table, stray = _byte_table()
    if stray.search(token):
        return token  # an added token written in plain text
    try:
        return token.translate(table).encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return "\x00bpe:" + token


@cache
def _byte_table() -> tuple[dict[int, str], re.Pattern[str]]:
    """Each stand-in character mapped to its byte (as a latin-1 character).

    With it, a pattern that finds any character that is not a stand-in.
    """
    symbols = _byte_symbols()
    table = {ord(symbol): chr(byte) for symbol, byte in symbols.items()}
    allowed = "".join(re.escape(symbol) for symbol in sorted(symbols))
    return table, re.compile(f"[^{allowed}]")


@cache
def _symbol_of_byte() -> dict[int, str]:
    return {byte: symbol for symbol, byte in _byte_symbols().items()}


@cache
def _byte_symbols() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte (the published byte-to-unicode table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols: dict[str, int] = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            symbols[chr(256 + extra)] = b
            extra += 1
    return symbols


def _first_ids(texts: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text and text not in ids:
            ids[text] = i
    return ids


def _spread(text: str) -> int:
    # FNV-1a: stable across processes (unlike hash()), cheap, and well mixed for short strings.
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8", "surrogatepass"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
