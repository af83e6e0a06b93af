"""Self-check of the provenance test models: fetch, load, derive, verify, train; print timings.

Run from the repository root::

    python -m tests.provenance_models.selfcheck            # everything (a few minutes on 2 cores)
    python tests/provenance_models/selfcheck.py --no-training --no-gemma

It checks that the loaders match transformers' own forward passes on the real weights, that the
GGUF Q/K un-permutation is right (round trip, and a lower next-token loss than without it), that
the writers round-trip, that every function-preserving derivative really preserves the function
(relative output error below 1e-4), and it reports the relative weight change
``||delta|| / ||W||`` of every derivative and of the real training runs. Exit status 1 on a failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tests.provenance_models.weights import Model

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see training.py

TOLERANCE = 1e-4
_failures: list[str] = []


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _check(ok: bool, what: str) -> str:
    if not ok:
        _failures.append(what)
    return "ok" if ok else "FAIL"


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


# --- pieces --------------------------------------------------------------------------------------


def _probe_ids(model: Model) -> list[int]:
    """A short real sentence in the model's own vocabulary."""
    from tests.provenance_models.training import encode

    if model.arch == "bert":
        vocab = {t: i for i, t in enumerate(model.tokens)}
        body = encode(model, "The capital of France is Paris. 今天")
        return [vocab["[CLS]"], *body, vocab["[SEP]"]]
    prefix = [model.tokens.index("<bos>")] if model.arch == "gemma3" else []
    return prefix + encode(model, "The capital of France is Paris. The capital of Germany is")


def _outputs(model: Model, ids: list[int]) -> list[np.ndarray]:
    """What must not change under a function-preserving edit (BERT: pooled output and the Gram
    matrix of the hidden states, which ignores the hidden basis; decoders: logits)."""
    from tests.provenance_models.derive import forward, forward_bert

    if model.arch == "bert":
        hidden = forward_bert(model, ids)
        return [forward_bert(model, ids, pooled=True), hidden @ hidden.T]
    return [forward(model, ids)]


def _fingerprint(model: Model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(model.tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(model.tensors[name]).tobytes())
    digest.update("\n".join(model.tokens).encode())
    return digest.hexdigest()


def _nll(logits: np.ndarray, ids: list[int]) -> float:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.mean([logp[i, ids[i + 1]] for i in range(len(ids) - 1)]))


def check_parity(model: Model, ids: list[int]) -> None:
    """The numpy forward pass equals transformers' on the loaded weights (names, layout, config)."""
    import torch

    from tests.provenance_models.derive import forward
    from tests.provenance_models.training import _build, _load

    module = _build(model.arch, model.config)
    _load(module, model)
    module.eval()
    with torch.no_grad():
        out = module(input_ids=torch.tensor([ids]))
    ref = (out.last_hidden_state if model.arch == "bert" else out.logits)[0].double().numpy()
    ours = forward(model, ids)
    err = _rel(ref, ours)
    status = _check(err < TOLERANCE, f"{model.arch} parity with transformers")
    _say(
        f"  forward parity with transformers ({type(module).__name__}): rel err {err:.1e} {status}"
    )
    if model.arch != "bert":
        top = model.tokens[int(ours[-1].argmax())]
        _say(
            f"  next token after '...The capital of Germany is': {top!r}  nll {_nll(ours, ids):.3f}"
        )


def check_unpermute(smollm2: Model, ids: list[int]) -> None:
    from tests.provenance_models.derive import forward_llama
    from tests.provenance_models.weights import permute_qk, unpermute_qk

    rng = np.random.default_rng(0)
    w = rng.standard_normal((192, 576)).astype(np.float32)
    exact = np.array_equal(unpermute_qk(permute_qk(w, 3), 3), w) and np.array_equal(
        permute_qk(unpermute_qk(w, 3), 3), w
    )
    _say(f"  permute_qk / unpermute_qk exact inverses: {_check(exact, 'qk round trip')}")
    raw = dict(smollm2.tensors)
    for i in range(smollm2.num_layers):
        for proj, heads in (("q_proj", smollm2.num_heads), ("k_proj", smollm2.num_kv_heads)):
            name = f"model.layers.{i}.self_attn.{proj}.weight"
            raw[name] = permute_qk(raw[name], heads)
    good = _nll(forward_llama(smollm2, ids), ids)
    bad = _nll(forward_llama(smollm2.replace(tensors=raw), ids), ids)
    status = _check(good < bad, "un-permuted Q/K give the lower loss")
    _say(f"  next-token nll with Q/K un-permuted {good:.3f} vs GGUF row order {bad:.3f} {status}")


def check_writers(minilm: Model, smollm2: Model, folder: Path) -> None:
    import tokenizers

    from tests.provenance_models.derive import forward_llama
    from tests.provenance_models.weights import load_model, save_gguf, save_safetensors

    (files, seconds) = _timed(
        lambda: save_safetensors(minilm, folder / "bert", shard_bytes=30_000_000)
    )
    back = load_model(folder / "bert")
    same = back.tokens == minilm.tokens and all(
        np.array_equal(back.tensors[k], v) for k, v in minilm.tensors.items()
    )
    tok = tokenizers.Tokenizer.from_file(str(folder / "bert" / "tokenizer.json"))
    encoded = tok.encode("hello world").tokens
    _say(
        f"  safetensors (BERT, {len(files)} shards) round trip {_check(same, 'bert st round trip')}"
        f" in {seconds:.1f}s; tokenizer.json loads: {encoded}"
    )
    (_, seconds) = _timed(lambda: save_safetensors(smollm2, folder / "llama"))
    back = load_model(folder / "llama")
    same = back.tokens == smollm2.tokens and all(
        np.array_equal(back.tensors[k], v) for k, v in smollm2.tensors.items()
    )
    tok = tokenizers.Tokenizer.from_file(str(folder / "llama" / "tokenizer.json"))
    _say(
        f"  safetensors (LLaMA) round trip {_check(same, 'llama st round trip')} in {seconds:.1f}s;"
        f" tokenizer.json vocab {tok.get_vocab_size()}"
    )
    ids = _probe_ids(smollm2)
    base = forward_llama(smollm2, ids)
    for qtype in ("F16", "Q8_0", "Q4_0"):
        path, seconds = _timed(lambda q=qtype: save_gguf(smollm2, folder / f"m-{q}.gguf", q))
        back = load_model(path)
        weight_err = _rel(
            smollm2.tensors["model.layers.3.self_attn.q_proj.weight"],
            back.tensors["model.layers.3.self_attn.q_proj.weight"],
        )
        out_err = _rel(base, forward_llama(back, ids))
        ok = back.tokens == smollm2.tokens and weight_err < 0.2
        _say(
            f"  save_gguf {qtype:<5} {path.stat().st_size / 1e6:6.1f} MB in {seconds:4.1f}s, reloaded: "
            f"q_proj rel err {weight_err:.4f}, logits rel err {out_err:.4f} {_check(ok, f'gguf {qtype}')}"
        )
        path.unlink()


def derivative_table(
    name: str, model: Model, cases: dict[str, tuple[Callable[[Model], Model], bool]]
) -> None:
    from tests.provenance_models.weights import relative_change

    ids = _probe_ids(model)
    base = _outputs(model, ids)
    before = _fingerprint(model)
    _say(f"  {'derivative':<34}{'time':>7}  {'|d|/|W|':>8}  function check")
    for label, (fn, preserving) in cases.items():
        derived, seconds = _timed(lambda f=fn: f(model))
        comparable = derived.num_layers == model.num_layers and all(
            k in derived.tensors and derived.tensors[k].shape == v.shape
            for k, v in model.tensors.items()
        )
        change = f"{relative_change(model, derived):8.4f}" if comparable else f"{'n/a':>8}"
        note = ""
        if preserving:
            errors = [_rel(a, b) for a, b in zip(base, _outputs(derived, ids), strict=True)]
            worst = max(errors)
            note = f"rel err {worst:.1e} {_check(worst < TOLERANCE, f'{name} {label} preserves')}"
        shape = f"{derived.num_layers}L vocab {len(derived.tokens)}"
        _say(f"  {label:<34}{seconds:6.2f}s  {change}  {note or shape}")
        del derived
    seeded = [
        fn
        for label, (fn, _) in cases.items()
        if label.startswith(("permute_hidden", "add_noise", "extend_vocab", "random_like"))
    ][:3]
    same = all(_fingerprint(fn(model)) == _fingerprint(fn(model)) for fn in seeded)
    untouched = _fingerprint(model) == before
    _say(
        f"  input untouched by all of the above: {_check(untouched, f'{name} input not mutated')};"
        f" same seed, same result: {_check(same, f'{name} deterministic')}"
    )


def _minilm_cases() -> dict[str, tuple[Callable[[Model], Model], bool]]:
    from functools import partial

    from tests.provenance_models import derive as d

    rng = np.random.default_rng(5)
    return {
        "permute_hidden": (partial(d.permute_hidden, seed=1), True),
        "scale_qk(3.0)": (partial(d.scale_qk, c=3.0), True),
        "scale_qk(per head)": (partial(d.scale_qk, c=np.linspace(0.25, 4.0, 12)), True),
        "scale_vo(0.25)": (partial(d.scale_vo, c=0.25), True),
        "permute+scale_qk+scale_vo": (
            lambda m: d.scale_vo(d.scale_qk(d.permute_hidden(m, seed=2), 2.0), 0.5),
            True,
        ),
        "add_noise(0.1)": (partial(d.add_noise, rel_sigma=0.1, seed=3), False),
        "add_noise(1/708) (Llama3-V)": (partial(d.add_noise, rel_sigma=1 / 708, seed=3), False),
        "quantize int8": (partial(d.quantize_roundtrip, kind="int8"), False),
        "quantize 4bit": (partial(d.quantize_roundtrip, kind="4bit"), False),
        "prune 0.3": (partial(d.prune, fraction=0.3), False),
        "prune 0.5": (partial(d.prune, fraction=0.5), False),
        "prune_vocab 30%": (
            lambda m: d.prune_vocab(
                m, sorted(rng.choice(len(m.tokens), len(m.tokens) * 3 // 10, replace=False))
            ),
            False,
        ),
        "extend_vocab +30%": (lambda m: d.extend_vocab(m, len(m.tokens) * 3 // 10, seed=4), False),
        "drop_layers [0,2,4]": (lambda m: d.drop_layers(m, [0, 2, 4]), False),
        "duplicate_layers 0-5,2-5": (
            lambda m: d.duplicate_layers(m, [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]),
            False,
        ),
        "merge(self, noisy, 0.5)": (
            lambda m: d.merge(m, d.add_noise(m, 0.3, seed=6), 0.5),
            False,
        ),
        "random_like": (partial(d.random_like, seed=7), False),
        "shuffle_entries": (partial(d.shuffle_entries, seed=8), False),
    }


def _llama_cases() -> dict[str, tuple[Callable[[Model], Model], bool]]:
    from functools import partial

    from tests.provenance_models import derive as d

    return {
        "permute_hidden (GQA 9q/3kv)": (partial(d.permute_hidden, seed=1), True),
        "scale_qk([0.5,2,4])": (partial(d.scale_qk, c=[0.5, 2.0, 4.0]), True),
        "scale_vo(3.0)": (partial(d.scale_vo, c=3.0), True),
        "fold_norms": (d.fold_norms, True),
        "rotate_residual (SliceGPT)": (partial(d.rotate_residual, seed=2), True),
        "rotate+permute+scale": (
            lambda m: d.scale_qk(d.permute_hidden(d.rotate_residual(m, 3), 4), 2.0),
            True,
        ),
        "add_noise(0.3)": (partial(d.add_noise, rel_sigma=0.3, seed=5), False),
        "quantize int8": (partial(d.quantize_roundtrip, kind="int8"), False),
        "quantize 4bit": (partial(d.quantize_roundtrip, kind="4bit"), False),
        "prune 0.5": (partial(d.prune, fraction=0.5), False),
        "extend_vocab +25%": (lambda m: d.extend_vocab(m, len(m.tokens) // 4, seed=6), False),
        "prune_vocab first 20k": (lambda m: d.prune_vocab(m, list(range(20_000))), False),
        "drop every 3rd layer": (
            lambda m: d.drop_layers(m, [i for i in range(m.num_layers) if i % 3 != 2]),
            False,
        ),
        "depth up-scale 30->40": (
            lambda m: d.duplicate_layers(m, [*range(20), *range(10, 30)]),
            False,
        ),
        "random_like": (partial(d.random_like, seed=7), False),
    }


def _gemma_cases() -> dict[str, tuple[Callable[[Model], Model], bool]]:
    from functools import partial

    from tests.provenance_models import derive as d

    return {
        "permute_hidden": (partial(d.permute_hidden, seed=1), True),
        "scale_vo(3.0)": (partial(d.scale_vo, c=3.0), True),
        "fold_norms (pre-norms)": (d.fold_norms, True),
        "permute+noise 0.3+4bit": (
            lambda m: d.quantize_roundtrip(d.add_noise(d.permute_hidden(m, 2), 0.3, 3), "4bit"),
            False,
        ),
    }


def training_table(minilm: Model, smollm2: Model) -> None:
    from tests.provenance_models.training import TORCH_THREADS, finetune, train_from_scratch
    from tests.provenance_models.weights import relative_change

    _say(f"  torch threads: {TORCH_THREADS}")
    _say(f"  {'run':<44}{'time':>7}  {'|d|/|W|':>8}  loss first -> last")
    runs: list[tuple[str, Model, Callable[[], Model]]] = [
        ("MiniLM fine-tune 20 steps lr 1e-4", minilm, lambda: finetune(minilm, 20, 1e-4, seed=1)),
        (
            "MiniLM continued training 200 steps lr 3e-4",
            minilm,
            lambda: finetune(minilm, 200, 3e-4, seed=2),
        ),
        (
            "SmolLM2 fine-tune 20 steps lr 5e-4",
            smollm2,
            lambda: finetune(smollm2, 20, 5e-4, seed=3),
        ),
        (
            "MiniLM shape from scratch 50 steps lr 1e-3",
            minilm,
            lambda: train_from_scratch(minilm.config, "bert", minilm.tokens, 50, seed=4),
        ),
    ]
    for label, parent, run in runs:
        trained, seconds = _timed(run)
        losses = trained.notes["train_losses"]
        head, tail = np.mean(losses[:3]), np.mean(losses[-3:])
        _say(
            f"  {label:<44}{seconds:6.1f}s  {relative_change(parent, trained):8.4f}  "
            f"{head:.3f} -> {tail:.3f}"
        )
        del trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-training", action="store_true", help="skip the torch training runs")
    parser.add_argument("--no-gemma", action="store_true", help="skip Gemma-3 (1.1 GB in float32)")
    args = parser.parse_args(argv)

    from tests.provenance_models.real import fetch_real_models
    from tests.provenance_models.weights import load_bert, load_gguf_llama

    real, seconds = _timed(fetch_real_models)
    _say(f"fetch_real_models: {seconds:.1f}s -> {real}")
    minilm, seconds = _timed(lambda: load_bert(real.minilm))
    _say(f"load_bert: {seconds:.2f}s {minilm}")
    smollm2, seconds = _timed(lambda: load_gguf_llama(real.smollm2))
    _say(f"load_gguf_llama(SmolLM2): {seconds:.1f}s {smollm2}")

    _say("\n[MiniLM]")
    check_parity(minilm, _probe_ids(minilm))
    _say("\n[SmolLM2]")
    check_parity(smollm2, _probe_ids(smollm2))
    check_unpermute(smollm2, _probe_ids(smollm2))
    _say("\n[writers]")
    with tempfile.TemporaryDirectory(prefix="kaiyuan-selfcheck-") as tmp:
        check_writers(minilm, smollm2, Path(tmp))
    _say("\n[MiniLM derivatives]")
    derivative_table("minilm", minilm, _minilm_cases())
    _say("\n[SmolLM2 derivatives]")
    derivative_table("smollm2", smollm2, _llama_cases())
    if not args.no_gemma:
        gemma, seconds = _timed(lambda: load_gguf_llama(real.gemma3))
        _say(f"\n[Gemma-3-270M] load_gguf_llama: {seconds:.1f}s {gemma}")
        check_parity(gemma, _probe_ids(gemma))
        derivative_table("gemma3", gemma, _gemma_cases())
        del gemma
    if not args.no_training:
        _say("\n[training]")
        training_table(minilm, smollm2)
    _say("")
    if _failures:
        _say(f"FAILED: {', '.join(_failures)}")
        return 1
    _say("all checks passed")
    return 0


if __name__ == "__main__":
    if not __package__:  # run as a file: make `tests.provenance_models` importable
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
