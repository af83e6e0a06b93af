"""The derivative suite: real models, their derivatives, independent models, and the verdicts.

Parents are the real models PyPI packages ship: all-MiniLM-L6-v2 (BERT, safetensors),
SmolLM2-135M-Instruct (LLaMA, GGUF Q4_1) and Gemma-3-270M (GGUF Q4_K_M). Each case builds a model
on disk (in a format of its own, so every reader is exercised) and is compared with every parent:
a derivative must score above the threshold against its true parent, which must rank first, and
below it against the others; an independent model must score below the threshold against all.
`tests/integration/test_provenance_suite.py` asserts this; `benchmarks/provenance.py --suite`
prints the table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from kaiyuan.services.provenance.compare import Comparison, compare
from kaiyuan.services.provenance.layout import ModelLayout
from kaiyuan.services.provenance.model import open_local
from tests.provenance_models import derive, training
from tests.provenance_models.real import RealModels
from tests.provenance_models.weights import (
    Model,
    load_bert,
    load_gguf_llama,
    load_model,
    save_gguf,
    save_safetensors,
)

PARENTS = ("minilm", "smollm2", "gemma3")


@dataclass(frozen=True)
class Case:
    name: str
    parent: str | None  # the true parent among PARENTS; None for an independent model
    build: Callable[[Bases, Path], Path]  # writes the model under the folder, returns its path
    what: str  # the real-world derivation it stands for


class Bases:
    """The parents, loaded once as in-memory models (numpy, Hugging Face names)."""

    def __init__(self, real: RealModels) -> None:
        self.real = real

    @property
    @cache  # noqa: B019 - one Bases per session
    def minilm(self) -> Model:
        return load_bert(self.real.minilm)

    @property
    @cache  # noqa: B019
    def smollm2(self) -> Model:
        return load_gguf_llama(self.real.smollm2)

    @property
    @cache  # noqa: B019
    def minilm_finetunes(self) -> tuple[Model, Model]:
        return (
            training.finetune(self.minilm, steps=10, lr=1e-4, seed=1),
            training.finetune(self.minilm, steps=10, lr=1e-4, seed=2),
        )

    @property
    @cache  # noqa: B019
    def smollm2_finetune(self) -> Model:
        return training.finetune(self.smollm2, steps=8, lr=5e-4, seed=1)


def _st(model: Model, folder: Path, **options: object) -> Path:
    save_safetensors(model, folder, **options)  # type: ignore[arg-type]
    return folder


def _gguf(model: Model, folder: Path, qtype: str = "Q8_0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return save_gguf(model, folder / "model.gguf", qtype)


def _onnx(model: Model, folder: Path) -> Path:
    """The model exported to ONNX by torch's exporter (anonymous `onnx::MatMul_*` weights)."""
    import shutil

    import torch
    from transformers import BertModel

    source = folder / "source"
    save_safetensors(model, source)
    bert = BertModel.from_pretrained(str(source)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids).last_hidden_state  # type: ignore[no-any-return]

    out = folder / "onnx"
    out.mkdir(parents=True)
    torch.onnx.export(
        Hidden(),
        (torch.tensor([[101, 2023, 102]]),),
        str(out / "model.onnx"),
        dynamo=False,
        opset_version=17,
    )
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, out / name)
    shutil.rmtree(source)
    return out


def _keep(fraction: float, size: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(size, size=int(size * fraction), replace=False).tolist())


CASES: tuple[Case, ...] = (
    # --- BERT: all-MiniLM-L6-v2 -------------------------------------------------------------------
    Case(
        "minilm finetune (10 steps)",
        "minilm",
        lambda b, f: _st(b.minilm_finetunes[0], f),
        "supervised fine-tuning",
    ),
    Case(
        "minilm continued training (60 steps, lr 1e-3)",
        "minilm",
        lambda b, f: _st(
            training.finetune(b.minilm, steps=60, lr=1e-3, seed=3), f, shard_bytes=30_000_000
        ),
        "continued pretraining, sharded checkpoint",
    ),
    Case(
        "minilm fine-tune exported to ONNX",
        "minilm",
        lambda b, f: _onnx(b.minilm_finetunes[1], f),
        "ONNX export, anonymous weight names",
    ),
    Case(
        "minilm int8",
        "minilm",
        lambda b, f: _st(derive.quantize_roundtrip(b.minilm, "int8"), f),
        "int8 export",
    ),
    Case(
        "minilm 4-bit",
        "minilm",
        lambda b, f: _st(derive.quantize_roundtrip(b.minilm, "4bit"), f, dtype="float16"),
        "4-bit quantisation, shipped as float16",
    ),
    Case(
        "minilm pruned 30%",
        "minilm",
        lambda b, f: _st(derive.prune(b.minilm, 0.3), f),
        "magnitude pruning",
    ),
    Case(
        "minilm pruned 50%",
        "minilm",
        lambda b, f: _st(derive.prune(b.minilm, 0.5), f),
        "magnitude pruning",
    ),
    Case(
        "minilm permuted",
        "minilm",
        lambda b, f: _st(derive.permute_hidden(b.minilm, seed=4), f),
        "hidden units, heads and neurons permuted",
    ),
    Case(
        "minilm q/k and v/o rescaled",
        "minilm",
        lambda b, f: _st(derive.scale_vo(derive.scale_qk(b.minilm, 3.0), 0.25), f),
        "function-preserving rescaling",
    ),
    Case(
        "minilm vocabulary cut to 30%",
        "minilm",
        lambda b, f: _st(derive.prune_vocab(b.minilm, _keep(0.3, len(b.minilm.tokens), 5)), f),
        "vocabulary trimming",
    ),
    Case(
        "minilm vocabulary +30%",
        "minilm",
        lambda b, f: _st(derive.extend_vocab(b.minilm, len(b.minilm.tokens) * 3 // 10, 6), f),
        "vocabulary extension, ids reshuffled",
    ),
    Case(
        "minilm layers 0,2,4 kept",
        "minilm",
        lambda b, f: _st(derive.drop_layers(b.minilm, [0, 2, 4]), f),
        "depth pruning",
    ),
    Case(
        "minilm layers duplicated",
        "minilm",
        lambda b, f: _st(derive.duplicate_layers(b.minilm, [0, 1, 2, 2, 3, 4, 5, 5]), f),
        "depth up-scaling",
    ),
    Case(
        "minilm merge of two fine-tunes",
        "minilm",
        lambda b, f: _st(derive.merge(*b.minilm_finetunes, 0.5), f),
        "linear merge",
    ),
    Case(
        "minilm noise 0.3 sigma",
        "minilm",
        lambda b, f: _st(derive.add_noise(b.minilm, 0.3, 7), f),
        "a copy plus noise",
    ),
    Case(
        "minilm noise 1 sigma",
        "minilm",
        lambda b, f: _st(derive.add_noise(b.minilm, 1.0, 8), f),
        "a copy plus heavy noise",
    ),
    Case(
        "minilm permute+scale+noise+4bit",
        "minilm",
        lambda b, f: _st(
            derive.quantize_roundtrip(
                derive.add_noise(
                    derive.scale_qk(derive.permute_hidden(b.minilm_finetunes[1], 9), 2.0), 0.3, 10
                ),
                "4bit",
            ),
            f,
        ),
        "a disguised fine-tune",
    ),
    # --- LLaMA: SmolLM2-135M ----------------------------------------------------------------------
    Case(
        "smollm2 finetune",
        "smollm2",
        lambda b, f: _gguf(b.smollm2_finetune, f, "Q8_0"),
        "fine-tuning, GGUF Q8_0",
    ),
    Case(
        "smollm2 requantised Q4_0",
        "smollm2",
        lambda b, f: _gguf(b.smollm2, f, "Q4_0"),
        "re-quantisation",
    ),
    Case(
        "smollm2 as safetensors",
        "smollm2",
        lambda b, f: _st(b.smollm2, f, dtype="float16"),
        "format conversion (Q/K order undone)",
    ),
    Case(
        "smollm2 permuted",
        "smollm2",
        lambda b, f: _gguf(derive.permute_hidden(b.smollm2, 11), f),
        "permutation",
    ),
    Case(
        "smollm2 rotated",
        "smollm2",
        lambda b, f: _st(derive.rotate_residual(b.smollm2, 12), f),
        "SliceGPT-style rotation",
    ),
    Case(
        "smollm2 norms folded",
        "smollm2",
        lambda b, f: _st(derive.fold_norms(b.smollm2), f),
        "norm gains folded",
    ),
    Case(
        "smollm2 q/k rescaled per head",
        "smollm2",
        lambda b, f: _gguf(derive.scale_qk(b.smollm2, [0.5, 2.0, 4.0]), f),
        "rescaling",
    ),
    Case(
        "smollm2 pruned 50%",
        "smollm2",
        lambda b, f: _st(derive.prune(b.smollm2, 0.5), f),
        "magnitude pruning",
    ),
    Case(
        "smollm2 vocabulary +25%",
        "smollm2",
        lambda b, f: _gguf(derive.extend_vocab(b.smollm2, len(b.smollm2.tokens) // 4, 13), f),
        "vocabulary extension (Chinese-LLaMA style)",
    ),
    Case(
        "smollm2 vocabulary cut to 40%",
        "smollm2",
        lambda b, f: _st(derive.prune_vocab(b.smollm2, _keep(0.4, len(b.smollm2.tokens), 14)), f),
        "vocabulary trimming",
    ),
    Case(
        "smollm2 every 3rd layer removed",
        "smollm2",
        lambda b, f: _st(derive.drop_layers(b.smollm2, [i for i in range(30) if i % 3 != 2]), f),
        "depth pruning (30 to 20 layers)",
    ),
    Case(
        "smollm2 depth up-scaled to 40",
        "smollm2",
        lambda b, f: _st(
            derive.duplicate_layers(b.smollm2, [*range(20), *range(10, 30)]),
            f,
            shard_bytes=200_000_000,
        ),
        "SOLAR-style depth up-scaling, sharded",
    ),
    Case(
        "smollm2 merge of fine-tune and noisy copy",
        "smollm2",
        lambda b, f: _gguf(
            derive.merge(b.smollm2_finetune, derive.add_noise(b.smollm2, 0.2, 15), 0.5), f
        ),
        "merge",
    ),
    Case(
        "smollm2 permute+scale+noise+4bit+vocab",
        "smollm2",
        lambda b, f: _gguf(
            derive.extend_vocab(
                derive.add_noise(
                    derive.scale_qk(derive.permute_hidden(b.smollm2, 16), 2.0), 0.3, 17
                ),
                len(b.smollm2.tokens) // 10,
                18,
            ),
            f,
            "Q4_0",
        ),
        "a disguised derivative",
    ),
    # --- independent models -----------------------------------------------------------------------
    Case(
        "random, MiniLM's shapes and statistics",
        None,
        lambda b, f: _st(derive.random_like(b.minilm, 20), f),
        "never trained",
    ),
    Case(
        "MiniLM's entries shuffled",
        None,
        lambda b, f: _st(derive.shuffle_entries(b.minilm, 21), f),
        "same values, no structure",
    ),
    Case(
        "MiniLM's shape trained from scratch",
        None,
        lambda b, f: _st(
            training.train_from_scratch(
                b.minilm.config, "bert", b.minilm.tokens, steps=30, seed=22
            ),
            f,
        ),
        "independently trained, same shape",
    ),
    Case(
        "random, SmolLM2's shapes and statistics",
        None,
        lambda b, f: _gguf(derive.random_like(b.smollm2, 23), f),
        "never trained",
    ),
    Case("Gemma-3-270M", None, lambda b, _f: b.real.gemma3, "another family"),
)


@dataclass(frozen=True)
class Row:
    case: Case
    scores: dict[str, Comparison]  # against each parent
    seconds: float  # building the model

    @property
    def ranked(self) -> list[str]:
        return sorted(self.scores, key=lambda p: -self.scores[p].score)


@cache
def _parent_layout(real: RealModels, name: str) -> ModelLayout:
    return open_local(dataclasses.asdict(real)[name]).layout


def evaluate(case: Case, bases: Bases, folder: Path) -> Row:
    """Build the case's model and compare it with every parent."""
    started = time.perf_counter()
    target = case.build(bases, folder)
    built = time.perf_counter() - started
    layout = open_local(target).layout
    scores = {
        parent: compare(layout, _parent_layout(bases.real, parent))
        for parent in PARENTS
        if not (case.parent is None and target == dataclasses.asdict(bases.real)[parent])
    }
    return Row(case, scores, built)


def accuracy_table(real: RealModels, folder: Path | None = None) -> str:
    """Every case evaluated, as a text table (the benchmark prints it)."""
    import tempfile

    bases = Bases(real)
    lines = [
        (
            f"{'case':<44}{'true parent':>12}{'score':>8}{'thresh':>8}{'null':>7}  {'relation':<16}"
            f"{'rank':>5}{'best other':>12}"
        )
    ]
    with tempfile.TemporaryDirectory(prefix="kaiyuan-suite-") as tmp:
        root = folder or Path(tmp)
        for index, case in enumerate(CASES):
            row = evaluate(case, bases, root / f"case{index}")
            lines.append(format_row(row))
    return "\n".join(lines)


def format_row(row: Row) -> str:
    case = row.case
    others = [s.score for p, s in row.scores.items() if p != case.parent]
    best_other = max(others) if others else float("nan")
    if case.parent is None:
        top = max(row.scores.values(), key=lambda c: c.score)
        return (
            f"{case.name:<44}{'(none)':>12}{top.score:>8.3f}{top.threshold:>8.3f}"
            f"{top.null_level:>7.3f}  {top.relation.value:<16}{'-':>5}{best_other:>12.3f}"
        )
    own = row.scores[case.parent]
    rank = row.ranked.index(case.parent) + 1
    return (
        f"{case.name:<44}{case.parent:>12}{own.score:>8.3f}{own.threshold:>8.3f}"
        f"{own.null_level:>7.3f}  {own.relation.value:<16}{rank:>5}{best_other:>12.3f}"
    )


def load_saved(path: Path) -> Model:
    """A case's model read back with the test loader (for checks that need the numbers)."""
    return load_model(path)
