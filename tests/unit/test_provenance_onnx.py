"""The ONNX reader, against models `onnx.helper` builds and `torch.onnx` exports, and garbage.

Values are checked against `onnx.numpy_helper` (stored tensors) and onnx's reference evaluator
(DequantizeLinear), byte ranges against the serialized bytes, shapes against the torch modules
that were exported. Malformed files, hostile external-data locations and random mutations give
InvalidInputError and nothing else.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.onnxfile import OnnxTensor, read_onnx
from kaiyuan.services.provenance.source import LocalWeightFile, ParsedWeights, RangedWeightFile

FUZZ = settings(
    max_examples=1000, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck)
)
RNG = np.random.default_rng(11)
W = RNG.standard_normal((4, 3), dtype=np.float32)
B = RNG.standard_normal(3).astype(np.float16)
G = RNG.standard_normal((5, 3), dtype=np.float32)
D = RNG.standard_normal((2, 5))
BF = RNG.standard_normal((3, 2), dtype=np.float32)


def in_memory(data: bytes, name: str = "model.onnx") -> RangedWeightFile:
    return RangedWeightFile(name, len(data), lambda start, end: iter([data[start:end]]))


def serialized(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def bfloat16(values: np.ndarray) -> bytes:
    return (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def helper_model() -> onnx.ModelProto:
    """X @ W + B, then Gemm with G (transB), a double scale, a bfloat16 table, an int64 shape."""
    initializers = [
        numpy_helper.from_array(W, "W"),  # raw_data
        numpy_helper.from_array(B, "B"),
        helper.make_tensor("G", TensorProto.FLOAT, G.shape, G.flatten().tolist()),  # float_data
        helper.make_tensor("D", TensorProto.DOUBLE, D.shape, D.flatten().tolist()),
        helper.make_tensor("BF", TensorProto.BFLOAT16, BF.shape, bfloat16(BF), raw=True),
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1]),  # int64_data
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["xw"]),
        helper.make_node("Cast", ["B"], ["b32"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["xw", "b32"], ["h"]),
        helper.make_node("Gemm", ["h", "G"], ["y"], transB=1),
        helper.make_node("Reshape", ["y", "shape"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def by_name(parsed: ParsedWeights) -> dict[str, OnnxTensor]:
    found = {}
    for tensor in parsed.tensors:
        assert isinstance(tensor, OnnxTensor)
        found[tensor.name] = tensor
    return found


def test_initializers_of_a_helper_model() -> None:
    model = helper_model()
    data = serialized(model)
    parsed = read_onnx(in_memory(data))
    assert parsed.format == "onnx"
    tensors = by_name(parsed)
    assert {n: (t.shape, t.dtype) for n, t in tensors.items()} == {
        "W": ((4, 3), "FLOAT"),
        "B": ((3,), "FLOAT16"),
        "G": ((5, 3), "FLOAT"),
        "D": ((2, 5), "DOUBLE"),
        "BF": ((3, 2), "BFLOAT16"),
        "shape": ((2,), "INT64"),
    }
    for proto in model.graph.initializer:
        tensor = tensors[proto.name]
        if proto.name == "shape":
            with pytest.raises(InvalidInputError, match="unsupported dtype INT64"):
                tensor.read_rows(0, 1)
            continue
        expected = numpy_helper.to_array(proto).astype(np.float32)
        assert np.array_equal(tensor.read_rows(0, tensor.shape[0]), expected), proto.name
        assert np.array_equal(tensor.read_rows(1, 2), expected[1:2]), proto.name
    # Byte ranges cover the values as stored: raw bytes, or a packed field's payload.
    begin, end = tensors["W"].byte_range
    assert data[begin:end] == W.tobytes()
    assert data[slice(*tensors["B"].byte_range)] == B.tobytes()
    assert data[slice(*tensors["BF"].byte_range)] == bfloat16(BF)
    assert data[slice(*tensors["G"].byte_range)] == G.astype("<f4").tobytes()
    assert data[slice(*tensors["D"].byte_range)] == D.astype("<f8").tobytes()
    begin, end = tensors["shape"].byte_range
    assert data[begin:end] == bytes([1]) + b"\xff" * 9 + b"\x01"  # varints 1 and -1
    assert parsed.metadata["onnx.opset"] == {"ai.onnx": 17}
    assert parsed.metadata["graph"] == [
        {"op": "MatMul", "inputs": ["W"], "slots": [1]},
        {"op": "Cast", "inputs": ["B"], "slots": [0]},
        {"op": "Gemm", "inputs": ["G"], "slots": [1], "attributes": {"transB": 1}},
        {"op": "Reshape", "inputs": ["shape"], "slots": [1]},
    ]


def test_rows_are_bounded() -> None:
    tensors = by_name(read_onnx(in_memory(serialized(helper_model()))))
    w = tensors["W"]
    assert w.read_rows(2, 2).shape == (0, 3)
    for start, stop in [(-1, 1), (3, 2), (0, 5)]:
        with pytest.raises(InvalidInputError, match="rows"):
            w.read_rows(start, stop)


def external_model(tmp_path: Path, location: str = "weights.bin") -> Path:
    path = tmp_path / "model.onnx"
    onnx.save_model(
        helper_model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def opener(folder: Path, calls: list[str] | None = None) -> Callable[[str], LocalWeightFile | None]:
    def sibling(name: str) -> LocalWeightFile | None:
        if calls is not None:
            calls.append(name)
        target = folder / name
        return LocalWeightFile(target, name) if target.is_file() else None

    return sibling


def test_external_data_is_read_from_the_sibling(tmp_path: Path) -> None:
    path = external_model(tmp_path)
    calls: list[str] = []
    parsed = read_onnx(LocalWeightFile(path, "model.onnx"), sibling=opener(tmp_path, calls))
    assert calls == ["weights.bin"]  # opened once for all tensors
    tensors = by_name(parsed)
    expected = {p.name: numpy_helper.to_array(p) for p in helper_model().graph.initializer}
    blob = (tmp_path / "weights.bin").read_bytes()
    for name in ("W", "B", "G", "D", "BF"):
        tensor = tensors[name]
        assert tensor.stored_at is not None
        source, begin, end = tensor.stored_at
        if name in {"G", "D"}:  # onnx moves only raw_data out: these stay in typed fields
            assert source.name == "model.onnx"
            assert tensor.byte_range == (begin, end)
        else:
            assert tensor.byte_range == (0, 0)  # not in the .onnx file
            assert source.name == "weights.bin"
            assert blob[begin:end] == expected[name].tobytes()
        values = expected[name].astype(np.float32)
        assert np.array_equal(tensor.read_rows(0, tensor.shape[0]), values)
        assert np.array_equal(tensor.read_rows(1, 2), values[1:2])
    with pytest.raises(InvalidInputError, match=r"weights\.bin' is missing"):
        read_onnx(LocalWeightFile(path))
    (tmp_path / "weights.bin").write_bytes(blob[:-8])
    with pytest.raises(InvalidInputError, match="run past the end"):
        read_onnx(LocalWeightFile(path), sibling=opener(tmp_path))


@pytest.mark.parametrize(
    "location",
    [
        "../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "./w.bin",
        "C:w.bin",
        "a\\..\\b",
        "",
        "a//b",
        "w\x00",
    ],
)
def test_external_locations_must_stay_beside_the_model(tmp_path: Path, location: str) -> None:
    model = onnx.load(external_model(tmp_path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    calls: list[str] = []
    with pytest.raises(InvalidInputError, match="location"):
        read_onnx(in_memory(serialized(model)), sibling=opener(tmp_path, calls))
    assert calls == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("length", "12", "length 12, needs 48"),
        ("offset", "-4", "offset"),
        ("offset", " 4", "offset"),
        ("basepath", "/", "unknown or repeated"),
        ("location", "weights.bin", "unknown or repeated"),
    ],
)
def test_external_entries_are_checked(tmp_path: Path, key: str, value: str, message: str) -> None:
    model = onnx.load(external_model(tmp_path), load_external_data=False)
    weight = next(t for t in model.graph.initializer if t.name == "W")
    entries = {e.key: e for e in weight.external_data}
    if key in entries and key != "location":
        entries[key].value = value
    else:
        weight.external_data.add(key=key, value=value)
    with pytest.raises(InvalidInputError, match=message):
        read_onnx(in_memory(serialized(model)), sibling=opener(tmp_path))


def dequantize_model() -> onnx.ModelProto:
    """Three 8-bit weights through DequantizeLinear: per tensor, per axis 1, per axis 0."""
    q1 = RNG.integers(-128, 128, (4, 6), dtype=np.int8)
    q2 = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    q3 = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    initializers = [
        numpy_helper.from_array(q1, "q1"),
        numpy_helper.from_array(np.array(0.05, np.float32), "s1"),
        numpy_helper.from_array(np.array(3, np.int8), "z1"),
        numpy_helper.from_array(q2, "q2"),
        numpy_helper.from_array(RNG.random(6, dtype=np.float32), "s2"),
        numpy_helper.from_array(RNG.integers(0, 256, 6, dtype=np.uint8), "z2"),
        numpy_helper.from_array(q3, "q3"),
        numpy_helper.from_array(RNG.random(4).astype(np.float16), "s3"),
        numpy_helper.from_array(q1.copy(), "q4"),  # read twice with different scales
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["w1"]),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["w2"], axis=1),
        helper.make_node("DequantizeLinear", ["q3", "s3"], ["w3"], axis=0),
        helper.make_node("DequantizeLinear", ["q4", "s1"], ["w4"]),
        helper.make_node("DequantizeLinear", ["q4", "s1", "z1"], ["w5"]),
        helper.make_node("MatMul", ["X", "w1"], ["y"]),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in ("w1", "w2", "w3", "w4", "y")
    ]
    graph = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4])],
        outputs,
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_dequantize_linear_weights_match_the_reference_evaluator() -> None:
    model = dequantize_model()
    w1, w2, w3, _, _ = ReferenceEvaluator(model).run(None, {"X": np.ones((2, 4), np.float32)})
    tensors = by_name(read_onnx(in_memory(serialized(model))))
    for name, expected in [("q1", w1), ("q2", w2), ("q3", w3)]:
        tensor = tensors[name]
        assert tensor.dtype in {"INT8", "UINT8"}
        expected32 = np.asarray(expected, dtype=np.float32)
        assert np.allclose(tensor.read_rows(0, 4), expected32, rtol=1e-3), name
        assert np.allclose(tensor.read_rows(1, 3), expected32[1:3], rtol=1e-3), name
    with pytest.raises(InvalidInputError, match="unsupported dtype INT8"):
        tensors["q4"].read_rows(0, 1)  # two sets of parameters: ambiguous
    with pytest.raises(InvalidInputError, match="unsupported dtype UINT8"):
        tensors["z2"].read_rows(0, 1)
    graph = read_onnx(in_memory(serialized(model))).metadata["graph"]
    assert isinstance(graph, list)
    assert graph[1] == {
        "op": "DequantizeLinear",
        "inputs": ["q2", "s2", "z2"],
        "slots": [0, 1, 2],
        "attributes": {"axis": 1},
    }
    assert graph[-1] == {"op": "MatMul", "inputs": ["q1"], "slots": [1]}  # through its DQ


def test_odd_dequantize_nodes_leave_weights_undequantized() -> None:
    model = dequantize_model()
    nodes = model.graph.node
    nodes.add(op_type="DequantizeLinear")  # no inputs at all
    nodes.add(op_type="DequantizeLinear", input=["q1", "missing"], output=["w6"])
    nodes.add(op_type="DequantizeLinear", input=["q3", "s2"], output=["w7"], domain="x.y")
    nodes[1].attribute[0].i = 7  # q2's axis out of range
    tensors = by_name(read_onnx(in_memory(serialized(model))))
    for name in ("q1", "q2"):
        with pytest.raises(InvalidInputError, match="unsupported dtype"):
            tensors[name].read_rows(0, 1)
    assert tensors["q3"].read_rows(0, 1).shape == (1, 6)  # another domain's node is not ONNX's


LEGACY = "dynamo" in inspect.signature(torch.onnx.export).parameters


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.up = torch.nn.Linear(16, 32)
        self.down = torch.nn.Linear(32, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(self.embed(ids))))


def export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, (example,), str(path), dynamo=False)


@pytest.mark.skipif(not LEGACY, reason="this torch has no legacy (TorchScript) ONNX exporter")
def test_a_torch_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Tiny().eval()
    path = tmp_path / "tiny.onnx"
    export(module, torch.tensor([[1, 2, 3]]), path)
    parsed = read_onnx(LocalWeightFile(path, "tiny.onnx"))
    tensors = by_name(parsed)
    graph = parsed.metadata["graph"]
    assert isinstance(graph, list)
    assert [entry["op"] for entry in graph] == ["Gather", "MatMul", "Add", "MatMul", "Add"]
    embed, up, up_bias, down, down_bias = (tensors[entry["inputs"][0]] for entry in graph)
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    # MatMul weights are stored transposed, [in, out]; the graph says which is which.
    assert (embed.shape, up.shape, down.shape) == ((50, 16), (16, 32), (32, 8))
    assert graph[1]["slots"] == [1]
    assert np.array_equal(embed.read_rows(0, 50), weights["embed.weight"])
    assert np.array_equal(up.read_rows(0, 16), weights["up.weight"].T)
    assert np.array_equal(down.read_rows(3, 9), weights["down.weight"].T[3:9])
    assert np.array_equal(up_bias.read_rows(0, 32), weights["up.bias"])
    assert np.array_equal(down_bias.read_rows(0, 8), weights["down.bias"])
    data = path.read_bytes()
    for tensor in (embed, up, down):
        assert data[slice(*tensor.byte_range)] == tensor.read_rows(0, tensor.shape[0]).tobytes()


@pytest.mark.skipif(not LEGACY, reason="this torch has no legacy (TorchScript) ONNX exporter")
def test_a_torch_export_with_gemm(tmp_path: Path) -> None:
    module = torch.nn.Linear(6, 4).eval()
    path = tmp_path / "linear.onnx"
    export(module, torch.ones(2, 6), path)
    parsed = read_onnx(LocalWeightFile(path))
    graph = parsed.metadata["graph"]
    assert isinstance(graph, list)
    [gemm] = graph
    assert gemm["op"] == "Gemm"
    assert gemm["attributes"] == {"transB": 1}
    weight = by_name(parsed)[gemm["inputs"][0]]
    assert weight.shape == (4, 6)  # [out, in], as torch keeps it
    assert np.array_equal(weight.read_rows(0, 4), module.weight.detach().numpy())


# --- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_refused(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, 64 + seed * 97, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidInputError):
        read_onnx(in_memory(data))


def test_every_cut_parses_or_is_refused() -> None:
    data = serialized(helper_model())
    tensors = by_name(read_onnx(in_memory(data)))
    begin, end = tensors["W"].byte_range
    for cut in range(len(data)):
        try:
            read_onnx(in_memory(data[:cut]))
        except InvalidInputError:
            continue
        assert not begin <= cut < end, cut  # a cut inside a tensor's bytes never parses


def edited(change: Callable[[onnx.ModelProto], object]) -> bytes:
    model = helper_model()
    change(model)
    return serialized(model)


def _set(proto: object, field: str, value: object) -> None:
    setattr(proto, field, value)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "no graph": (edited(lambda m: m.ClearField("graph")), "no graph"),
    "no IR version": (edited(lambda m: m.ClearField("ir_version")), "IR version"),
    "duplicate initializer": (
        edited(lambda m: m.graph.initializer.append(m.graph.initializer[0])),
        "appears twice",
    ),
    "unnamed initializer": (
        edited(lambda m: _set(m.graph.initializer[0], "name", "")),
        "needs a name",
    ),
    "unknown data type": (
        edited(lambda m: _set(m.graph.initializer[0], "data_type", 99)),
        "known data type",
    ),
    "raw size mismatch": (
        edited(lambda m: m.graph.initializer[0].dims.append(2)),
        "48 raw bytes, needs 96",
    ),
    "negative dims": (
        edited(lambda m: m.graph.initializer[0].dims.extend([-1, -1])),
        "non-negative",
    ),
    "typed count mismatch": (
        edited(lambda m: m.graph.initializer[2].float_data.append(1.0)),
        "16 stored values, needs 15",
    ),
    "values in the wrong field": (
        edited(lambda m: _set(m.graph.initializer[2], "data_type", TensorProto.INT64)),
        "in its field",
    ),
    "values in two places": (
        edited(lambda m: m.graph.initializer[0].float_data.append(1.0)),
        "exactly one place",
    ),
    "external without data": (
        edited(lambda m: _set(m.graph.initializer[0], "data_location", TensorProto.EXTERNAL)),
        "exactly one place",
    ),
    "string as raw bytes": (
        edited(lambda m: _set(m.graph.initializer[0], "data_type", TensorProto.STRING)),
        "cannot be stored as raw bytes",
    ),
    "sparse initializer": (
        edited(lambda m: m.graph.sparse_initializer.add()),
        "sparse",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_models_are_refused(case: str) -> None:
    data, message = MALFORMED[case]
    with pytest.raises(InvalidInputError, match=message):
        read_onnx(in_memory(data))


def test_names_that_are_not_utf8_are_refused() -> None:
    data = serialized(helper_model())
    marker = b"\x42\x02BF"  # TensorProto.name (field 8, length-delimited) = "BF"
    assert data.count(marker) == 1
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        read_onnx(in_memory(data.replace(marker, b"\x42\x02\xff\xfe")))


def test_size_limit() -> None:
    data = serialized(helper_model())
    with pytest.raises(InvalidInputError, match="exceed"):
        read_onnx(in_memory(data), max_bytes=len(data) - 1)


SMALL = serialized(dequantize_model())


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.just(len(SMALL)), st.integers(0, len(SMALL))),
)
def test_mutated_models_parse_or_are_refused(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SMALL)
    for position, value in edits:
        data[position] = value
    try:
        parsed = read_onnx(in_memory(bytes(data[:cut])))
    except InvalidInputError:
        return
    for tensor in parsed.tensors:
        rows = tensor.shape[0] if tensor.shape else 1
        try:
            values = tensor.read_rows(0, rows)
        except InvalidInputError:
            continue
        assert values.dtype == np.float32
        assert values.shape == ((rows, *tensor.shape[1:]) if tensor.shape else (1,))
