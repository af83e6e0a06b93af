"""A model's vocabulary as comparable strings: how two models' embedding rows are paired.

Token ids mean nothing across models (a vocabulary extension reshuffles them), so rows are
paired by the token's text. Tokenizers spell the same text differently: byte-level BPE writes
a leading space as `Ġ` and bytes as printable stand-ins, SentencePiece writes `▁`, WordPiece
marks continuations with `##` and word starts with nothing. `normalise` maps each spelling to
the text it stands for, so " the" from GPT-2, Llama and BERT vocabularies is one key.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from kaiyuan.core.errors import InvalidInputError

MAX_TOKENIZER_BYTES = 64 * 1024 * 1024
MAX_VOCABULARY = 4_000_000
MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Token text by id, normalised; `ids` maps each text to its first id."""

    texts: tuple[str, ...]
    scheme: str  # "bpe-bytes" | "sentencepiece" | "wordpiece" | "plain"
    ids: dict[str, int]

    def __len__(self) -> int:
        return len(self.texts)


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
    scheme = _scheme(tokens, model)
    texts = tuple(normalise(t, scheme) for t in tokens)
    return Vocabulary(texts, scheme, _first_ids(texts))


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
        for text, token_id in vocab.items():
            _check_id(token_id)
            by_id.setdefault(token_id, text)
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
    if model == "llama" or sum(t.startswith("▁") for t in sample) > len(sample) // 20:
        return "sentencepiece"
    if model in {"gpt2", "bpe"} or sum(t.startswith("Ġ") for t in sample) > len(sample) // 20:
        return "bpe-bytes"
    if sum(t.startswith("##") for t in sample) > len(sample) // 20:
        return "wordpiece"
    return "plain"


def normalise(token: str, scheme: str) -> str:
    """The text a token stands for, as one key across tokenizer families."""
    token = token[:MAX_TOKEN_CHARS]
    if scheme == "bpe-bytes":
        decoded = _from_byte_symbols(token)
        text = decoded if decoded is not None else "\x00bpe:" + token  # a partial UTF-8 byte
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


def _from_byte_symbols(token: str) -> str | None:
    table = _byte_symbols()
    try:
        raw = bytes(table[ch] for ch in token)
    except KeyError:
        return token  # an added token written in plain text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


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
