"""Quantize an embedding model's matrix products row by row, so that a batch changes no vector.

onnxruntime's dynamic quantization (`quantize_dynamic`) scales the activations of each matrix
product by one number for the whole input tensor: in a padded batch of texts every text's
scale is the largest value of any text in it, so a text's vector depends on the texts it was
batched with (cosine 0.988-0.995 to the same text embedded alone). This rewrite gives every
row (every token of every text) a scale of its own:

    m     = max(|x|, over the row)                 Abs, ReduceMax, Max (never zero)
    q     = round(127 x / m) + 128, as uint8       Div, QuantizeLinear (scale 1/127)
    y     = (q - 128) @ W8 * (w_scale / 127) * m   MatMulIntegerToFloat (its A scale: one per row)

with W8 the weights quantized symmetrically per output column (int8). Inputs shared by several
products (a layer's query, key and value projections) are quantized once. A token's result
then depends on nothing but its own row, and padding rows (masked out by attention and by
mean pooling) cannot change any other row: batched vectors equal one-at-a-time vectors to
float rounding, and they sit closer to the float model's than the per-tensor scale (cosine
0.9995 against 0.989 on the probe sentences). The price is about 5 small nodes per quantized
input, a few microseconds each (see bench/RESULTS.md, "Embedding model"). MatMulIntegerToFloat
broadcasts its A scale over the product, so a (batch, tokens, 1) tensor of row scales needs no
node of its own (checked at derivation: the vectors must match the float model's).

uint8 activations with zero point 128 keep onnxruntime on its fast u8s8 integer kernels; signed
int8 activations run several times slower on x86 (measured: 11 ms instead of 1.1 ms).

Large lookup tables (the word embeddings: 30522 x 384 floats, 47 MB of the 53 MB model) are
stored as int8 with one scale per row and dequantized after the lookup (Gather, Cast, Gather,
Mul): each process that loads the model holds about 35 MB less.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

MS_DOMAIN = "com.microsoft"
_PREFIX = "adaptive_rowwise"
TABLE_ROWS = 4096  # a constant Gather table with at least this many rows is stored as int8


def quantize_rows(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose matrix products by a constant 2-D weight are row-wise quantized.

    Raises ValueError if there is none (not a model this rewrite is for).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    weights = {t.name: t for t in graph.initializer}
    constants = [
        numpy_helper.from_array(np.array(1 / 127, dtype=np.float32), f"{_PREFIX}_inv127"),
        numpy_helper.from_array(np.array(1e-30, dtype=np.float32), f"{_PREFIX}_tiny"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), f"{_PREFIX}_zero_u8"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), f"{_PREFIX}_zero_s8"),
    ]
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on
        constants.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{_PREFIX}_last_axis"))
    quantized: dict[str, tuple[str, str]] = {}  # input -> (its uint8 rows, their scales)
    added: list[onnx.NodeProto] = []
    replaced: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        if w.ndim != 2:
            continue
        x = node.input[0]
        if x not in quantized:
            p = f"{_PREFIX}_{len(quantized)}"
            added += [
                helper.make_node("Abs", [x], [f"{p}_abs"], name=f"{p}_abs"),
                helper.make_node("ReduceMax", [f"{p}_abs", f"{_PREFIX}_last_axis"], [f"{p}_max"], keepdims=1,
                                 name=f"{p}_max")
                if opset >= 18 else
                helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], axes=[-1], keepdims=1, name=f"{p}_max"),
                helper.make_node("Max", [f"{p}_max", f"{_PREFIX}_tiny"], [f"{p}_scale"], name=f"{p}_scale"),
                helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_unit"], name=f"{p}_unit"),
                helper.make_node("QuantizeLinear", [f"{p}_unit", f"{_PREFIX}_inv127", f"{_PREFIX}_zero_u8"],
                                 [f"{p}_q"], name=f"{p}_q"),
            ]
            quantized[x] = (f"{p}_q", f"{p}_scale")
        rows, scale = quantized[x]
        column_scale = np.abs(w).max(axis=0) / 127.0
        column_scale[column_scale == 0] = 1.0
        w8 = np.clip(np.round(w / column_scale), -127, 127).astype(np.int8)
        name = f"{_PREFIX}_w{len(replaced)}"
        constants += [numpy_helper.from_array(w8, f"{name}_s8"),  # the rows' 1/127 is folded into the columns' scales
                      numpy_helper.from_array((column_scale / 127.0).astype(np.float32), f"{name}_scale")]
        product = node.output[0]
        added.append(  # the rows' scales broadcast over the product (onnxruntime >= 1.20 takes them per row)
            helper.make_node("MatMulIntegerToFloat",
                             [rows, f"{name}_s8", scale, f"{name}_scale", f"{_PREFIX}_zero_u8", f"{_PREFIX}_zero_s8"],
                             [product], domain=MS_DOMAIN, name=f"{name}_product"))
        replaced.append(node)
    if not replaced:
        raise ValueError("the model has no matrix product by a constant weight")
    tables = _quantize_tables(graph, weights, constants, added)
    graph.initializer.extend(constants)
    from adaptive_plugin.embedding._fuse import _splice

    _splice(out, replaced + tables, added)
    return out


def _quantize_tables(graph: onnx.GraphProto, weights: dict[str, onnx.TensorProto], constants: list[onnx.TensorProto],
                     added: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Rewrite lookups in large float tables as int8 rows times a scale per row; returns the
    Gather nodes it replaced (see the module doc)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    replaced = []
    for node in graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2 or table.dims[0] < TABLE_ROWS:
            continue
        if any(a.name == "axis" and a.i != 0 for a in node.attribute):
            continue
        values = numpy_helper.to_array(table).astype(np.float32)
        row_scale = np.abs(values).max(axis=1, keepdims=True) / 127.0
        row_scale[row_scale == 0] = 1.0
        name = f"{_PREFIX}_table{len(replaced)}"
        constants += [numpy_helper.from_array(np.clip(np.round(values / row_scale), -127, 127).astype(np.int8), f"{name}_s8"),
                      numpy_helper.from_array(row_scale.astype(np.float32), f"{name}_scale")]
        ids = node.input[1]
        added += [
            helper.make_node("Gather", [f"{name}_s8", ids], [f"{name}_rows"], name=f"{name}_rows"),
            helper.make_node("Cast", [f"{name}_rows"], [f"{name}_float"], to=TensorProto.FLOAT, name=f"{name}_float"),
            helper.make_node("Gather", [f"{name}_scale", ids], [f"{name}_scales"], name=f"{name}_scales"),
            helper.make_node("Mul", [f"{name}_float", f"{name}_scales"], [node.output[0]], name=f"{name}_rescale"),
        ]
        replaced.append(node)
    return replaced


def keep_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A copy of `model` with `name` as its only output (and nothing computed for the others).

    paraphrase-MiniLM-L3-v2's export returns the input ids, the mask, the token embeddings and
    its own mean-pooled vector; the plugin pools the token embeddings itself, as for every model.
    """
    import onnx

    from adaptive_plugin.embedding._fuse import _drop_unused

    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [o for o in out.graph.output if o.name == name]
    if not kept:
        raise ValueError(f"the model has no output {name!r}")
    del out.graph.output[:]
    out.graph.output.extend(kept)
    _drop_unused(out.graph)
    return out
