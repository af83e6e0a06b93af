"""The content scanner against a hostile corpus: every payload is a real one.

Each malicious sample would run `touch <marker>` when loaded the usual way (pickle.load,
torch.load, numpy.load(allow_pickle=True), a gzip-aware loader). The scanner must flag or
refuse every one, report none of them safe, and never run any: the marker must not appear.
"""

from __future__ import annotations

import bz2
import code
import collections
import gzip
import io
import json
import lzma
import marshal
import os
import pickle
import pkgutil
import random
import struct
import timeit
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_safetensors

from kaiyuan.core.scanning import FileScan, ImportSafety, ScanStatus
from kaiyuan.services.distribution.scan import ScanLimits, scan

NOT_SAFE = {ScanStatus.CAUTION, ScanStatus.UNSAFE, ScanStatus.ERROR}


def scanned(data: bytes, limits: ScanLimits | None = None) -> FileScan:
    return scan(io.BytesIO(data), len(data), "0" * 64, limits)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


class _Reduce:
    def __init__(self, call: Callable[..., object], *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.call, self.args


def _payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    shell = f"import os; os.system({command!r})"
    code_bytes = marshal.dumps(compile(shell, "<x>", "exec"))
    # types.FunctionType(marshal.loads(<code>), {})(): written as opcodes, pickle cannot
    function = (
        b"\x80\x03ctypes\nFunctionType\ncmarshal\nloads\nB"
        + struct.pack("<I", len(code_bytes))
        + code_bytes
        + b"\x85R}\x86R)R."
    )
    chain = (  # getattr(__import__("os"), "system")(command)
        b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
        + f"(S'{command}'\ntR.".encode()
    )
    return {
        "os.system protocol 0": pickle.dumps(_Reduce(os.system, command), protocol=0),
        "os.system protocol 4": pickle.dumps(_Reduce(os.system, command), protocol=4),
        "builtins.exec": pickle.dumps(_Reduce(exec, shell)),
        "timeit setup": pickle.dumps(
            _Reduce(timeit.timeit, "", f"__import__('os').system({command!r})")
        ),
        "code.InteractiveInterpreter": pickle.dumps(
            _Reduce(code.InteractiveInterpreter().runsource, shell)
        ),
        "marshal + FunctionType": function,
        "pkgutil.resolve_name": pickle.dumps(_Reduce(pkgutil.resolve_name, "os:system")),
        "getattr chain": chain,
    }


def test_the_known_bypasses_are_unsafe_and_nothing_runs(marker: Path) -> None:
    for label, payload in _payloads(marker).items():
        result = scanned(payload)
        assert result.status is ScanStatus.UNSAFE, (label, result)
        assert any(i.safety is ImportSafety.DANGEROUS for i in result.imports), label
    assert not marker.exists()


def test_wrapped_payloads_are_unsafe_whatever_their_wrapping(marker: Path) -> None:
    evil = pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=2)
    torch_zip = io.BytesIO()
    with zipfile.ZipFile(torch_zip, "w") as archive:  # torch's layout, its data.pkl replaced
        archive.writestr("model/data.pkl", evil)
        archive.writestr("model/version", "3\n")
        archive.writestr("model/data/0", b"\x80\x02garbage tensor bytes")
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", "hello")
        archive.writestr("weights.pkl", evil)
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("inner.zip", plain_zip.getvalue())
    objects = io.BytesIO()
    np.save(objects, np.array([_Reduce(os.system, f"touch {marker}")], dtype=object))
    wrapped = {
        "gzip": gzip.compress(evil),
        "bzip2": bz2.compress(evil),
        "xz": lzma.compress(evil),
        "zstd": zstandard.ZstdCompressor().compress(evil),
        "gzip of gzip": gzip.compress(gzip.compress(evil)),
        "torch zip": torch_zip.getvalue(),
        "zip member": plain_zip.getvalue(),
        "zip in a zip": nested.getvalue(),
        "object .npy": objects.getvalue(),
    }
    for label, payload in wrapped.items():
        result = scanned(payload)
        assert result.status is ScanStatus.UNSAFE, (label, result)
    assert not marker.exists()


def test_a_pickle_named_safetensors_is_judged_by_its_bytes(marker: Path) -> None:
    evil = pickle.dumps(_Reduce(os.system, f"touch {marker}"))
    result = scanned(evil)  # the scanner never sees the name; the content decides
    assert result.format == "pickle"
    assert result.status is ScanStatus.UNSAFE


def _safetensors_with(header: dict[str, object], data: bytes, *, prefix: bytes = b"") -> bytes:
    raw = prefix + json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    "payload",
    [
        # duplicate keys: the reference reader keeps the last, another parser the first
        struct.pack("<Q", 120)
        + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        + b'"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}'.ljust(120 - 55)
        + b"\x00" * 4,
        _safetensors_with(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\x00" * 12,
        ),
        struct.pack("<Q", 2**40) + b"{" + b"\x00" * 64,  # a header length far past the file
        _safetensors_with(
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4, prefix=b" "
        ),
        _safetensors_with(
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}, b"\x00" * 4
        ),
    ],
    ids=["duplicate keys", "overlapping offsets", "huge header length", "leading space", "size"],
)
def test_malformed_safetensors_is_never_safe(payload: bytes) -> None:
    assert scanned(payload).status in NOT_SAFE


def test_plain_weights_in_every_format_are_safe(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "b": torch.zeros(4)}
    new_zip, legacy = io.BytesIO(), io.BytesIO()
    torch.save(state, new_zip)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    plain_npy, npz = io.BytesIO(), io.BytesIO()
    np.save(plain_npy, np.arange(12, dtype=np.float32).reshape(3, 4))
    np.savez(npz, a=np.ones(3))
    benign = {
        "safetensors": save_safetensors({"w": np.ones((2, 3), np.float32)}),
        "torch zip": new_zip.getvalue(),
        "torch legacy": legacy.getvalue(),
        "numpy pickle": pickle.dumps(
            {"a": np.arange(3), "o": collections.OrderedDict(x=1)}, protocol=2
        ),
        ".npy": plain_npy.getvalue(),
        ".npz": npz.getvalue(),
        "json": json.dumps({"architectures": ["LlamaForCausalLM"]}).encode(),
        "markdown": "# 模型\n\n中文说明。".encode(),
        "gguf": _gguf(tmp_path / "m.gguf", template="{{ messages[0]['content'] }}"),
    }
    for label, payload in benign.items():
        result = scanned(payload)
        assert result.status is ScanStatus.SAFE, (label, result)
    assert scanned(benign["torch zip"]).format == "torch-zip"


def _gguf(path: Path, template: str) -> bytes:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_chat_template(template)
    writer.add_tensor("w", np.ones((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_chat_templates_that_reach_python_internals_are_flagged(tmp_path: Path) -> None:
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    assert scanned(_gguf(tmp_path / "t.gguf", escape)).status is ScanStatus.CAUTION
    config = json.dumps({"chat_template": [{"name": "default", "template": escape}]}).encode()
    result = scanned(config)
    assert result.status is ScanStatus.CAUTION
    assert "chat template" in result.findings[0]


def test_unknown_imports_unresolved_imports_and_unknown_bytes_are_caution() -> None:
    unknown = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x05mylib\x94\x8c\x05Thing\x94\x93\x94)\x81\x94."
    assert scanned(unknown).status is ScanStatus.CAUTION
    # STACK_GLOBAL whose operands come out of a call: the scanner cannot name the import
    computed = (
        b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R"  # str("os"), computed
        b"\x8c\x06system\x93."
    )
    result = scanned(computed)
    assert result.status is ScanStatus.CAUTION
    assert any("cannot name" in f for f in result.findings)
    # fixed bytes: random ones start with a known magic (a pickle's 0x80, gzip's 1f8b) now and then
    unknown_bytes = b"\x01" + random.Random(7).randbytes(4096) + b"\x00"
    assert scanned(unknown_bytes).status is ScanStatus.CAUTION


def test_memoized_operands_are_followed() -> None:
    # module and name pushed and memoized, popped off the stack, then fetched back (BINGET)
    payload = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x9400h\x00h\x01\x93\x8c\x01x\x85R."
    result = scanned(payload)
    assert result.status is ScanStatus.UNSAFE
    assert ("posix", "system") in {(i.module, i.name) for i in result.imports}


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x04\x8c\x05posix",  # cut short
        b"\x80\x04\x93.",  # STACK_GLOBAL on an empty stack
        b"\x80\x04h\x07.",  # a memo entry never stored
        b"\x80\x04\xff.",  # not an opcode
    ],
)
def test_broken_pickles_are_errors_not_safe(payload: bytes) -> None:
    assert scanned(payload).status is ScanStatus.ERROR


def test_limits_turn_bombs_into_errors(marker: Path) -> None:
    bomb = gzip.compress(b"\x00" * (4 * 1024 * 1024))
    assert scanned(bomb, ScanLimits(max_unpacked_bytes=1024 * 1024)).status is ScanStatus.ERROR
    evil = gzip.compress(pickle.dumps(_Reduce(os.system, f"touch {marker}")))
    for _ in range(4):
        evil = gzip.compress(evil)
    assert scanned(evil).status is ScanStatus.ERROR  # nested past what the scan follows
    crowded = io.BytesIO()
    with zipfile.ZipFile(crowded, "w") as archive:
        for i in range(20):
            archive.writestr(f"f{i}.txt", "x")
    assert scanned(crowded.getvalue(), ScanLimits(max_members=10)).status is ScanStatus.ERROR
    assert scanned(b"PK\x03\x04" + b"\x00" * 100).status is ScanStatus.ERROR  # a broken archive


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_get_a_verdict_and_never_crash_the_scanner(data: bytes) -> None:
    result = scanned(data)
    assert result.status is not ScanStatus.UNSCANNED
    if result.status is ScanStatus.SAFE:
        assert result.format in {"text", "safetensors", "gguf", "npy", "image", "pickle", "zip"} | {
            "gzip",
            "bzip2",
            "xz",
            "zstd",
            "torch-zip",
        }


# --- regressions from a security review: each of these once scanned `safe` ------------------
def _torch_zip_with_upper_case_payload() -> bytes:
    good = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, good)
    source = zipfile.ZipFile(io.BytesIO(good.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/DATA.PKL", b"\x80\x02cposix\nsystem\n(X\x04\x00\x00\x00truetR.")
        for name in source.namelist():
            archive.writestr(name, source.read(name))
    return out.getvalue()


def _legacy_tar() -> bytes:
    import tarfile

    payload = b"cposix\nsystem\n(S'true'\ntR."
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in [("N.", b""), ("storages", payload), ("pickle", payload)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"S'" + b"A" * 5000 + b"'\n0cposix\nsystem\n)R.", ScanStatus.UNSAFE),  # a long argument
        (b"cposix\nsystem\np 0\n0g0\n)R.", ScanStatus.UNSAFE),  # a memo key the unpickler reads
        (b"GIF89a\x00\x00\x00cposix\nsystem\n)R.", ScanStatus.UNSAFE),  # an image and a pickle
        (b"cposix\nsystem\n(S'true'\ntR" + b"\xff" * 20, ScanStatus.UNSAFE),  # runs, then junk
        (
            pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"cposix\nsystem\n)R.",
            ScanStatus.UNSAFE,
        ),
        (b"c__builtin__\nreduce\n.", ScanStatus.UNSAFE),  # Python 2 name for functools.reduce
        (_legacy_tar(), ScanStatus.UNSAFE),  # torch's tar format, its pickles as members
        (_torch_zip_with_upper_case_payload(), ScanStatus.UNSAFE),  # torch finds names any case
    ],
    ids=[
        "long text argument",
        "memo key with a space",
        "GIF polyglot",
        "payload then junk",
        "torch legacy: second pickle",
        "python 2 names",
        "legacy tar",
        "DATA.PKL",
    ],
)
def test_review_regressions(payload: bytes, expected: ScanStatus) -> None:
    assert scanned(payload).status is expected


def test_a_legacy_torch_file_with_a_storage_of_128_elements_is_safe() -> None:
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(128)}, legacy, _use_new_zipfile_serialization=False)
    assert scanned(legacy.getvalue()).status is ScanStatus.SAFE


@pytest.mark.parametrize("kind", ["zip deflate", "gzip", "xz", "zstd"])
def test_corrupt_streams_are_errors_and_never_crash(kind: str) -> None:
    body = b"hello world " * 500
    if kind == "zip deflate":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("a.bin", body)
        data = bytearray(out.getvalue())
        at = data.find(b"a.bin") + 5
        data[at : at + 4] = b"\xff\xff\xff\xff"
    else:
        compress = {"gzip": gzip.compress, "xz": lzma.compress}.get(
            kind, zstandard.ZstdCompressor().compress
        )
        data = bytearray(compress(bytes(range(256)) * 40))
        data[12] ^= 0xFF
        data[20] ^= 0xFF
    assert scanned(bytes(data)).status in {ScanStatus.ERROR, ScanStatus.CAUTION}


def test_overlapping_zip_entries_spend_one_total_budget() -> None:
    member = b"\x00" * (1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(20):
            archive.writestr(f"m{i}.bin", member)
    limits = ScanLimits(
        max_unpacked_bytes=2 * 1024 * 1024, max_total_unpacked_bytes=5 * 1024 * 1024
    )
    result = scanned(out.getvalue(), limits)
    assert result.status is ScanStatus.ERROR


def test_bytes_that_only_look_like_an_import_are_not_unsafe() -> None:
    # Random data starting with a pickle's first byte: a GLOBAL whose "names" are junk with a
    # dot in them. No unpickler can import that; it must not be refused as code that runs.
    junk = b"\x80\x02c\xff\xfe\x01mod\nna.me\x00\x9c\n" + random.Random(3).randbytes(2000)
    result = scanned(junk)
    assert result.status is not ScanStatus.UNSAFE and result.status is not ScanStatus.SAFE
    # ... while a real attribute chain still is, from any module, builtins included.
    for module, name in (
        (b"builtins", b"getattr.__self__.__import__"),
        (b"collections", b"OrderedDict.__init__.__globals__"),
    ):
        chain = b"\x80\x04\x8c%c%s\x8c%c%s\x93." % (len(module), module, len(name), name)
        assert scanned(chain).status is ScanStatus.UNSAFE, name
    many = random.Random(1)
    for _ in range(300):
        data = b"\x80" + many.randbytes(5000)
        assert scanned(data).status is not ScanStatus.UNSAFE
