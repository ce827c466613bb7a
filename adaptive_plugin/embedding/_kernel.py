"""Integer matrix products that give the same vectors on every x86-64 CPU.

The derived models multiply uint8 activations by int8 weights (`MatMulInteger` in recipe 2,
`MatMulIntegerToFloat` in recipe 3). onnxruntime's kernel for that pair ("u8s8") is exact
where the CPU has VNNI (AVX512-VNNI or AVX-VNNI: `vpdpbusd` adds four products into int32),
but on AVX2 without VNNI it uses `vpmaddubsw`, which adds two products in int16 and saturates
at 32767. Two large activations against two large weights then lose part of their sum, and
the model is no longer the one the router and cache were trained on: on an AVX2-only CPU the
derived all-MiniLM-L6-v2 kept a cosine of only 0.976 with its own vectors on a VNNI CPU, and
0.979 with the float model, where 0.99 holds with VNNI (bench/RESULTS.md, "Integer kernels").

`u8s8_is_exact()` multiplies a small matrix built to overflow a 16-bit pair sum (once per
process, about 6 ms; the probe graph ships as `artifacts/u8s8_probe.onnx`, rebuilt by
`python -m adaptive_plugin.embedding._kernel`, because importing `onnx` costs half a second). Where it is not exact, `unsigned_weights()` rewrites each int8
weight w (and its zero point) as w + 128 in uint8: the products (a - za)(w - zw) are the same
integers, and onnxruntime's u8u8 kernel widens both operands to 16 bits before multiplying, so
nothing saturates. The vectors are then the VNNI CPU's own, up to float rounding in the
operators between the products (mean cosine 0.99992, lowest 0.998 on the cache data). u8u8 is
about 2.5 times slower than u8s8 with VNNI, so it is used only where u8s8 is not exact.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = ["KERNELS", "integer_weights", "u8s8_is_exact", "unsigned_weights"]

# "u8s8": the file as derived (int8 weights); "u8u8": its weights shifted into uint8
KERNELS = ("u8s8", "u8u8")
# the weight operand (and its zero point) of each integer matrix product the derived models use
_WEIGHT_INPUTS = {"MatMulInteger": (1, 3), "MatMulIntegerToFloat": (1, 5), "DynamicQuantizeMatMul": (1, 3)}
_PROBE_K, _PROBE_N, _PROBE_M = 64, 16, 4
PROBE_FILE = Path(__file__).with_name("artifacts") / "u8s8_probe.onnx"


def integer_weights(model: onnx.ModelProto) -> bool:
    """Whether `model` multiplies by int8 weights (the kernel choice matters for it)."""
    import onnx

    inits = {t.name: t.data_type for t in model.graph.initializer}
    return any(
        inits.get(node.input[_WEIGHT_INPUTS[node.op_type][0]]) == onnx.TensorProto.INT8
        for node in model.graph.node if node.op_type in _WEIGHT_INPUTS
    )


def unsigned_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (changed in place) with every int8 weight operand and its zero point in uint8,
    shifted by 128: the same integer products, for onnxruntime's u8u8 kernel."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    shifted: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in _WEIGHT_INPUTS:
            continue
        weight_at, zero_at = _WEIGHT_INPUTS[node.op_type]
        weight = inits.get(node.input[weight_at])
        if weight is None or (weight.data_type != onnx.TensorProto.INT8 and weight.name not in shifted):
            continue
        if zero_at >= len(node.input) or not node.input[zero_at]:  # no zero point: it is 0, now 128
            name = f"{weight.name}_u8_zero_point"
            if name not in inits:
                inits[name] = numpy_helper.from_array(np.array(128, dtype=np.uint8), name)
                model.graph.initializer.append(inits[name])
            while len(node.input) <= zero_at:
                node.input.append("")
            node.input[zero_at] = name
        for name in (weight.name, node.input[zero_at]):
            tensor = inits.get(name)
            if tensor is None:
                raise ValueError(f"the zero point {name} of {node.name or node.op_type} is not a constant")
            if name in shifted or tensor.data_type == onnx.TensorProto.UINT8:
                continue
            values = numpy_helper.to_array(tensor).astype(np.int16) + 128
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), name))
            shifted.add(name)
    return model


@functools.cache
def u8s8_is_exact() -> bool:
    """Whether onnxruntime's uint8 x int8 products are exact on this CPU (see the module doc).

    Both operator forms of the derived models are probed: full-scale activations (255) against
    full-scale weights (127), whose pair sums (64770) overflow int16.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(PROBE_FILE), sess_options=_probe_options(), providers=["CPUExecutionProvider"])
    dynamic, to_float = session.run(None, {"x": np.ones((_PROBE_M, _PROBE_K), dtype=np.float32),
                                           "a": np.full((_PROBE_M, _PROBE_K), 255, dtype=np.uint8)})
    exact = float(_PROBE_K * 127)  # scales: 1/255 for the activations, 1 for the weights
    return bool(np.allclose(dynamic, exact, rtol=1e-4) and np.allclose(to_float, exact, rtol=1e-4))


def _probe_options() -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the embedder loads
    options.intra_op_num_threads = 1
    return options


def probe_model() -> onnx.ModelProto:
    """x -> DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (recipe 2's pattern, which
    onnxruntime fuses), and a (uint8) -> MatMulIntegerToFloat (recipe 3's)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((_PROBE_K, _PROBE_N), 127, dtype=np.int8), "w")
    constants = [
        weights,
        numpy_helper.from_array(np.array(0, dtype=np.int8), "w_zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array(1.0 / 255, dtype=np.float32), "a_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "a_zero"),
    ]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "x_scale", "x_zero"]),
        helper.make_node("MatMulInteger", ["xq", "w", "x_zero", "w_zero"], ["product"]),
        helper.make_node("Cast", ["product"], ["product_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_scale", "w_scale"], ["scale"]),
        helper.make_node("Mul", ["product_f", "scale"], ["dynamic"]),
        helper.make_node("MatMulIntegerToFloat", ["a", "w", "a_scale", "w_scale", "a_zero", "w_zero"], ["to_float"],
                         domain="com.microsoft"),
    ]
    graph = helper.make_graph(
        nodes, "u8s8_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [_PROBE_M, _PROBE_K]),
         helper.make_tensor_value_info("a", TensorProto.UINT8, [_PROBE_M, _PROBE_K])],
        [helper.make_tensor_value_info("dynamic", TensorProto.FLOAT, [_PROBE_M, _PROBE_N]),
         helper.make_tensor_value_info("to_float", TensorProto.FLOAT, [_PROBE_M, _PROBE_N])],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


if __name__ == "__main__":  # rebuild the shipped probe graph
    import onnx

    PROBE_FILE.parent.mkdir(exist_ok=True)
    onnx.save(probe_model(), str(PROBE_FILE))
    print(f"wrote {PROBE_FILE}", file=sys.stderr)
