"""Loading sealed models: plaintext only in this process's memory.

Ciphertext comes through the hub's normal downloads, keys by policy. `open_sealed` downloads
(or finds in the Hugging Face cache) the revision's sealed files, asks
the hub for their keys with a fresh ephemeral X25519 key pair and challenge nonce (and
attestation evidence when an `evidence` callable is given), and returns a `SealedModel` whose
tensors are decrypted on demand: each chunk is authenticated as it is decrypted, straight into
the tensor's own memory. Nothing in the clear is ever written to a file.

Where tensors go:

- `device="cpu"` (default): numpy arrays (`framework="np"`) or torch tensors (`"pt"`).
- a torch accelerator (`"cuda"`, `"cuda:1"`): each tensor is decrypted a slice at a time into
  one small pinned staging buffer, copied to the device, and the buffer wiped, so at most one
  slice (`stage_bytes`) of plaintext sits in host memory at any time. Decrypting on the device
  itself (plaintext never in host memory) is designed in docs/distribution.md, not built.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import mmap
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kaiyuan.client.api import HubClient
from kaiyuan.core.errors import IntegrityError, InvalidInputError, UnsupportedError
from kaiyuan.services.distribution.sealing import SealedReader, open_released
from kaiyuan.services.provenance.safetensors import (
    LENGTH_BYTES,
    MAX_HEADER_BYTES,
    TensorInfo,
    parse_header,
)

# evidence(nonce, public_key) -> attestation evidence for the hub's verifier, or None
Evidence = Callable[[bytes, bytes], Mapping[str, Any] | None]

STAGE_BYTES = 64 * 1024 * 1024
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
_THREADS = min(4, os.cpu_count() or 1)
_NUMPY = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "C64": np.complex64,
}
_TORCH = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


class SealedCheckpoint:
    """One sealed safetensors file, its tensors decrypted when asked for."""

    def __init__(
        self,
        path: Path,
        data_key: bytes,
        repo_path: str,
        *,
        framework: str = "np",
        device: str = "cpu",
        stage_bytes: int = STAGE_BYTES,
    ) -> None:
        if framework not in {"np", "pt"}:
            raise InvalidInputError("framework must be 'np' (numpy) or 'pt' (torch)")
        if device != "cpu" and framework != "pt":
            raise InvalidInputError(f"device {device!r} needs framework='pt'")
        self.path = repo_path
        self._framework = framework
        self._device = device
        self._stage_bytes = max(1, stage_bytes)
        self._file = path.open("rb")
        try:
            size = os.fstat(self._file.fileno()).st_size
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            view = memoryview(self._map) if self._map is not None else memoryview(b"")
            self._view = view
            self._reader = SealedReader(lambda o, n: view[o : o + n], size, data_key, repo_path)
            self._tensors, self.metadata, self._data_start = self._header()
        except BaseException:
            self.close()
            raise

    @property
    def file_id(self) -> str:
        return self._reader.header.file_id

    def keys(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def info(self, name: str) -> TensorInfo:
        found = self._tensors.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def get_tensor(self, name: str) -> Any:
        """One tensor, decrypted now (only the chunks it spans)."""
        tensor = self.info(name)
        if self._device != "cpu":
            return self._staged(tensor)
        out = self._empty(tensor)
        self._reader.read_into(self._data_start + tensor.begin, _bytes_of(out), _THREADS)
        return out

    def load(self) -> dict[str, Any]:
        """Every tensor.

        On the CPU the data is decrypted in one pass (all threads) into one buffer the tensors
        are views of; on a device, tensor by tensor through staging.
        """
        if self._device != "cpu":
            return {name: self._staged(t) for name, t in self._tensors.items()}
        data_size = self._reader.size - self._data_start
        buffer = np.empty(data_size, dtype=np.uint8)
        self._reader.read_into(self._data_start, _memory(buffer), _THREADS)
        return {name: self._view_of(buffer, t) for name, t in self._tensors.items()}

    def load_into(self, targets: Mapping[str, Any]) -> None:
        """Decrypt tensors straight into existing arrays or tensors (a model's parameters).

        Each target must have its tensor's shape and byte size and be contiguous; names not in
        `targets` are skipped. Every chunk is decrypted once, into the memory it belongs in.
        """
        pieces: list[tuple[int, memoryview]] = []
        for name, target in targets.items():
            tensor = self.info(name)
            if tuple(target.shape) != tensor.shape or _nbytes(target) != tensor.end - tensor.begin:
                raise InvalidInputError(
                    f"{name}: the target is {tuple(target.shape)} of {_nbytes(target)} bytes; "
                    f"the sealed tensor is {tensor.shape} of {tensor.end - tensor.begin}"
                )
            if not _is_host(target):
                self._staged(tensor, into=target)
                continue
            pieces.append((self._data_start + tensor.begin, _bytes_of(target)))
        self._reader.scatter(pieces, _THREADS)

    def close(self) -> None:
        self._reader = None  # type: ignore[assignment]
        view, self._view = getattr(self, "_view", None), None  # type: ignore[assignment]
        mapped, self._map = getattr(self, "_map", None), None
        if view is not None:
            view.release()
        if mapped is not None:
            # A slice may still be referenced (by a traceback): then unmapped when it goes.
            with contextlib.suppress(BufferError):
                mapped.close()
        self._file.close()

    # --- pieces -------------------------------------------------------------------------------
    def _header(self) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
        size = self._reader.size
        if size < LENGTH_BYTES:
            raise InvalidInputError(f"{self.path}: the sealed plaintext is not a safetensors file")
        length = int.from_bytes(self._reader.read(0, LENGTH_BYTES), "little")
        if length > MAX_HEADER_BYTES or LENGTH_BYTES + length > size:
            raise InvalidInputError(f"{self.path}: safetensors header length {length} is bad")
        raw = self._reader.read(LENGTH_BYTES, length)
        header = parse_header(raw, size - LENGTH_BYTES - length)
        for tensor in header.tensors:
            self._dtype(tensor)  # refuse a type this framework cannot hold before any data
        return {t.name: t for t in header.tensors}, header.metadata, header.data_start

    def _dtype(self, tensor: TensorInfo) -> Any:
        if self._framework == "np":
            found = _NUMPY.get(tensor.dtype)
            if found is None:
                raise UnsupportedError(
                    f"{tensor.name}: {tensor.dtype} has no numpy type; load with framework='pt'"
                )
            return found
        import torch  # noqa: PLC0415 - torch only when asked for

        name = _TORCH.get(tensor.dtype)
        if name is None or not hasattr(torch, name):
            raise UnsupportedError(f"{tensor.name}: {tensor.dtype} is not supported by torch")
        return getattr(torch, name)

    def _empty(self, tensor: TensorInfo) -> Any:
        dtype = self._dtype(tensor)
        if self._framework == "np":
            return np.empty(tensor.shape, dtype=dtype)
        import torch  # noqa: PLC0415

        return torch.empty(tensor.shape, dtype=dtype)

    def _view_of(self, buffer: np.ndarray[Any, Any], tensor: TensorInfo) -> Any:
        dtype = self._dtype(tensor)
        piece = buffer[tensor.begin : tensor.end]
        if self._framework == "np":
            return piece.view(dtype).reshape(tensor.shape)
        import torch  # noqa: PLC0415

        itemsize = torch.empty((), dtype=dtype).element_size()
        raw = torch.from_numpy(piece)
        if tensor.begin % itemsize:
            raw = raw.clone()  # a misaligned tensor gets its own aligned copy
        return raw.view(dtype).reshape(tensor.shape)

    def _staged(self, tensor: TensorInfo, into: Any = None) -> Any:
        """A device tensor filled a slice at a time through a wiped pinned buffer."""
        import torch  # noqa: PLC0415

        dtype = self._dtype(tensor)
        target = into
        if target is None:
            target = torch.empty(tensor.shape, dtype=dtype, device=self._device)
        flat = target.view(-1).view(torch.uint8) if target.numel() else target
        total = tensor.end - tensor.begin
        stage = torch.empty(min(self._stage_bytes, max(total, 1)), dtype=torch.uint8)
        if target.device.type == "cuda":
            stage = stage.pin_memory()
        try:
            done = 0
            while done < total:
                take = min(len(stage), total - done)
                window = stage[:take]
                self._reader.read_into(
                    self._data_start + tensor.begin + done, _memory(window.numpy()), _THREADS
                )
                flat[done : done + take].copy_(window)
                done += take
            if target.device.type == "cuda":
                torch.cuda.synchronize(target.device)
        finally:
            stage.zero_()
        return target


def _memory(array: np.ndarray[Any, Any]) -> memoryview:
    return memoryview(array)  # type: ignore[arg-type] # numpy arrays are buffers


def _nbytes(array: Any) -> int:
    return (
        int(array.nbytes) if isinstance(array, np.ndarray) else array.numel() * array.element_size()
    )


def _is_host(array: Any) -> bool:
    return isinstance(array, np.ndarray) or array.device.type == "cpu"


def _bytes_of(array: Any) -> memoryview:
    """The writable bytes behind a contiguous numpy array or CPU torch tensor."""
    if isinstance(array, np.ndarray):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise InvalidInputError("a target array must be contiguous and writable")
        return _memory(array.reshape(-1).view(np.uint8))
    if not array.is_contiguous():
        raise InvalidInputError("a target tensor must be contiguous")
    import torch  # noqa: PLC0415

    if array.numel() == 0:
        return memoryview(bytearray())
    return memoryview(array.view(-1).view(torch.uint8).numpy())


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
