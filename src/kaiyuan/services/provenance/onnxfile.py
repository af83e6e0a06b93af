"""Tensors of an ONNX model (its initializers), read by rows, and a sketch of its graph.

An ONNX file is one protobuf `ModelProto`, at most 2 GiB, so it is parsed whole with the `onnx`
package, never through a path (external data is not loaded). Large weights may live in sibling
files (`data_location = EXTERNAL`; `location`, `offset`, `length`), read by byte range.

`byte_range` is where a tensor's values lie, as stored, in the .onnx file itself: its `raw_data`
bytes, or the payload of its one packed `float_data`/`int64_data`/… field, found by walking the
protobuf wire format and checked against what protobuf parsed. A fingerprint thus hashes stored
bytes, as for the other formats. It is (0, 0) for values that are not one run of bytes in this
file: external data (`stored_at` gives the data file and range) and values split over fields.
Once parsed, only where the values are is kept; rows are read back from the file.

Anonymised exports name weights `onnx::MatMul_470` or `val_49` and store MatMul weights
transposed ([in, out]); `metadata["graph"]` lets them be matched by position instead: in node
order, for each node that consumes initializers, `{"op", "inputs": [initializer names], "slots":
[their input positions]}`, with `"domain"` when not the default and `"attributes"` for `transA`,
`transB`, `axis` and `block_size`. An input that is the output of a DequantizeLinear of an
initializer names that initializer. Nodes inside subgraphs (If, Loop) are not described.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.source import Floats, ParsedWeights, WeightFile

MAX_BYTES = 2 * 1024**3  # protobuf's own limit on one message
MAX_INITIALIZERS = 1 << 20
MAX_TYPED_VALUES = 1 << 26  # decoded while parsing; exporters store anything large as raw bytes
_T = onnx.TensorProto
# Stored types read as floats, as little-endian numpy types (bfloat16 is the top of a float32).
_FLOATS: dict[int, str] = {_T.FLOAT: "<f4", _T.FLOAT16: "<f2", _T.DOUBLE: "<f8", _T.BFLOAT16: "<u2"}
# Integer weights read as floats through the DequantizeLinear node that consumes them.
_QUANTIZED: dict[int, str] = {_T.INT8: "<i1", _T.UINT8: "<u1"}
_SCALES = {_T.FLOAT, _T.FLOAT16, _T.BFLOAT16}
_BITS_BY_NAME = {
    name: bits
    for bits, names in {
        2: "UINT2 INT2",
        4: "UINT4 INT4 FLOAT4E2M1",
        6: "FLOAT6E2M3 FLOAT6E3M2",
        8: "UINT8 INT8 BOOL FLOAT8E4M3FN FLOAT8E4M3FNUZ FLOAT8E5M2 FLOAT8E5M2FNUZ FLOAT8E8M0",
        16: "UINT16 INT16 FLOAT16 BFLOAT16",
        32: "FLOAT INT32 UINT32",
        64: "DOUBLE INT64 UINT64 COMPLEX64",
        128: "COMPLEX128",
    }.items()
    for name in names.split()
}
_TYPE_NAMES: dict[int, str] = {number: name for name, number in _T.DataType.items()}
# Bits per element, for each type this version of onnx knows; STRING has no fixed size.
_BITS = {n: _BITS_BY_NAME[name] for n, name in _TYPE_NAMES.items() if name in _BITS_BY_NAME}
_TYPED_FIELDS = {4, 5, 7, 10, 11}  # TensorProto float/int32/int64/double/uint64_data (packed)
# All fields that hold values by type, string_data (6) too.
_TYPED_NAMES = [f.name for f in _T.DESCRIPTOR.fields if f.number in {*_TYPED_FIELDS, 6}]
_GRAPH_ATTRIBUTES = {"transA", "transB", "axis", "block_size"}
_EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
_DIGITS = re.compile(r"[0-9]{1,19}")
_I64 = 1 << 63


@dataclass(frozen=True, slots=True)
class Dequantization:
    """y = (x - zero_point) * scale, per tensor (`axis` None) or along `axis`."""

    scale: Floats
    zero_point: Floats
    axis: int | None


@dataclass(frozen=True, slots=True)
class OnnxTensor:
    """One initializer, read from `size` bytes at `offset` in `source` or decoded in `values`.

    `source` is the .onnx file or an external data file; None when the stored values are not
    one run of bytes. Typed-field values are decoded once while parsing, into `values`.
    """

    name: str
    shape: tuple[int, ...]
    data_type: int
    byte_range: tuple[int, int]
    source: WeightFile | None = None  # the .onnx file or the external data file
    offset: int = 0
    size: int = 0
    values: Floats | None = None  # values held in typed fields, decoded while parsing
    dequantization: Dequantization | None = None

    @property
    def dtype(self) -> str:
        return _TYPE_NAMES.get(self.data_type, str(self.data_type))

    @property
    def stored_at(self) -> tuple[WeightFile, int, int] | None:
        """The file that holds the stored values and their [begin, end) in it, if one run."""
        if self.source is None:
            return None
        return self.source, self.offset, self.offset + self.size

    def read_rows(self, start: int, stop: int) -> Floats:
        """Rows [start, stop) as float32 (integer weights dequantized); a scalar has one row."""
        if self.data_type not in _FLOATS and self.dequantization is None:
            raise InvalidInputError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")
        rows = self.shape[0] if self.shape else 1
        if not 0 <= start <= stop <= rows:
            raise InvalidInputError(f"tensor {self.name!r}: rows {start}:{stop} of {rows}")
        values = self.stored_values(start, stop).reshape((stop - start, *self.shape[1:]))
        found = self.dequantization
        if found is None:
            return values
        scale, zero_point = found.scale, found.zero_point
        if found.axis is not None:  # per axis: line the parameters up with that axis
            pick = slice(start, stop) if found.axis == 0 else slice(None)
            axes = [1] * values.ndim
            axes[found.axis] = -1
            scale, zero_point = scale[pick].reshape(axes), zero_point[pick].reshape(axes)
        with np.errstate(all="ignore"):
            return ((values - zero_point) * scale).astype(np.float32)

    def stored_values(self, start: int = 0, stop: int | None = None) -> Floats:
        """Rows [start, stop) (all by default) of the stored values as float32, flat.

        For float and 8-bit integer types only, and not dequantized: what read_rows builds on.
        """
        row = math.prod(self.shape[1:])
        if stop is None:
            stop = self.shape[0] if self.shape else 1
        if self.values is not None:
            return self.values.reshape(-1)[start * row : stop * row]
        stored = _FLOATS.get(self.data_type) or _QUANTIZED.get(self.data_type)
        if self.source is None or stored is None:
            raise InvalidInputError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")
        width = np.dtype(stored).itemsize
        raw = self.source.read_at(self.offset + start * row * width, (stop - start) * row * width)
        values = np.frombuffer(raw, dtype=stored)
        if self.data_type == _T.BFLOAT16:
            return (values.astype(np.uint32) << 16).view(np.float32)
        with np.errstate(all="ignore"):
            return values.astype(np.float32)


def read_onnx(
    file: WeightFile,
    *,
    sibling: Callable[[str], WeightFile | None] | None = None,
    max_bytes: int = MAX_BYTES,
) -> ParsedWeights:
    """The initializers of the ONNX model `file` and a description of its graph.

    `sibling(location)` opens an external data file named by the model (a plain relative path,
    checked here first); None when there is none. InvalidInput, naming the tensor and the rule,
    for anything malformed, a location that leaves the model's folder, or a missing data file.
    """
    size = file.size
    if size > max_bytes:
        raise InvalidInputError(f"{file.name}: {size} bytes exceed the {max_bytes}-byte limit")
    data = file.read_at(0, size)
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError comes from a backend we do not type
        raise InvalidInputError(f"{file.name}: not an ONNX model (protobuf refused it)") from None
    if model.ir_version < 1 or not model.HasField("graph"):
        raise InvalidInputError(f"{file.name}: not an ONNX model (no IR version or no graph)")
    graph = model.graph
    if len(graph.sparse_initializer):
        raise InvalidInputError(f"{file.name}: sparse initializers are not supported")
    if len(graph.initializer) > MAX_INITIALIZERS:
        raise InvalidInputError(f"{file.name}: more than {MAX_INITIALIZERS} initializers")
    located = _locate_values(data, file.name)
    if len(located) != len(graph.initializer):
        raise InvalidInputError(f"{file.name}: initializers do not match the protobuf layout")
    opener = _Siblings(file, sibling)
    tensors: dict[str, OnnxTensor] = {}
    for proto, place in zip(graph.initializer, located, strict=True):
        tensor = _tensor(proto, place, data, opener)
        if tensor.name in tensors:
            raise InvalidInputError(f"{file.name}: the initializer {tensor.name!r} appears twice")
        tensors[tensor.name] = tensor
    _dequantize(graph, tensors)
    metadata: dict[str, object] = {
        "onnx.ir_version": model.ir_version,
        "onnx.producer_name": _text(model.producer_name, f"{file.name}: producer_name"),
        "onnx.producer_version": _text(model.producer_version, f"{file.name}: producer_version"),
        "onnx.opset": {
            _text(o.domain, f"{file.name}: an opset domain") or "ai.onnx": o.version
            for o in model.opset_import
        },
        "graph": _describe(graph, tensors, file.name),
    }
    return ParsedWeights("onnx", file, tuple(tensors.values()), metadata)


def _elements(shape: tuple[int, ...], where: str) -> int:
    elements = 1
    for dim in shape:
        elements *= dim
        if dim < 0 or elements >= _I64:
            raise InvalidInputError(f"{where}: dims {list(shape)} must be non-negative, < 2**63")
    return elements


def _text(value: object, what: str) -> str:
    """A protobuf string field: bytes (not str) where the file's bytes are not UTF-8."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} is not UTF-8")
    return value


def _tensor(
    proto: onnx.TensorProto, place: tuple[int, int] | None, data: bytes, opener: _Siblings
) -> OnnxTensor:
    name = _text(proto.name, f"{opener.model}: an initializer name")
    where = f"{opener.model}: initializer {name!r}"
    kind = proto.data_type
    if not name or kind not in _TYPE_NAMES or kind == _T.UNDEFINED:
        raise InvalidInputError(f"{where}: needs a name and a known data type (has {kind})")
    shape = tuple(proto.dims)
    elements = _elements(shape, where)
    typed = _typed_count(proto)
    external = proto.data_location == _T.EXTERNAL
    if (
        sum([external, proto.HasField("raw_data"), typed > 0]) > 1
        or (len(proto.external_data) and not external)
        or proto.HasField("segment")
    ):
        raise InvalidInputError(f"{where}: its values must be in exactly one place, unsegmented")
    bits = _BITS.get(kind)
    if not external and not proto.HasField("raw_data"):
        values = _typed_values(proto, elements, bits, where)
        if place is None:
            return OnnxTensor(name, shape, kind, (0, 0), values=values)
        size = place[1] - place[0]
        return OnnxTensor(name, shape, kind, place, opener.file, place[0], size, values)
    if bits is None:
        raise InvalidInputError(f"{where}: {_TYPE_NAMES[kind]} cannot be stored as raw bytes")
    nbytes = -(-elements * bits // 8)
    if external:
        source, offset = opener.locate(proto, where, nbytes)
        return OnnxTensor(name, shape, kind, (0, 0), source, offset, nbytes)
    if place is None or len(proto.raw_data) != nbytes:
        raise InvalidInputError(f"{where}: {len(proto.raw_data)} raw bytes, needs {nbytes}")
    if memoryview(data)[place[0] : place[1]] != proto.raw_data:
        raise InvalidInputError(f"{where}: raw data does not match the protobuf layout")
    return OnnxTensor(name, shape, kind, place, opener.file, place[0], nbytes)


def _typed_values(
    proto: onnx.TensorProto, elements: int, bits: int | None, where: str
) -> Floats | None:
    """Values held in the field for their type (`float_data`, `int32_data`, …), checked.

    Decoded here for the types read as floats (these are small: exporters write weights as raw
    bytes); None for the others.
    """
    kind = proto.data_type
    typed = _typed_count(proto)
    expected = elements * (2 if kind in {_T.COMPLEX64, _T.COMPLEX128} else 1)
    if bits is not None and bits < 8:  # noqa: PLR2004 - sub-byte types pack into the field
        expected = -(-elements * bits // 8)
    try:
        in_field = len(getattr(proto, helper.tensor_dtype_to_field(kind))) if typed else 0
    except (KeyError, ValueError, TypeError):
        in_field = -1  # a type with no typed field
    if typed != expected or typed != in_field:
        raise InvalidInputError(f"{where}: {typed} stored values, needs {expected} in its field")
    if kind not in _FLOATS and kind not in _QUANTIZED:
        return None
    if elements > MAX_TYPED_VALUES:
        raise InvalidInputError(f"{where}: {elements} values in a typed field (raw bytes expected)")
    try:
        with np.errstate(all="ignore"):  # doubles past float32's range become inf
            values: Floats = numpy_helper.to_array(proto).astype(np.float32).reshape(-1)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{where}: its stored values do not decode") from None
    return values


def _typed_count(proto: onnx.TensorProto) -> int:
    return sum(len(getattr(proto, name)) for name in _TYPED_NAMES)


@dataclass
class _Siblings:
    """The model file and its external data files, opened once each, by plain locations only."""

    file: WeightFile
    sibling: Callable[[str], WeightFile | None] | None
    opened: dict[str, WeightFile] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.file.name

    def locate(self, proto: onnx.TensorProto, where: str, nbytes: int) -> tuple[WeightFile, int]:
        entries: dict[str, str] = {}
        for entry in proto.external_data:
            key = _text(entry.key, f"{where}: an external data key")
            if key not in _EXTERNAL_KEYS or key in entries:
                raise InvalidInputError(f"{where}: external data key {key!r} unknown or repeated")
            entries[key] = _text(entry.value, f"{where}: the external data {key}")
        location = entries.get("location", "")
        # Relative, inside the model's folder: no empty part (so no leading "/"), "." or "..",
        # and nothing another system reads as a separator, a drive or the end of a C string.
        parts = location.split("/")
        if any(part in {"", ".", ".."} for part in parts) or any(c in location for c in "\\:\x00"):
            raise InvalidInputError(f"{where}: external data location {location!r} is not allowed")
        for key in ("offset", "length"):
            if key in entries and not _DIGITS.fullmatch(entries[key]):
                raise InvalidInputError(f"{where}: external data {key} {entries[key]!r}")
        offset = int(entries.get("offset", "0"))
        length = int(entries.get("length", str(nbytes)))
        if length != nbytes:
            raise InvalidInputError(f"{where}: external data length {length}, needs {nbytes}")
        source = self._open(location, where)
        if offset + nbytes > source.size:
            raise InvalidInputError(
                f"{where}: bytes {offset}:{offset + nbytes} run past the end of {location!r}"
            )
        return source, offset

    def _open(self, location: str, where: str) -> WeightFile:
        found = self.opened.get(location)
        if found is None:
            found = self.sibling(location) if self.sibling is not None else None
            if found is None:
                raise InvalidInputError(f"{where}: its external data file {location!r} is missing")
            self.opened[location] = found
        return found


def _dequantize(graph: onnx.GraphProto, tensors: dict[str, OnnxTensor]) -> None:
    """Give each 8-bit initializer that DequantizeLinear reads its scale and zero point.

    Only where that is unambiguous: every such node reads it with the same initializers as
    parameters, per tensor or per axis (blocked quantization is left alone).
    """
    uses: dict[str, set[tuple[str, str, int, int]]] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.domain not in {"", "ai.onnx"}:
            continue
        inputs = [*node.input, "", "", ""]  # optional inputs may be absent
        attributes = {a.name: a.i for a in node.attribute if a.type == onnx.AttributeProto.INT}
        use = (inputs[1], inputs[2], attributes.get("axis", 1), attributes.get("block_size", 0))
        uses.setdefault(inputs[0], set()).add(use)
    for name, found in uses.items():
        weight = tensors.get(name)
        if weight is None or weight.data_type not in _QUANTIZED or len(found) != 1:
            continue
        scale_name, zero_name, axis, block_size = next(iter(found))
        scale = tensors.get(scale_name)
        zero = tensors.get(zero_name) if zero_name else None
        if scale is None or block_size or (zero_name and zero is None):
            continue
        parameters = _parameters(weight, scale, zero, axis)
        if parameters is not None:
            tensors[name] = replace(weight, dequantization=parameters)


def _parameters(
    weight: OnnxTensor, scale: OnnxTensor, zero: OnnxTensor | None, axis: int
) -> Dequantization | None:
    rank = len(weight.shape)
    if scale.data_type not in _SCALES or (zero is not None and zero.data_type != weight.data_type):
        return None
    if zero is not None and zero.shape != scale.shape:
        return None
    per_axis = math.prod(scale.shape) != 1
    if per_axis:
        if not rank or not -rank <= axis < rank or scale.shape != (weight.shape[axis % rank],):
            return None
        axis %= rank
    scales = scale.stored_values()
    zeros = zero.stored_values() if zero is not None else np.zeros_like(scales)
    return Dequantization(scales, zeros, axis if per_axis else None)


def _describe(
    graph: onnx.GraphProto, tensors: dict[str, OnnxTensor], name: str
) -> list[dict[str, object]]:
    dequantized = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input and node.output
        if node.input[0] in tensors
    }
    described: list[dict[str, object]] = []
    for node in graph.node:
        names, slots = [], []
        for slot, value in enumerate(node.input):
            weight = value if value in tensors else dequantized.get(value)
            if weight is not None:
                names.append(weight)
                slots.append(slot)
        if not names:
            continue
        entry: dict[str, object] = {
            "op": _text(node.op_type, f"{name}: an op_type"),
            "inputs": names,
            "slots": slots,
        }
        if node.domain not in {"", "ai.onnx"}:
            entry["domain"] = _text(node.domain, f"{name}: a domain")
        attributes = {
            a.name: a.i
            for a in node.attribute
            if a.name in _GRAPH_ATTRIBUTES and a.type == onnx.AttributeProto.INT
        }
        if attributes:
            entry["attributes"] = attributes
        described.append(entry)
    return described


def _locate_values(data: bytes, name: str) -> list[tuple[int, int] | None]:
    """Where each initializer's values lie in the serialized model, in initializer order.

    Graph fields repeated at the top level merge (protobuf's rule), so their initializers are
    taken in file order; within a tensor the last `raw_data` wins, and typed values count only
    when they are one packed field.
    """
    found: list[tuple[int, int] | None] = []
    for number, wire, begin, end in _fields(data, 0, len(data), name):
        if number != 7 or wire != 2:  # noqa: PLR2004 - ModelProto.graph
            continue
        for inner, inner_wire, start, stop in _fields(data, begin, end, name):
            if inner == 5 and inner_wire == 2:  # noqa: PLR2004 - GraphProto.initializer
                found.append(_values_place(data, start, stop, name))
    return found


def _values_place(data: bytes, begin: int, end: int, name: str) -> tuple[int, int] | None:
    raw: tuple[int, int] | None = None
    typed: list[tuple[int, int] | None] = []
    for number, wire, start, stop in _fields(data, begin, end, name):
        if number == 9 and wire == 2:  # noqa: PLR2004 - TensorProto.raw_data
            raw = (start, stop)
        elif number in _TYPED_FIELDS:
            typed.append((start, stop) if wire == 2 else None)  # noqa: PLR2004 - packed
    if raw is not None:
        return raw
    return typed[0] if len(typed) == 1 else None


def _fields(data: bytes, begin: int, end: int, name: str) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, payload begin, payload end) of each field in data[begin:end]."""
    position = begin
    while position < end:
        key, position = _varint(data, position, end, name)
        wire = key & 7
        if wire == 0:
            _, stop = _varint(data, position, end, name)
        elif wire == 2:  # noqa: PLR2004 - length-delimited
            length, position = _varint(data, position, end, name)
            stop = position + length
        elif wire in {1, 5}:
            stop = position + (8 if wire == 1 else 4)
        else:  # groups: protobuf 2 only, never in ONNX
            raise InvalidInputError(f"{name}: unexpected protobuf wire type {wire}")
        if stop > end:
            raise InvalidInputError(f"{name}: a protobuf field runs past its message")
        yield key >> 3, wire, position, stop
        position = stop


def _varint(data: bytes, position: int, end: int, name: str) -> tuple[int, int]:
    value = shift = 0
    while position < end and shift < 64:  # noqa: PLR2004 - ten 7-bit groups at most
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise InvalidInputError(f"{name}: a protobuf varint is cut short or too long")
