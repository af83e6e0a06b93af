"""transformers `from_pretrained` against a live Kaiyuan (tiny Llama + tokenizer built offline).

transformers reads `HF_ENDPOINT` when it is imported, so every load from the hub runs in a fresh
subprocess with its own `HF_HOME`; the reference values are computed here from the saved folder with
the very same function (`probe`), whose source is sent to the subprocess.
"""

from __future__ import annotations

import inspect
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from tests.support.clients import client_env, run_client_script
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow

TEXT = "hello tiny fox jumps over a lazy hub zebra"
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a tiny model for a tiny hub",
    "hello world from kaiyuan",
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def probe(
    source: str, revision: str | None, token: str | None, text: str, cache_dir: str | None = None
) -> dict[str, Any]:
    """Load config, tokenizer and model from `source`; describe them as JSON-able values."""
    import hashlib

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where = {"revision": revision, "token": token, "cache_dir": cache_dir}
    config = AutoConfig.from_pretrained(source, **where)
    tokenizer = AutoTokenizer.from_pretrained(source, **where)
    model = AutoModelForCausalLM.from_pretrained(source, **where)
    model.eval()
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "ids": ids,
        "tokens": tokenizer.convert_ids_to_tokens(ids),
        "special": [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token],
        "logits_shape": list(logits.shape),
        "logits_sum": float(logits.sum()),
        "logits_last": [round(float(v), 5) for v in logits[0, -1]],
        "weights_sha256": digest.hexdigest(),
    }


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from typing import Any
    {probe}
    results = []
    for args in json.loads(sys.argv[1]):
        try:
            results.append(probe(**args))
        except Exception as exc:  # report any failure to the test
            results.append({{"error": type(exc).__name__, "message": str(exc)}})
    print("RESULT " + json.dumps(results))
    """
)

ANONYMOUS = None


def load_via_hub(
    server: ServerInfo,
    home: Path,
    jobs: list[tuple[str, str | None, str | None]],
    env_token: str | None = None,
) -> list[dict[str, Any]]:
    """Run `probe` on each (repo_id, revision, token) in ONE subprocess that only knows the
    server through HF_ENDPOINT (and the token through HF_TOKEN when `env_token` is given).

    Each job gets its own empty cache directory, so nothing is served from an earlier job's cache.
    """
    home.mkdir(parents=True)
    env = client_env(server.url, home, env_token, TRANSFORMERS_VERBOSITY="error")
    script = _SCRIPT.format(probe=inspect.getsource(probe))
    args = [
        {
            "source": repo_id,
            "revision": revision,
            "token": token,
            "text": TEXT,
            "cache_dir": str(home / f"cache-{i}"),
        }
        for i, (repo_id, revision, token) in enumerate(jobs)
    ]
    results = run_client_script(server, script, args, env)
    assert len(results) == len(jobs)
    return results


def build_model(folder: Path, seed: int, max_shard_size: str | None = None) -> dict[str, Any]:
    """Save a tiny Llama + WordLevel tokenizer into `folder`; return `probe` of that folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        SENTENCES, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[BOS]", "[EOS]"])
    )
    raw.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        special_tokens=[("[BOS]", raw.token_to_id("[BOS]")), ("[EOS]", raw.token_to_id("[EOS]"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if max_shard_size is None:
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
    else:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        assert (folder / "model.safetensors.index.json").is_file()
        assert len(list(folder.glob("model-*-of-*.safetensors"))) > 1
    tokenizer.save_pretrained(folder)
    return probe(str(folder), None, None, TEXT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two tiny models that differ in their weights (seed 0 and 1); v2 is saved in shards."""
    v1, v2 = tmp_path_factory.mktemp("tiny-v1"), tmp_path_factory.mktemp("tiny-v2")
    ref1, ref2 = build_model(v1, seed=0), build_model(v2, seed=1, max_shard_size="20KB")
    assert ref1["weights_sha256"] != ref2["weights_sha256"]
    assert ref1["ids"] == ref2["ids"]
    return {"v1": v1, "v2": v2, "ref1": ref1, "ref2": ref2}


def assert_same_model(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert "error" not in got, got
    assert got["weights_sha256"] == expected["weights_sha256"]
    assert got["ids"] == expected["ids"]
    assert got["tokens"] == expected["tokens"]
    assert got["special"] == expected["special"]
    assert got["logits_shape"] == expected["logits_shape"]
    assert got["logits_sum"] == pytest.approx(expected["logits_sum"], abs=1e-4)
    assert got["logits_last"] == pytest.approx(expected["logits_last"], abs=1e-4)


def test_reference_model_is_meaningful(tiny: dict[str, Any]) -> None:
    """The locally built model really is a 2-layer Llama with a tokenizer that maps `[UNK]`."""
    ref = tiny["ref1"]
    assert ref["model_type"] == "llama"
    assert ref["num_hidden_layers"] == 2
    assert ref["hidden_size"] == 32
    assert ref["tokens"][0] == "[BOS]"
    assert ref["tokens"][-1] == "[EOS]"
    assert "[UNK]" in ref["tokens"]  # "zebra" is not in the vocabulary
    assert ref["logits_shape"] == [1, len(ref["ids"]), ref["vocab_size"]]


def test_from_pretrained_main(server: ServerInfo, tiny: dict[str, Any], tmp_path: Path) -> None:
    """upload_folder (weights through LFS) then Auto*.from_pretrained gives identical outputs."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('tiny-llama')}"
    api.create_repo(repo_id)
    commit = api.upload_folder(folder_path=tiny["v1"], repo_id=repo_id, commit_message="tiny")
    info = api.model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        siblings
    )
    assert siblings["model.safetensors"].lfs is not None, "weights should be stored through LFS"
    assert info.sha == commit.oid

    # token only through HF_TOKEN, as a user of transformers would have it
    [got] = load_via_hub(server, tmp_path / "home", [(repo_id, None, None)], server.alice)
    assert_same_model(got, tiny["ref1"])
    assert got["model_type"] == "llama"
    assert got["vocab_size"] == tiny["ref1"]["vocab_size"]


def test_from_pretrained_tag_branch_and_commit(
    server: ServerInfo, tiny: dict[str, Any], tmp_path: Path
) -> None:
    """A tag, a `/` branch and a commit sha keep serving v1 after main moves to v2 (sharded
    weights + index, the single v1 weights file deleted in the same commit)."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('tiny-llama-tag')}"
    api.create_repo(repo_id)
    first = api.upload_folder(folder_path=tiny["v1"], repo_id=repo_id, commit_message="v1")
    api.create_tag(repo_id, tag="v1.0")
    api.create_branch(repo_id, branch="release/v1")
    api.upload_folder(
        folder_path=tiny["v2"],
        repo_id=repo_id,
        commit_message="v2",
        delete_patterns=["*.safetensors"],
    )
    main_files = set(api.list_repo_files(repo_id))
    assert "model.safetensors" not in main_files
    assert "model.safetensors.index.json" in main_files
    assert "model.safetensors" in api.list_repo_files(repo_id, revision="v1.0")

    revisions = ["v1.0", "release/v1", first.oid, first.oid[:10], "main"]
    results = load_via_hub(
        server, tmp_path / "home", [(repo_id, rev, server.alice) for rev in revisions]
    )
    for revision, got in zip(revisions[:-1], results[:-1], strict=True):
        assert "error" not in got, (revision, got)
        assert_same_model(got, tiny["ref1"])
    assert_same_model(results[-1], tiny["ref2"])


def test_from_pretrained_private_repo(
    server: ServerInfo, tiny: dict[str, Any], tmp_path: Path
) -> None:
    """A private org repo loads with a member's read token; fails anonymously and for bob."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"acme/{unique('tiny-private')}"
    api.create_repo(repo_id, private=True)
    api.upload_folder(folder_path=tiny["v1"], repo_id=repo_id, commit_message="private")

    anonymous, bob, reader = load_via_hub(
        server,
        tmp_path / "home",
        [
            (repo_id, None, ANONYMOUS),
            (repo_id, None, server.bob),
            (repo_id, None, server.tokens["alice_read"]),
        ],
    )
    assert_same_model(reader, tiny["ref1"])
    for label, denied in (("anonymous", anonymous), ("bob", bob)):
        assert denied.get("error") == "OSError", (label, denied)
        # transformers' wording for RepositoryNotFoundError (401/404 + X-Error-Code)
        assert "not a valid model identifier" in denied["message"], (label, denied)


def test_from_pretrained_missing_revision_and_repo(
    server: ServerInfo, tiny: dict[str, Any], tmp_path: Path
) -> None:
    """An unknown revision is reported as RevisionNotFound; an unknown repo as RepoNotFound."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('tiny-norev')}"
    api.create_repo(repo_id)
    api.upload_folder(folder_path=tiny["v1"], repo_id=repo_id, commit_message="tiny")
    bad_revision, bad_repo = load_via_hub(
        server,
        tmp_path / "home",
        [
            (repo_id, "no-such-branch", server.alice),
            (f"alice/{unique('does-not-exist')}", None, server.alice),
        ],
    )
    assert bad_revision.get("error") == "OSError", bad_revision
    assert "is not a valid git identifier" in bad_revision["message"], bad_revision
    assert bad_repo.get("error") == "OSError", bad_repo
    assert "not a valid model identifier" in bad_repo["message"], bad_repo
