"""Scanning a file by its content: what it is, and whether loading it can run code.

Fail closed: the verdict starts from what the bytes are (`sniff`), never from the name, and a
file is `safe` only when its format runs no code on load and it validates. A pickle anywhere
(raw, in a torch zip, gzipped, in an object `.npy`) is judged by its imports (`pickles`);
compressed and nested containers are unpacked, within limits, and what they hold is scanned the
same way; anything the scanner cannot follow is `error`, anything it does not recognise is
`caution`. A container takes the worst verdict of its members.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import zstandard

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.scanning import FileScan, ImportSafety, PickleImport, ScanStatus
from kaiyuan.services.distribution import pickles
from kaiyuan.services.distribution.sniff import HEAD_BYTES, Kind, sniff
from kaiyuan.services.provenance.safetensors import read_header

SCANNER = "kaiyuan-scan-2"
TEXT_PROBE_BYTES = 64 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024  # JSON files read whole for chat templates
# A chat template is Jinja, run by the loader: one that reaches Python's internals can run code
# (CVE-2024-34359 came from a GGUF's template).
_TEMPLATE_ESCAPE = re.compile(r"__\w+__|\|\s*attr\b|\blipsum\b|\bcycler\b|\bjoiner\b|\bself\s*\.")


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_unpacked_bytes: int = 1024 * 1024 * 1024  # what one compressed stream may unpack to
    max_depth: int = 3  # containers inside containers
    max_members: int = 10_000  # members of one archive
    # all a file's members and streams together: overlapping zip entries repeat the same bytes
    max_total_unpacked_bytes: int = 4 * 1024 * 1024 * 1024


@dataclass(slots=True)
class _Judgement:
    status: ScanStatus = ScanStatus.SAFE
    findings: list[str] = field(default_factory=list)
    imports: list[PickleImport] = field(default_factory=list)

    def add(self, status: ScanStatus, finding: str) -> None:
        if status.rank > self.status.rank:
            self.status = status
        self.findings.append(finding)


def scan(source: IO[bytes], size: int, sha256: str, limits: ScanLimits | None = None) -> FileScan:
    """The verdict on the content in `source` (seekable, at its start), `size` bytes long."""
    judgement = _Judgement()
    scanner = _Scanner(limits or ScanLimits(), judgement)
    try:
        kind = scanner.object(source, size, "", 0)
    except Exception as exc:  # noqa: BLE001 - fail closed: whatever broke, the verdict is error
        kind = "unreadable"
        judgement.add(
            ScanStatus.ERROR, f"the scanner could not read the file: {type(exc).__name__}: {exc}"
        )
    return FileScan(
        sha256,
        judgement.status,
        kind,
        tuple(dict.fromkeys(judgement.findings)),
        tuple(judgement.imports),
        SCANNER,
    )


class _Scanner:
    def __init__(self, limits: ScanLimits, judgement: _Judgement) -> None:
        self._limits = limits
        self._j = judgement
        self._budget = limits.max_total_unpacked_bytes  # for all archives and streams together

    def object(  # noqa: PLR0911 - one return per format
        self, stream: IO[bytes], size: int, member: str, depth: int
    ) -> str:
        """Scan one object (the file, or a member of a container); its format's name."""
        start = stream.tell()
        head = stream.read(HEAD_BYTES)
        stream.seek(start)
        kind = sniff(head, size)
        where = f"{member}: " if member else ""
        if kind not in {Kind.PICKLE, Kind.OTHER}:
            self._polyglot(stream, size, member, where)
        if kind is Kind.TAR:
            return self._tar(stream, member, where, depth)
        if kind is Kind.SAFETENSORS:
            return self._safetensors(stream, size, where)
        if kind is Kind.GGUF:
            return self._gguf(stream, size, where)
        if kind is Kind.PICKLE:
            self._pickle(stream, size, member, where)
            return "pickle"
        if kind is Kind.NPY:
            return self._npy(stream, size, member, where)
        if kind is Kind.ZIP:
            return self._zip(stream, member, where, depth)
        if kind in {Kind.GZIP, Kind.BZIP2, Kind.XZ, Kind.ZSTD}:
            return self._compressed(kind, stream, member, where, depth)
        if kind is Kind.IMAGE:
            return "image"
        return self._other(stream, size, head, member, where)

    # --- formats that run no code --------------------------------------------------------------
    def _safetensors(self, stream: IO[bytes], size: int, where: str) -> str:
        try:
            read_header(stream, size)
        except InvalidInputError as exc:  # a parser differential waiting to happen
            self._j.add(ScanStatus.CAUTION, f"{where}malformed safetensors: {exc}")
        return "safetensors"

    def _gguf(self, stream: IO[bytes], size: int, where: str) -> str:
        from kaiyuan.services.provenance.gguffile import read_gguf  # noqa: PLC0415 - pulls gguf

        try:
            parsed = read_gguf(
                _StreamFile(stream, stream.tell(), size, where.rstrip(": ") or "file")
            )
        except InvalidInputError as exc:
            self._j.add(ScanStatus.CAUTION, f"{where}malformed GGUF: {exc}")
            return "gguf"
        template = parsed.metadata.get("tokenizer.chat_template")
        if isinstance(template, str):
            self._template(template, f"{where}GGUF chat template")
        return "gguf"

    def _template(self, template: str, what: str) -> None:
        found = _TEMPLATE_ESCAPE.search(template)
        if found is not None:
            self._j.add(
                ScanStatus.CAUTION,
                f"{what} reaches Python's internals ({found.group(0)!r}): it can run code",
            )

    # --- pickles ------------------------------------------------------------------------------
    def _pickle(self, stream: IO[bytes], size: int, member: str, where: str) -> None:
        report = pickles.analyse(stream, size)
        self._judge_imports(report, member, where)
        if report.error is not None:
            what = "the scan's limit" if report.limit else "malformed pickle"
            self._j.add(ScanStatus.ERROR, f"{where}{what}: {report.error}")

    def _polyglot(self, stream: IO[bytes], size: int, member: str, where: str) -> None:
        """A file of another format that also parses as a pickle importing something.

        `pickle.load` does not care what else the bytes are (a GIF can be a pickle), so
        whatever format the file claims, a pickle at its start is judged too.
        """
        start = stream.tell()
        report = pickles.analyse(stream, size)
        stream.seek(start)
        # Random bytes walk into a GLOBAL now and then; only a name Python could import makes
        # the pickle reading able to call anything.
        if any(_importable(m) and _importable(n) for m, n in report.imports):
            self._j.add(ScanStatus.CAUTION, f"{where}these bytes also load as a pickle")
            self._judge_imports(report, member, where)

    def _judge_imports(self, report: pickles.PickleReport, member: str, where: str) -> None:
        for module, name in dict.fromkeys(report.imports):
            safety = pickles.import_safety(module, name)
            self._j.imports.append(PickleImport(module, name, safety, member))
            if safety is ImportSafety.DANGEROUS:
                self._j.add(ScanStatus.UNSAFE, f"{where}pickle imports {module}.{name}")
            elif safety is ImportSafety.SUSPICIOUS:
                self._j.add(ScanStatus.CAUTION, f"{where}pickle imports {module}.{name}")
        if report.unresolved:
            self._j.add(
                ScanStatus.CAUTION,
                f"{where}pickle makes {report.unresolved} import(s) the scanner cannot name",
            )

    def _npy(self, stream: IO[bytes], size: int, member: str, where: str) -> str:
        start = stream.tell()
        try:
            version = np.lib.format.read_magic(stream)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(stream)
        except (ValueError, SyntaxError, TypeError) as exc:
            self._j.add(ScanStatus.CAUTION, f"{where}malformed .npy header: {exc}")
            return "npy"
        left = size - (stream.tell() - start)
        if dtype.hasobject:  # the data is a pickle of the objects
            self._j.add(ScanStatus.CAUTION, f"{where}numpy object array (needs allow_pickle)")
            self._pickle(stream, left, member, where)
        elif left != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            self._j.add(ScanStatus.CAUTION, f"{where}.npy data does not match its header")
        return "npy"

    # --- containers ---------------------------------------------------------------------------
    def _zip(self, stream: IO[bytes], member: str, where: str, depth: int) -> str:
        if depth >= self._limits.max_depth:
            self._j.add(ScanStatus.ERROR, f"{where}archives nested deeper than the scan follows")
            return "zip"
        with zipfile.ZipFile(stream) as archive:
            infos = archive.infolist()
            if len(infos) > self._limits.max_members:
                self._j.add(ScanStatus.ERROR, f"{where}more than {len(infos)} archive members")
                return "zip"
            # torch finds members ignoring case: so does this
            names = [i.filename.lower() for i in infos]
            tops = {n.rpartition("/")[0] for n in names if n.rpartition("/")[2] == "data.pkl"}
            raw = tuple(f"{top}/data/" if top else "data/" for top in tops)
            script = bool(tops) and any(
                n.endswith("constants.pkl") or n.startswith("code/") or "/code/" in n for n in names
            )
            if script:
                self._j.add(ScanStatus.CAUTION, f"{where}TorchScript archive: carries code it runs")
            for info, name in zip(infos, names, strict=True):
                label = f"{member}/{info.filename}".lstrip("/")
                if raw and name.startswith(raw):
                    continue  # torch's raw tensor bytes, read by offset, never unpickled
                self._member(archive, info, label, depth, as_pickle=name.endswith(".pkl"))
        return "torchscript" if script else ("torch-zip" if tops else "zip")

    def _member(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        label: str,
        depth: int,
        *,
        as_pickle: bool,
    ) -> None:
        if info.is_dir():
            return
        if info.flag_bits & 0x1:
            self._j.add(ScanStatus.ERROR, f"{label}: encrypted archive member")
            return
        if info.file_size > self._limits.max_unpacked_bytes:
            self._j.add(ScanStatus.ERROR, f"{label}: unpacks past the scan's limit")
            return
        with archive.open(info) as opened, self._spool(opened) as (copy, length):
            if length is None:
                self._j.add(ScanStatus.ERROR, f"{label}: unpacks past the scan's limit")
            elif as_pickle:
                self._pickle(copy, length, label, f"{label}: ")
            else:
                self.object(copy, length, label, depth + 1)

    def _tar(self, stream: IO[bytes], member: str, where: str, depth: int) -> str:
        """A tar (torch's oldest format is one, of pickles): every member scanned by content."""
        if depth >= self._limits.max_depth:
            self._j.add(ScanStatus.ERROR, f"{where}archives nested deeper than the scan follows")
            return "tar"
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            for count, info in enumerate(archive):
                if count >= self._limits.max_members:
                    self._j.add(ScanStatus.ERROR, f"{where}more than {count} archive members")
                    break
                if not info.isfile():
                    continue
                label = f"{member}/{info.name}".lstrip("/")
                if info.size > self._limits.max_unpacked_bytes:
                    self._j.add(ScanStatus.ERROR, f"{label}: past the scan's limit")
                    continue
                opened = archive.extractfile(info)
                if opened is None:
                    continue
                with opened, self._spool(opened) as (copy, length):
                    if length is None:
                        self._j.add(ScanStatus.ERROR, f"{label}: past the scan's limit")
                    else:
                        self.object(copy, length, label, depth + 1)
        return "tar"

    def _spool(self, source: IO[bytes]) -> _spooled:
        """A spooled copy that draws on the scan's total budget of unpacked bytes."""
        return _spooled(source, min(self._limits.max_unpacked_bytes, self._budget), self._spend)

    def _spend(self, length: int) -> None:
        self._budget -= length

    def _compressed(
        self, kind: Kind, stream: IO[bytes], member: str, where: str, depth: int
    ) -> str:
        if depth >= self._limits.max_depth:
            self._j.add(ScanStatus.ERROR, f"{where}compressed streams nested too deep")
            return kind.value
        opened = _decompressor(kind, stream)
        label = f"{member or 'file'}(unpacked)"
        with self._spool(opened) as (copy, length):
            if length is None:
                self._j.add(ScanStatus.ERROR, f"{where}unpacks past the scan's limit")
                return kind.value
            inner = self.object(copy, length, label, depth + 1)
        self._j.findings.append(f"{where}{kind.value} stream holding {inner}")
        return kind.value

    # --- text, old pickles, anything else ------------------------------------------------------
    def _other(self, stream: IO[bytes], size: int, head: bytes, member: str, where: str) -> str:
        start = stream.tell()
        if pickles.looks_like_pickle(head):
            # Protocols 0 and 1 have no magic: bytes that load as a pickle are one. The
            # unpickler runs what it has read before it meets a bad byte, so a walk that fails
            # after an import still judges that import.
            report = pickles.analyse(stream, size)
            stream.seek(start)
            if report.pickles or report.imports or report.unresolved or report.limit:
                self._judge_imports(report, member, where)
                if report.error is not None:
                    self._j.add(ScanStatus.ERROR, f"{where}malformed pickle: {report.error}")
                return "pickle"
        probe = stream.read(min(size, TEXT_PROBE_BYTES))
        stream.seek(start)
        if _is_text(probe, whole=size <= TEXT_PROBE_BYTES):
            if probe.lstrip().startswith(b"{") and size <= MAX_JSON_BYTES:
                self._json_templates(stream.read(size), where)
                stream.seek(start)
            return "text"
        self._j.add(ScanStatus.CAUTION, f"{where}unknown binary format: not analysed")
        return "unknown"

    def _json_templates(self, raw: bytes, where: str) -> None:
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return  # text that is not JSON: nothing runs it
        if not isinstance(document, dict):
            return
        template = document.get("chat_template")
        templates = template if isinstance(template, list) else [template]
        for item in templates:
            text = item.get("template") if isinstance(item, dict) else item
            if isinstance(text, str):
                self._template(text, f"{where}chat template")


def _importable(dotted: str) -> bool:
    return bool(dotted) and all(part.isidentifier() for part in dotted.split("."))


def _is_text(probe: bytes, *, whole: bool) -> bool:
    if b"\x00" in probe:
        return False
    try:
        probe.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a probe cut in the middle of a character is still text
        return not whole and exc.start >= len(probe) - 3 and exc.reason == "unexpected end of data"
    return True


def _decompressor(kind: Kind, stream: IO[bytes]) -> IO[bytes]:
    if kind is Kind.GZIP:
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind is Kind.BZIP2:
        return bz2.BZ2File(stream, mode="rb")
    if kind is Kind.XZ:
        return lzma.LZMAFile(stream, mode="rb")
    return zstandard.ZstdDecompressor().stream_reader(stream)


class _spooled:  # noqa: N801 - used as a context manager, like the stdlib's lowercase ones
    """A stream (a member, an unpacked stream) copied to a seekable temporary file.

    Entering gives (file, length), or a length of None when the stream is longer than the limit
    (the copy stops there).
    """

    def __init__(self, source: IO[bytes], limit: int, spend: Callable[[int], None]) -> None:
        self._source = source
        self._limit = limit
        self._spend = spend
        self._copy = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115

    def __enter__(self) -> tuple[IO[bytes], int | None]:
        length = 0
        for piece in _pieces(self._source):
            length += len(piece)
            if length > self._limit:
                self._spend(length)
                return self._copy, None
            self._copy.write(piece)
        self._spend(length)
        self._copy.seek(0)
        return self._copy, length

    def __exit__(self, *_: object) -> None:
        self._copy.close()


def _pieces(source: IO[bytes]) -> Iterator[bytes]:
    while True:
        piece = source.read(1 << 20)
        if not piece:
            return
        yield piece


@dataclass(frozen=True, slots=True)
class _StreamFile:
    """An object in a seekable stream as the GGUF reader's WeightFile (it reads the header)."""

    source: IO[bytes]
    base: int
    size: int
    name: str

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise InvalidInputError(f"{self.name}: {length} bytes at {offset} run past its end")
        self.source.seek(self.base + offset)
        data = self.source.read(length)
        if len(data) != length:
            raise InvalidInputError(f"{self.name}: {length} bytes at {offset} run past its end")
        return data

    def stream(self, start: int, end: int) -> Iterator[bytes]:
        yield self.read_at(start, end - start)
