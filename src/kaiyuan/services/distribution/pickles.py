"""Pickles read as opcodes, never unpickled: which imports a pickle would make.

A pickle is a program for a stack machine; the only way it reaches code is an import (GLOBAL,
STACK_GLOBAL, INST, or an extension code) that a later opcode calls. So the walk below follows
the stack well enough to name every import, including STACK_GLOBAL's operands pushed earlier
or fetched from the memo, and judges each against an allow-list: what rebuilds tensors and plain
containers is innocuous; a known way to run commands or code is dangerous; anything else is
suspicious. Blocklists alone are bypassed over and over (see docs/distribution.md); the
allow-list is what makes a verdict of `safe` mean something.

Large arguments (tensor bytes inside a raw pickle) are skipped, not read into memory; an import
whose operands cannot be resolved to constant strings is suspicious, never innocuous.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.scanning import ImportSafety

MAX_PICKLES = 16  # pickles read back to back (torch's legacy format writes five)
MAX_KEPT_STRING = 4096  # longer strings cannot name an import; they are skipped
MAX_STACK = 1_000_000
MAX_MEMO = 1_000_000
_PROTO = 0x80

_INNOCUOUS: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "builtins": frozenset(
        {"set", "frozenset", "dict", "list", "tuple", "int", "float", "complex", "bool"}
        | {"bytes", "bytearray", "str", "slice", "range"}
    ),
    "_codecs": frozenset({"encode"}),  # numpy's bytes under protocol 2
    "torch._utils": frozenset(
        {
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_wrapper_subclass",
            "_rebuild_nested_tensor",
        }
    ),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch.nn.parameter": frozenset({"Parameter"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "torch.storage": frozenset({"UntypedStorage", "TypedStorage"}),
    "torch": frozenset(
        {f"{kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int")}
        | {f"{kind}Storage" for kind in ("Short", "Char", "Byte", "Bool", "ComplexFloat")}
        | {f"{kind}Storage" for kind in ("ComplexDouble", "QUInt8", "QInt8", "QInt32")}
        | {"QUInt4x2Storage", "QUInt2x4Storage", "UntypedStorage", "Size", "device"}
        | {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8"}
        | {"uint8", "bool", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2"}
        | {"strided", "sparse_coo", "contiguous_format", "channels_last", "preserve_format"}
    ),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy": frozenset({"ndarray", "dtype"}),
}

# Modules whose import in a pickle is a way to run commands or code, or to reach any other
# function (the known bypasses of blocklist scanners included). A module not listed here is
# still not allowed: it is suspicious.
_DANGEROUS_MODULES = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "runpy", "importlib",
        "marshal", "types", "code", "codeop", "pty", "pickle", "_pickle", "cPickle", "dill",
        "ctypes", "timeit", "pdb", "bdb", "webbrowser", "multiprocessing", "asyncio", "pip",
        "venv", "ensurepip", "idlelib", "_io", "io", "operator", "functools", "pkgutil",
        "inspect", "trace", "profile", "cProfile", "http", "urllib", "urllib3", "requests",
        "ftplib", "smtplib", "telnetlib", "xmlrpc", "zipimport", "compileall", "py_compile",
        "sysconfig", "site", "distutils", "setuptools", "signal", "threading", "_thread",
        "mailcap", "commands", "popen2", "platform", "tempfile", "glob", "copyreg", "gc",
        "__builtin__", "_posixsubprocess", "numpy.f2py", "numpy.testing", "torch.hub",
        "torch.utils.collect_env", "torch.jit", "torch._dynamo", "torch._inductor",
        "torch.ops", "torch.storage._load_from_bytes", "mlflow", "pandas.io", "joblib",
    }
)  # fmt: skip
_DANGEROUS_BUILTINS = frozenset(
    {
        "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr",
        "globals", "locals", "vars", "input", "breakpoint", "help", "exit", "quit",
        "memoryview", "object", "type", "super", "classmethod", "staticmethod", "property",
    }
)  # fmt: skip


def import_safety(module: str, name: str) -> ImportSafety:
    """How an import of `module.name` by a pickle is judged."""
    if name in _INNOCUOUS.get(module, ()):
        return ImportSafety.INNOCUOUS
    if module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier():
        return ImportSafety.INNOCUOUS
    if name.startswith("__") or ("." in name and _dotted(name)):
        return ImportSafety.DANGEROUS  # attribute chains reach anything, from any module
    if module in {"builtins", "__builtin__"}:
        return ImportSafety.DANGEROUS if name in _DANGEROUS_BUILTINS else ImportSafety.SUSPICIOUS
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        if ".".join(parts[:end]) in _DANGEROUS_MODULES:
            return ImportSafety.DANGEROUS
    # Anything else, bytes that merely look like an import (random data that happens to
    # start with a pickle's first byte) included: not known to run code, not allowed.
    return ImportSafety.SUSPICIOUS


def _dotted(value: str) -> bool:
    """Whether `value` is a chain of attribute names the unpickler could follow."""
    return all(part.isidentifier() for part in value.split("."))


@dataclass(frozen=True, slots=True)
class PickleReport:
    imports: tuple[tuple[str, str], ...]  # (module, name) as the unpickler resolves them
    unresolved: int  # imports whose operands were not constant strings, and extension codes
    pickles: int  # how many pickles were read to their STOP
    protocol: int
    # Why the walk stopped early. The unpickler runs opcodes as it reads them, so what was
    # imported before the bad byte still counts: a payload followed by junk still runs.
    error: str | None = None
    limit: bool = False  # the walk stopped at one of the scanner's own limits


class _Unknown:
    """A stack value the walk does not track (anything but a constant string)."""


_UNKNOWN = _Unknown()
_MARK = object()
_Value = object  # a constant string, _UNKNOWN or _MARK

_OPS = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
_LENGTH_PREFIXED = {  # argument kind -> bytes of its length prefix
    "string4": 4,
    "bytes4": 4,
    "bytes8": 8,
    "bytearray8": 8,
    "unicodestring4": 4,
    "unicodestring8": 8,
    "long4": 4,
}
_TEXT_ARGS = {"string1", "string4", "unicodestring1", "unicodestring4", "unicodestring8"}
_INT_PUSHES = {"LONG1", "BININT", "BININT1", "BININT2"}
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
MAX_IMPORTS = 10_000
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}
_STRING_PUSHES = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}


class ScanLimitError(InvalidInputError):
    """The walk reached a limit of the scanner's, not a fault of the pickle."""


def analyse(stream: IO[bytes], size: int) -> PickleReport:
    """The imports of the pickle(s) at the start of `stream` (`size` bytes in all).

    Pickles back to back are followed as loaders read them: after torch's legacy magic number,
    exactly the four pickles torch reads next; otherwise every further pickle that parses to
    its STOP (bytes that do not, such as raw data, end the walk unless they import something).
    """
    walker = _Walker(stream, size)
    try:
        walker.run_one()
        if walker.first_value == _TORCH_LEGACY_MAGIC:
            for _ in range(4):  # protocol version, system info, the data, the storage keys
                walker.run_one()
        else:
            _read_more(walker)
    except ScanLimitError as exc:
        return walker.report(str(exc), limit=True)
    except InvalidInputError as exc:
        return walker.report(str(exc))
    return walker.report(None)


def _read_more(walker: _Walker) -> None:
    """Further pickles while they parse whole; what follows them is not a pickle."""
    while walker.peek() is not None:
        if walker.pickles >= MAX_PICKLES:
            raise ScanLimitError(f"more than {MAX_PICKLES} pickles back to back")
        mark = walker.checkpoint()
        try:
            walker.run_one()
        except ScanLimitError:
            raise
        except InvalidInputError:
            if walker.imported_since(mark):
                raise  # a payload followed by junk: it ran before the junk was reached
            return


def looks_like_pickle(head: bytes) -> bool:
    """Whether the bytes could start a pickle at all: a cheap test before a walk."""
    return bool(head) and head[0] in _OPS


class _Walker:
    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream = stream
        self._left = size
        self._pending = b""
        self.imports: dict[tuple[str, str], None] = {}  # in order, each once
        self.seen = 0  # imports met, repeats included
        self.unresolved = 0
        self.pickles = 0
        self.protocol = 0
        self.first_value: object = None  # the first pickle's value when it is an integer

    def report(self, error: str | None, *, limit: bool = False) -> PickleReport:
        return PickleReport(
            tuple(self.imports), self.unresolved, self.pickles, self.protocol, error, limit
        )

    def checkpoint(self) -> tuple[int, int]:
        return self.seen, self.unresolved

    def imported_since(self, mark: tuple[int, int]) -> bool:
        return (self.seen, self.unresolved) != mark

    def add_import(self, module: str, name: str) -> None:
        if self.protocol < 3:  # noqa: PLR2004 - the unpickler maps Python 2 names (fix_imports)
            module, name = _python3_name(module, name)
        self.seen += 1
        self.imports[(module, name)] = None
        if len(self.imports) > MAX_IMPORTS:
            raise ScanLimitError(f"more than {MAX_IMPORTS} different imports")

    def peek(self) -> int | None:
        if not self._pending:
            self._pending = self._read(1) if self._left else b""
        return self._pending[0] if self._pending else None

    def run_one(self) -> None:
        stack: list[_Value] = []
        memo: dict[int, _Value] = {}
        for op, arg in self._ops():
            name = op.name
            if name == "STOP":
                if self.pickles == 0 and len(stack) == 1 and isinstance(stack[0], int):
                    self.first_value = stack[0]
                self.pickles += 1
                return
            if name == "PROTO":
                self.protocol = max(self.protocol, arg if isinstance(arg, int) else 0)
                continue
            self._step(name, op, arg, stack, memo)
        raise InvalidInputError("the pickle ends without a STOP opcode")

    def _step(
        self,
        name: str,
        op: pickletools.OpcodeInfo,
        arg: object,
        stack: list[_Value],
        memo: dict[int, _Value],
    ) -> None:
        if name in _STRING_PUSHES:
            stack.append(arg if isinstance(arg, str) else _UNKNOWN)
        elif name in _INT_PUSHES and isinstance(arg, int):
            stack.append(arg)
        elif name in {"GLOBAL", "INST"}:
            module, _, attribute = str(arg).partition(" ")
            self.add_import(module, attribute)
            if name == "INST":
                _pop_to_mark(stack)
            stack.append(_UNKNOWN)
        elif name == "STACK_GLOBAL":
            self._stack_global(stack)
        elif name in {"EXT1", "EXT2", "EXT4"}:  # copyreg's registry: an import we cannot name
            self.unresolved += 1
            stack.append(_UNKNOWN)
        elif name in _MEMO_OPS:
            _memo(name, arg, stack, memo)
        else:
            _generic(op, stack)
        if len(stack) > MAX_STACK:
            raise ScanLimitError("the pickle's stack grows past the scanner's limit")

    def _stack_global(self, stack: list[_Value]) -> None:
        attribute, module = _pop(stack), _pop(stack)
        if isinstance(module, str) and isinstance(attribute, str):
            self.add_import(module, attribute)
        else:
            self.unresolved += 1
        stack.append(_UNKNOWN)

    def _ops(self) -> Iterator[tuple[pickletools.OpcodeInfo, object]]:
        while True:
            code = self._read(1)
            op = _OPS.get(code[0])
            if op is None:
                raise InvalidInputError(f"byte {code[0]:#04x} is not a pickle opcode")
            yield op, self._argument(op)

    def _argument(self, op: pickletools.OpcodeInfo) -> object:
        kind = op.arg
        if kind is None:
            return None
        prefix = _LENGTH_PREFIXED.get(kind.name)
        if prefix is not None:
            signed = kind.name in {"long4", "string4"}
            length = int.from_bytes(self._read(prefix), "little", signed=signed)
            if length < 0:
                raise InvalidInputError(f"{op.name} has a negative length")
            if kind.name in _TEXT_ARGS and length <= MAX_KEPT_STRING:
                return _text(self._read(length))
            self._skip(length)  # tensor bytes, a huge integer: not needed to judge imports
            return None
        if kind.name in {"string1", "bytes1", "unicodestring1", "long1"}:
            return _short(kind.name, self._read(self._read(1)[0]))
        if kind.n > 0:  # fixed size
            raw = self._read(kind.n)
            return None if kind.name == "float8" else _integer(raw, signed=kind.name == "int4")
        return self._text_argument(op, kind.name)

    def _text_argument(self, op: pickletools.OpcodeInfo, kind: str) -> object:
        """The text protocols' arguments: newline-terminated."""
        line = self._line()
        if kind == "stringnl_noescape_pair":
            return line + " " + self._line()
        if kind == "stringnl":
            return _unquote(line)
        if kind == "decimalnl_short" and op.name in {"PUT", "GET"}:
            try:  # parsed as the unpickler parses it (spaces and `_` allowed)
                return int(line)
            except ValueError:
                raise InvalidInputError(f"{op.name} takes a memo key, not {line[:20]!r}") from None
        return line

    def _line(self) -> str:
        """One newline-terminated argument; a long one is consumed whole but not kept."""
        collected = bytearray()
        while True:
            if not self._pending:
                self._pending = self._read(min(self._left, 64 * 1024)) if self._left else b""
                if not self._pending:
                    raise InvalidInputError("the pickle runs past the end of the file")
            cut = self._pending.find(b"\n")
            piece = self._pending if cut < 0 else self._pending[:cut]
            self._pending = b"" if cut < 0 else self._pending[cut + 1 :]
            if len(collected) <= MAX_KEPT_STRING:
                collected += piece[: MAX_KEPT_STRING + 1]
            if cut >= 0:
                text = collected.decode("latin-1")
                return text if len(collected) <= MAX_KEPT_STRING else "\x00(too long)" + text

    def _read(self, length: int) -> bytes:
        if length > self._left + len(self._pending):
            raise InvalidInputError("the pickle runs past the end of the file")
        taken = self._pending[:length]
        self._pending = self._pending[length:]
        rest = length - len(taken)
        if rest:
            more = self._stream.read(rest)
            if len(more) != rest:
                raise InvalidInputError("the pickle runs past the end of the file")
            self._left -= rest
            taken += more
        return taken

    def _skip(self, length: int) -> None:
        if length > self._left + len(self._pending):
            raise InvalidInputError("the pickle runs past the end of the file")
        held = min(length, len(self._pending))
        self._pending = self._pending[held:]
        length -= held
        if length and self._stream.seekable():  # tensor bytes: not even read
            self._stream.seek(length, 1)
            self._left -= length
            return
        while length > 0:
            piece = self._read(min(length, 1 << 20))
            length -= len(piece)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _short(kind: str, raw: bytes) -> object:
    """A one-byte-length argument: text, an integer (LONG1), or bytes (not kept)."""
    if kind == "long1":
        return int.from_bytes(raw, "little", signed=True)
    return _text(raw) if kind != "bytes1" else None


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """The name a Python 2 pickle's import resolves to (what `fix_imports` does)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _integer(raw: bytes, *, signed: bool) -> int:
    return int.from_bytes(raw, "little", signed=signed)


def _memo(name: str, arg: object, stack: list[_Value], memo: dict[int, _Value]) -> None:
    if name == "MEMOIZE":
        _remember(memo, len(memo), _top(stack))
        return
    key = arg if isinstance(arg, int) else -1
    if name in {"PUT", "BINPUT", "LONG_BINPUT"}:
        _remember(memo, key, _top(stack))
    elif key not in memo:
        raise InvalidInputError(f"the pickle fetches memo entry {key}, never stored")
    else:
        stack.append(memo[key])


def _unquote(line: str) -> str | _Unknown:
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":  # noqa: PLR2004
        return line[1:-1]
    return _UNKNOWN


def _pop(stack: list[_Value]) -> _Value:
    if not stack:
        raise InvalidInputError("the pickle pops from an empty stack")
    return stack.pop()


def _top(stack: list[_Value]) -> _Value:
    if not stack:
        raise InvalidInputError("the pickle memoizes from an empty stack")
    return stack[-1]


def _remember(memo: dict[int, _Value], key: int, value: _Value) -> None:
    if len(memo) >= MAX_MEMO:
        raise ScanLimitError("the pickle's memo grows past the scanner's limit")
    memo[key] = value


def _pop_to_mark(stack: list[_Value]) -> None:
    while True:
        if _pop(stack) is _MARK:
            return


def _generic(op: pickletools.OpcodeInfo, stack: list[_Value]) -> None:
    """Any other opcode: pop what it takes, push what it leaves (values untracked)."""
    before = op.stack_before
    if pickletools.markobject in before:
        _pop_to_mark(stack)
        for _ in range(before.index(pickletools.markobject)):
            _pop(stack)
    else:
        for _ in before:
            _pop(stack)
    stack.extend(_MARK if item is pickletools.markobject else _UNKNOWN for item in op.stack_after)
