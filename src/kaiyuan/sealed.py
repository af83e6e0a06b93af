"""Sealed models, decrypted only in memory: `kaiyuan.sealed.load("org/model", revision=…)`.

- `load(repo_id, revision=None, device="cpu", framework="np", ...)`: every tensor.
- `open_sealed(...)`: a `SealedModel` whose tensors decrypt one at a time (`get_tensor`).
- `from_pretrained(AutoModelForCausalLM, repo_id, ...)`: a transformers model.

The endpoint and token default to huggingface_hub's (`HF_ENDPOINT`, `HF_TOKEN`). See
docs/distribution.md.
"""

from kaiyuan.client.sealed import Evidence, SealedModel, from_pretrained, load, open_sealed
from kaiyuan.client.sealed_checkpoint import SealedCheckpoint

__all__ = [
    "Evidence",
    "SealedCheckpoint",
    "SealedModel",
    "from_pretrained",
    "load",
    "open_sealed",
]
