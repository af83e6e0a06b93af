"""Loading sealed models: plaintext only in this process's memory.

Ciphertext comes through the hub's normal downloads, keys by policy. `open_sealed` downloads
(or finds in the Hugging Face cache) the revision's sealed files, asks the hub for their keys
with a fresh ephemeral X25519 key pair and challenge nonce (and attestation evidence when an
`evidence` callable is given), and returns a `SealedModel` whose tensors are decrypted on
demand (`sealed_checkpoint`). Nothing in the clear is ever written to a file.

Where tensors go:

- `device="cpu"` (default): numpy arrays (`framework="np"`) or torch tensors (`"pt"`).
- a torch accelerator (`"cuda"`, `"cuda:1"`): each tensor is decrypted a slice at a time into
  one small pinned staging buffer, copied to the device, and the buffer wiped, so at most one
  slice (`stage_bytes`) of plaintext sits in host memory at any time. Decrypting on the device
  itself (plaintext never in host memory) is designed in docs/distribution.md, not built.
"""

from __future__ import annotations

import base64
import glob
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kaiyuan.client.api import HubClient
from kaiyuan.client.sealed_checkpoint import STAGE_BYTES, SealedCheckpoint
from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.services.distribution.sealing import open_released

# evidence(nonce, public_key) -> attestation evidence for the hub's verifier, or None
Evidence = Callable[[bytes, bytes], Mapping[str, Any] | None]

_OPEN_OPTIONS = frozenset(
    {
        "revision",
        "repo_type",
        "endpoint",
        "token",
        "framework",
        "device",
        "evidence",
        "cache_dir",
        "local_dir",
        "stage_bytes",
    }
)


@dataclass(frozen=True, slots=True)
class SealedFileRef:
    path: str
    sha256: str
    file_id: str
    plaintext_size: int


class SealedModel:
    """The sealed safetensors files of one revision, as one mapping of tensor names."""

    def __init__(self, revision: str, checkpoints: list[SealedCheckpoint]) -> None:
        self.revision = revision
        self.checkpoints = checkpoints
        self._where: dict[str, SealedCheckpoint] = {}
        for checkpoint in checkpoints:
            for name in checkpoint.keys():  # noqa: SIM118 - not a dict
                if name in self._where:
                    raise IntegrityError(f"tensor {name!r} is in two sealed files")
                self._where[name] = checkpoint

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.checkpoints]

    def keys(self) -> list[str]:
        return list(self._where)

    def get_tensor(self, name: str) -> Any:
        return self._where[name].get_tensor(name)

    def load_into(self, targets: Mapping[str, Any]) -> None:
        """Decrypt into existing tensors (see `SealedCheckpoint.load_into`); unknown names fail."""
        unknown = sorted(set(targets) - set(self._where))
        if unknown:
            raise KeyError(unknown[0])
        for checkpoint in self.checkpoints:
            checkpoint.load_into({k: v for k, v in targets.items() if k in checkpoint})

    def load(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for checkpoint in self.checkpoints:
            merged.update(checkpoint.load())
        return merged

    def close(self) -> None:
        for checkpoint in self.checkpoints:
            checkpoint.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def open_sealed(
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | None = None,
    framework: str = "np",
    device: str = "cpu",
    evidence: Evidence | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    stage_bytes: int = STAGE_BYTES,
) -> SealedModel:
    """The sealed safetensors files of a revision, ready to decrypt in memory.

    The ciphertext is fetched with `huggingface_hub` (so it lands in, and is reused from, the
    normal cache, or `local_dir`); the keys come from the hub's key-release endpoint.
    """
    from huggingface_hub import constants, get_token, hf_hub_download  # noqa: PLC0415

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    token = token or get_token()
    hub = HubClient(endpoint, token)
    listing = hub.sealing(repo_type, repo_id, revision)
    commit = str(listing.get("revision") or "")
    files = [
        SealedFileRef(str(f["path"]), str(f["sha256"]), str(f["file_id"]), int(f["plaintext_size"]))
        for f in listing.get("files") or []
        if str(f.get("path", "")).endswith(".safetensors")
    ]
    if not files:
        raise InvalidInputError(f"{repo_id}@{commit[:12]} has no sealed safetensors files")
    local = {
        f.path: Path(
            hf_hub_download(
                repo_id,
                f.path,
                repo_type=repo_type,
                revision=commit,
                endpoint=endpoint,
                token=token,
                cache_dir=cache_dir,
                local_dir=local_dir,
            )
        )
        for f in files
    }
    keys = _obtain_keys(hub, repo_type, repo_id, commit, files, evidence)
    checkpoints: list[SealedCheckpoint] = []
    try:
        for f in files:
            checkpoints.append(
                SealedCheckpoint(
                    local[f.path],
                    keys[f.path],
                    f.path,
                    framework=framework,
                    device=device,
                    stage_bytes=stage_bytes,
                )
            )
            _same_sealing(checkpoints[-1], f)
        return SealedModel(commit, checkpoints)
    except BaseException:
        for checkpoint in checkpoints:
            checkpoint.close()
        raise
    finally:
        keys.clear()


def _same_sealing(checkpoint: SealedCheckpoint, wanted: SealedFileRef) -> None:
    if checkpoint.file_id != wanted.file_id:
        raise IntegrityError(f"{wanted.path}: the downloaded file is another sealing")


def _obtain_keys(
    hub: HubClient,
    repo_type: str,
    repo_id: str,
    commit: str,
    files: list[SealedFileRef],
    evidence: Evidence | None,
) -> dict[str, bytes]:
    """The files' data keys, released sealed to a key pair that lives only for this call."""
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    nonce_hex = str(hub.sealing_challenge(repo_type, repo_id).get("nonce") or "")
    nonce = bytes.fromhex(nonce_hex)
    request: dict[str, Any] = {
        "public_key": base64.b64encode(public).decode(),
        "nonce": nonce_hex,
        "revision": commit,
        "paths": [f.path for f in files],
    }
    if evidence is not None:
        made = evidence(nonce, public)
        if made is not None:
            request["evidence"] = dict(made)
    answer = hub.sealed_keys(repo_type, repo_id, request)
    if answer.get("revision") != commit:
        raise IntegrityError("the hub released keys for another revision")
    by_path = {f.path: f for f in files}
    keys: dict[str, bytes] = {}
    for item in answer.get("keys") or []:
        wanted = by_path.get(str(item.get("path")))
        if wanted is None or item.get("file_id") != wanted.file_id:
            raise IntegrityError("the hub released a key for a file that was not asked for")
        sealed_key = base64.b64decode(str(item.get("sealed_key") or ""))
        keys[wanted.path] = open_released(private, sealed_key, wanted.file_id, nonce)
    missing = sorted(set(by_path) - set(keys))
    if missing:
        raise IntegrityError(f"no key released for {missing[0]}")
    return keys


def load(repo_id: str, **options: Any) -> dict[str, Any]:
    """Every tensor of a sealed model's revision, decrypted in memory (see `open_sealed`)."""
    with open_sealed(repo_id, **options) as model:
        return model.load()


def from_pretrained(model_class: Any, repo_id: str, **options: Any) -> Any:
    """A transformers model whose weights are sealed: `AutoModelForCausalLM` or any class.

    The configuration (and other files in the clear) come from a normal snapshot download that
    leaves the sealed files out; the weights are decrypted in memory and handed over as the
    state dict. Keyword arguments `open_sealed` knows go to it, the rest to `from_pretrained`.
    """
    from huggingface_hub import constants, snapshot_download  # noqa: PLC0415
    from transformers import AutoConfig  # noqa: PLC0415

    sealed_options = {k: v for k, v in options.items() if k in _OPEN_OPTIONS}
    sealed_options["framework"] = "pt"
    model_options = {k: v for k, v in options.items() if k not in _OPEN_OPTIONS}
    with open_sealed(repo_id, **sealed_options) as model:
        state_dict = model.load()
        folder = snapshot_download(
            repo_id,
            repo_type=sealed_options.get("repo_type", "model"),
            revision=model.revision,
            endpoint=(sealed_options.get("endpoint") or constants.ENDPOINT).rstrip("/"),
            token=sealed_options.get("token"),
            cache_dir=sealed_options.get("cache_dir"),
            ignore_patterns=[glob.escape(p) for p in model.paths],
        )
    config = AutoConfig.from_pretrained(folder)
    if hasattr(model_class, "from_config") and not hasattr(model_class, "config_class"):
        # An Auto class: find the concrete class for this configuration (built on the meta
        # device, so nothing is allocated or initialised).
        import torch  # noqa: PLC0415

        with torch.device("meta"):
            model_class = type(model_class.from_config(config))
    return model_class.from_pretrained(None, config=config, state_dict=state_dict, **model_options)
