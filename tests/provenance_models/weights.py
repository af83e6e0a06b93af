"""The real test models as float32 numpy state dicts in Hugging Face naming, and writers back to files.

A :class:`Model` is ``arch`` + HF ``config.json`` contents + tensors (HF names, HF orientation
``[out, in]``, float32) + the token string of every id. Loaders:

* :func:`load_bert` reads a sentence-transformers / HF BERT directory (``model.safetensors``).
* :func:`load_gguf_llama` reads a llama.cpp GGUF (``llama`` or ``gemma3`` architecture) with
  ``gguf.GGUFReader`` and ``gguf.quants.dequantize``, renames the tensors to HF names and undoes
  what ``convert_hf_to_gguf.py`` did to them:

  - LLaMA: ``LlamaModel.modify_tensors`` permutes the rows of ``q_proj`` (by ``n_head``) and of
    ``k_proj`` (by ``n_kv_head``) from HF's rotate-half RoPE layout into GGML's interleaved one
    (``LlamaModel.permute``); :func:`unpermute_qk` is its exact inverse.
  - Gemma-3: ``Gemma3Model.modify_tensors`` does **not** permute Q/K (it calls
    ``TextModel.modify_tensors`` directly, and llama.cpp's Gemma graph uses NEOX-style RoPE, which
    is HF's layout). It does add ``1.0`` to every ``*norm.weight`` (``norm_shift``: HF's
    ``Gemma3RMSNorm`` computes ``x * (1 + w)``), and trims the embedding to the real vocabulary.
    The loader subtracts the 1.0 again, so the tensors are exactly what ``Gemma3ForCausalLM``
    expects. Its extra norms keep Gemma-3's own HF names (``pre_feedforward_layernorm``,
    ``post_feedforward_layernorm``, ``self_attn.q_norm`` / ``k_norm``; note that Gemma's
    ``post_attention_layernorm`` is the norm *after* attention, not LLaMA's pre-FFN norm).

Writers: :func:`save_safetensors` (single file or transformers-style shards + index, plus
``config.json``, ``tokenizer.json`` and, for BERT, ``vocab.txt``) and :func:`save_gguf` (a llama
GGUF with Q/K rows re-permuted and 2-D weights quantised with ``gguf.quants.quantize``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from safetensors.numpy import load_file, save_file

__all__ = [
    "Arch",
    "Model",
    "bert_layer_prefix",
    "is_embedding",
    "is_weight_matrix",
    "layer_prefix",
    "load_bert",
    "load_gguf_llama",
    "load_model",
    "permute_qk",
    "relative_change",
    "save_gguf",
    "save_safetensors",
    "unpermute_qk",
    "vocab_style",
]

Arch = Literal["bert", "llama", "gemma3"]


@dataclass
class Model:
    """A model held in memory: HF config, HF-named float32 tensors and the vocabulary by id."""

    arch: Arch
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    tokens: list[str] = field(repr=False)
    # how the model was made (e.g. ``train_losses``); kept in memory only, never saved
    notes: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"Model(arch={self.arch!r}, layers={self.num_layers}, d={self.config['hidden_size']}, "
            f"vocab={len(self.tokens)}, params={self.num_params:,})"
        )

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def num_params(self) -> int:
        return sum(int(t.size) for t in self.tensors.values())

    @property
    def head_dim(self) -> int:
        cfg = self.config
        return int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])

    @property
    def num_heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def num_kv_heads(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.num_heads)

    @property
    def embedding_name(self) -> str:
        return (
            "embeddings.word_embeddings.weight"
            if self.arch == "bert"
            else "model.embed_tokens.weight"
        )

    @property
    def tied(self) -> bool:
        """True when the LM head is the embedding matrix (no ``lm_head.weight`` tensor)."""
        return self.arch != "bert" and "lm_head.weight" not in self.tensors

    def replace(
        self,
        tensors: dict[str, np.ndarray] | None = None,
        config: dict[str, Any] | None = None,
        tokens: list[str] | None = None,
    ) -> Model:
        """A new Model sharing whatever is not replaced (arrays are never modified in place)."""
        return Model(
            arch=self.arch,
            config=dict(self.config if config is None else config),
            tensors=dict(self.tensors if tensors is None else tensors),
            tokens=list(self.tokens if tokens is None else tokens),
        )  # notes describe how one object was made: a derivative starts with none


def layer_prefix(model: Model, index: int) -> str:
    """``encoder.layer.{i}.`` for BERT, ``model.layers.{i}.`` for the decoder models."""
    return bert_layer_prefix(index) if model.arch == "bert" else f"model.layers.{index}."


def bert_layer_prefix(index: int) -> str:
    return f"encoder.layer.{index}."


def is_embedding(name: str) -> bool:
    """Token / position / type embedding tables and the LM head (vocabulary-sized matrices)."""
    return name.endswith(("_embeddings.weight", "embed_tokens.weight")) or name == "lm_head.weight"


def is_weight_matrix(name: str, array: np.ndarray) -> bool:
    """A 2-D linear weight (not an embedding table, not a norm, not a bias)."""
    return array.ndim == 2 and not is_embedding(name)


# --- BERT -----------------------------------------------------------------------------------------


def load_bert(directory: Path) -> Model:
    """A BERT directory (all-MiniLM-L6-v2 layout: ``model.safetensors`` without a ``bert.`` prefix)."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    raw = load_file(directory / "model.safetensors")
    tensors: dict[str, np.ndarray] = {}
    for name, array in raw.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue  # buffers such as embeddings.position_ids
        key = name.removeprefix("bert.")
        tensors[key] = np.ascontiguousarray(array, dtype=np.float32)
    tokens = _bert_tokens(directory)
    if len(tokens) != tensors["embeddings.word_embeddings.weight"].shape[0]:
        msg = f"{directory}: {len(tokens)} tokens for {tensors['embeddings.word_embeddings.weight'].shape[0]} rows"
        raise ValueError(msg)
    return Model(arch="bert", config=config, tensors=tensors, tokens=tokens)


def _bert_tokens(directory: Path) -> list[str]:
    tokenizer_json = directory / "tokenizer.json"
    if tokenizer_json.is_file():
        vocab: dict[str, int] = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"][
            "vocab"
        ]
        tokens = [""] * len(vocab)
        for token, index in vocab.items():
            tokens[index] = token
        return tokens
    lines = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


# --- GGUF -----------------------------------------------------------------------------------------

# GGUF tensor name (without "blk.N.") -> HF name (without "model.layers.N.")
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GEMMA3_BLOCK = {
    **_LLAMA_BLOCK,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}
_GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def permute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """``convert_hf_to_gguf.py`` ``LlamaModel.permute``: HF rotate-half rows -> GGML interleaved."""
    rows = weight.shape[0]
    head_dim = rows // n_head
    return (
        weight.reshape(n_head, 2, head_dim // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def unpermute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """The exact inverse of :func:`permute_qk` (GGUF rows back to HF's layout)."""
    rows = weight.shape[0]
    head_dim = rows // n_head
    return (
        weight.reshape(n_head, head_dim // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    entry = reader.fields.get(key)
    return default if entry is None else entry.contents()


def load_gguf_llama(path: Path) -> Model:
    """A llama.cpp GGUF of a LLaMA (``llama``) or Gemma-3 (``gemma3``) model, dequantised to float32."""
    reader = gguf.GGUFReader(Path(path))
    arch = str(_field(reader, "general.architecture"))
    if arch not in {"llama", "gemma3"}:
        msg = f"{path}: GGUF architecture {arch!r} is not llama or gemma3"
        raise ValueError(msg)
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv", n_head))
    block = _LLAMA_BLOCK if arch == "llama" else _GEMMA3_BLOCK
    tensors: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        # a copy: F32/F16 tensors would otherwise stay read-only views of the memory-mapped file
        array = np.array(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        name = _hf_name(tensor.name, block)
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            array = unpermute_qk(array, n_head)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            array = unpermute_qk(array, n_kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            array = array - np.float32(1.0)  # undo the converter's norm_shift
        tensors[name] = array
    config = _gguf_config(reader, arch, tensors, tokens)
    return Model(
        arch="llama" if arch == "llama" else "gemma3", config=config, tensors=tensors, tokens=tokens
    )


def _hf_name(gguf_name: str, block: dict[str, str]) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, index, part = stem.split(".", 2)
        if part not in block:
            msg = f"unknown GGUF block tensor {gguf_name!r}"
            raise ValueError(msg)
        return f"model.layers.{index}.{block[part]}.{suffix}"
    if stem not in _GLOBAL:
        msg = f"unknown GGUF tensor {gguf_name!r}"
        raise ValueError(msg)
    return f"{_GLOBAL[stem]}.{suffix}"


def _gguf_config(
    reader: gguf.GGUFReader, arch: str, tensors: dict[str, np.ndarray], tokens: list[str]
) -> dict[str, Any]:
    embed = tensors["model.embed_tokens.weight"]
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    head_dim = int(
        _field(reader, f"{arch}.attention.key_length")
        or _field(reader, f"{arch}.rope.dimension_count")
        or hidden // n_head
    )
    config: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": int(_field(reader, f"{arch}.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", n_head)),
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length")),
        "vocab_size": int(embed.shape[0]),
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "head_dim": head_dim,
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length", 2048)),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    for key, hf_key in (
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ):
        value = _field(reader, key)
        if value is not None:
            config[hf_key] = int(value)
    if len(tokens) != embed.shape[0]:
        msg = f"GGUF has {len(tokens)} tokens for {embed.shape[0]} embedding rows"
        raise ValueError(msg)
    if arch == "llama":
        config.update(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            hidden_act="silu",
            mlp_bias=False,
            pretraining_tp=1,
            rope_scaling=None,
        )
        return config
    layers = config["num_hidden_layers"]
    window = _field(reader, f"{arch}.attention.sliding_window")
    pattern = 6  # Gemma-3: five sliding-window layers, then one global layer
    config.update(
        architectures=["Gemma3ForCausalLM"],
        model_type="gemma3_text",
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=head_dim,
        sliding_window=int(window) if window is not None else 512,
        rope_local_base_freq=10000.0,
        rope_scaling=None,
        layer_types=[
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
            for i in range(layers)
        ],
        final_logit_softcapping=_field(reader, f"{arch}.final_logit_softcapping"),
        attn_logit_softcapping=None,
    )
    return config


def load_model(path: Path) -> Model:
    """Whatever :func:`save_safetensors` / :func:`save_gguf` wrote, or a real model file/dir."""
    path = Path(path)
    if path.suffix == ".gguf":
        return load_gguf_llama(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") == "bert":
        return (
            load_bert(path)
            if (path / "model.safetensors").is_file()
            else _load_sharded(path, "bert", config)
        )
    arch: Arch = "gemma3" if str(config.get("model_type", "")).startswith("gemma3") else "llama"
    return _load_sharded(path, arch, config)


def _load_sharded(path: Path, arch: Arch, config: dict[str, Any]) -> Model:
    files = [path / "model.safetensors"]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = [path / name for name in sorted(set(weight_map.values()))]
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        tensors.update({k: v.astype(np.float32) for k, v in load_file(file).items()})
    vocab: dict[str, int] = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))[
        "model"
    ]["vocab"]
    tokens = [""] * len(vocab)
    for token, token_id in vocab.items():
        tokens[token_id] = token
    return Model(arch=arch, config=config, tensors=tensors, tokens=tokens)


# --- writers --------------------------------------------------------------------------------------


def save_safetensors(
    model: Model,
    directory: Path,
    shard_bytes: int | None = None,
    dtype: Literal["float32", "float16"] = "float32",
) -> list[Path]:
    """Write an HF model directory; with ``shard_bytes``, transformers-style shards + index.

    Files: ``model.safetensors`` (or ``model-0000N-of-0000M.safetensors`` and
    ``model.safetensors.index.json``), ``config.json``, ``tokenizer.json`` (``model.vocab`` maps
    token -> id; WordPiece for BERT, BPE with ``merges: []`` otherwise) and ``vocab.txt`` for BERT.
    Returns the weight files written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np_dtype = np.float32 if dtype == "float32" else np.float16
    tensors = {k: np.ascontiguousarray(v, dtype=np_dtype) for k, v in model.tensors.items()}
    written: list[Path] = []
    metadata = {"format": "pt"}
    if shard_bytes is None:
        target = directory / "model.safetensors"
        save_file(tensors, target, metadata=metadata)
        written.append(target)
    else:
        shards: list[dict[str, np.ndarray]] = [{}]
        size = 0
        for name, array in tensors.items():
            if shards[-1] and size + array.nbytes > shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = array
            size += array.nbytes
        weight_map: dict[str, str] = {}
        for number, shard in enumerate(shards, start=1):
            file_name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, directory / file_name, metadata=metadata)
            written.append(directory / file_name)
            weight_map.update(dict.fromkeys(shard, file_name))
        index = {
            "metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (directory / "model.safetensors.index.json").write_text(
            json.dumps(index, indent=2) + "\n", encoding="utf-8"
        )
    config = dict(model.config)
    config["vocab_size"] = len(model.tokens)
    config["torch_dtype"] = dtype
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "tokenizer.json").write_text(
        json.dumps(_tokenizer_json(model), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if model.arch == "bert":
        (directory / "vocab.txt").write_text(
            "".join(f"{t}\n" for t in model.tokens), encoding="utf-8"
        )
    return written


def _tokenizer_json(model: Model) -> dict[str, Any]:
    vocab = {token: index for index, token in enumerate(model.tokens)}
    if len(vocab) != len(model.tokens):
        msg = "token strings are not unique"
        raise ValueError(msg)
    special = [
        {
            "id": index,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for index, token in enumerate(model.tokens)
        if _is_special(token)
    ]
    if model.arch == "bert":
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": special,
            "normalizer": {
                "type": "BertNormalizer",
                "clean_text": True,
                "handle_chinese_chars": True,
                "strip_accents": None,
                "lowercase": True,
            },
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": None,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {
                "type": "WordPiece",
                "unk_token": "[UNK]",
                "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": vocab,
            },
        }
    byte_level = vocab_style(model.tokens) == "byte-level"
    if byte_level:
        pre: dict[str, Any] = {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        }
        decoder: dict[str, Any] = {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        }
    else:  # SentencePiece-style vocabulary (Gemma): "▁" marks a space
        pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": False}
        decoder = {
            "type": "Metaspace",
            "replacement": "▁",
            "prepend_scheme": "never",
            "split": False,
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": None,
        "decoder": decoder,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": not byte_level,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def vocab_style(tokens: Sequence[str]) -> Literal["wordpiece", "byte-level", "sentencepiece"]:
    """How the token strings spell a space: WordPiece (``##`` continuations), GPT-2 byte-level
    (``Ġ``, SmolLM2) or SentencePiece (``▁``, Gemma; whose vocabulary also holds a literal ``Ġ``)."""
    sample = set(tokens)
    if "▁the" in sample:
        return "sentencepiece"
    if "Ġthe" in sample:
        return "byte-level"
    return "wordpiece"


def _is_special(token: str) -> bool:
    """``[CLS]``-style or ``<|im_start|>`` / ``<eos>``-style control tokens (not ``<0x0A>`` bytes)."""
    if token.startswith("[") and token.endswith("]"):
        return token[1:-1].isupper()
    is_byte = len(token) == 6 and token.startswith("<0x")
    return token.startswith("<") and token.endswith(">") and len(token) > 2 and not is_byte


def save_gguf(
    model: Model,
    path: Path,
    qtype: gguf.GGMLQuantizationType | str = "Q8_0",
) -> Path:
    """Write a llama-architecture GGUF like llama.cpp's converter + quantiser would.

    Q/K rows are re-permuted (:func:`permute_qk`), 2-D weights are quantised to ``qtype``
    (``Q8_0``, ``Q4_0``, ``Q4_1``, ``F16`` or ``F32``; a row length that is not a multiple of the
    block size falls back to F16), norms stay F32.
    """
    if model.arch != "llama":
        msg = f"save_gguf writes llama GGUFs; got a {model.arch} model"
        raise ValueError(msg)
    qt = gguf.GGMLQuantizationType[qtype] if isinstance(qtype, str) else qtype
    cfg = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("kaiyuan test derivative")
    writer.add_context_length(int(cfg.get("max_position_embeddings", 2048)))
    writer.add_block_count(model.num_layers)
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_head_count(model.num_heads)
    writer.add_head_count_kv(model.num_kv_heads)
    writer.add_rope_dimension_count(model.head_dim)
    writer.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
    writer.add_vocab_size(len(model.tokens))
    if model.head_dim * model.num_heads != int(cfg["hidden_size"]):
        writer.add_key_length(model.head_dim)
        writer.add_value_length(model.head_dim)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(model.tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if _is_special(t) else gguf.TokenType.NORMAL for t in model.tokens]
    )
    for key, adder in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        if isinstance(cfg.get(key), int):
            adder(int(cfg[key]))
    for name, array in model.tensors.items():
        gguf_name = _gguf_name(name)
        data = array
        if name.endswith("self_attn.q_proj.weight"):
            data = permute_qk(array, model.num_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            data = permute_qk(array, model.num_kv_heads)
        _add_tensor(writer, gguf_name, np.ascontiguousarray(data, dtype=np.float32), qt)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tensor(
    writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype: gguf.GGMLQuantizationType
) -> None:
    if data.ndim < 2 or qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, data)
        return
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == gguf.GGMLQuantizationType.F16 or data.shape[-1] % block:
        writer.add_tensor(name, data.astype(np.float16))
        return
    writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _gguf_name(hf_name: str) -> str:
    reverse_block = {v: k for k, v in _LLAMA_BLOCK.items()}
    reverse_global = {v: k for k, v in _GLOBAL.items()}
    stem, _, suffix = hf_name.rpartition(".")
    if stem.startswith("model.layers."):
        _, _, index, part = stem.split(".", 3)
        return f"blk.{index}.{reverse_block[part]}.{suffix}"
    return f"{reverse_global[stem]}.{suffix}"


def relative_change(before: Model, after: Model) -> float:
    """‖Δ‖/‖W‖ over all tensors present in both models with the same shape."""
    num = 0.0
    den = 0.0
    for name, old in before.tensors.items():
        new = after.tensors.get(name)
        if new is None or new.shape != old.shape:
            continue
        diff = new.astype(np.float64) - old
        num += float(np.vdot(diff, diff))
        den += float(np.vdot(old.astype(np.float64), old))
    return math.sqrt(num / den) if den else 0.0
