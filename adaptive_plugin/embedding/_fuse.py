"""Rewrite the derived embedding model's attention and GELU into onnxruntime's fused operators.

The wheel's ONNX export spells each layer's attention out in about 28 small nodes (reshapes,
transposes, a mask built from the attention mask, softmax, a NaN guard) and its GELU in five.
onnxruntime fuses neither pattern (its attention fusion does not recognise this export, and its
GELU fusion expects the other order of the two multiplications), and at a few microseconds per
node the small nodes cost about as much as the work: with one thread, a 23-token prompt runs in
2.4 ms instead of 2.7 ms once each attention is one `MultiHeadAttention` (key padding mask from
`attention_mask`) and each GELU one `Gelu` (see bench/RESULTS.md).

Patterns are matched by structure, not by node name, and every rewrite is checked: `fuse`
raises `NoMatch` unless every attention and GELU matched, and `derive_quantized` keeps the
fused file only if it gives the unfused model's vectors, padded batches included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

MS_DOMAIN = "com.microsoft"
MASK_INPUT = "attention_mask"
_PASS_THROUGH = frozenset({"Reshape", "Transpose"})


class NoMatch(Exception):
    """The graph is not the shape this rewrite knows; the message says where."""


@dataclass
class _Graph:
    model: onnx.ModelProto

    def __post_init__(self) -> None:
        from onnx import numpy_helper

        g = self.model.graph
        self.producer = {out: node for node in g.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for node in g.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def made_by(self, tensor: str, op_type: str) -> onnx.NodeProto:
        node = self.producer.get(tensor)
        if node is None or node.op_type != op_type:
            raise NoMatch(f"{tensor} is not made by {op_type}")
        return node

    def only_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise NoMatch(f"{tensor} is not used by exactly one {op_type}")
        return users[0]

    def scalar(self, tensor: str) -> float | None:
        value = self.constants.get(tensor)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def other_input(self, node: onnx.NodeProto, known: str) -> str:
        rest = [name for name in node.input if name != known]
        if len(node.input) != 2 or len(rest) != 1:
            raise NoMatch(f"{node.op_type} {node.name} does not take {known} and one other input")
        return rest[0]


def fuse(model: onnx.ModelProto) -> onnx.ModelProto:
    """A fused copy of `model`; `NoMatch` if any attention or GELU does not match (see module doc)."""
    import onnx

    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    _rewrite(fused)
    return fused


def _rewrite(model: onnx.ModelProto) -> None:
    from onnx import TensorProto, helper

    g = _Graph(model)
    if MASK_INPUT not in {i.name for i in model.graph.input}:
        raise NoMatch(f"the model has no {MASK_INPUT} input")
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    erfs = [n for n in model.graph.node if n.op_type == "Erf"]
    if not softmaxes or len(softmaxes) != len(erfs):
        raise NoMatch(f"{len(softmaxes)} softmax and {len(erfs)} erf nodes: not one attention and one GELU per layer")
    mask = "adaptive_fused_key_padding_mask"
    new = [helper.make_node("Cast", [MASK_INPUT], [mask], to=TensorProto.INT32, name=mask)]
    replaced: list[onnx.NodeProto] = []
    for softmax in softmaxes:
        node, last = _attention(g, softmax, mask)
        new.append(node)
        replaced.append(last)
    for erf in erfs:
        node, last = _gelu(g, erf)
        new.append(node)
        replaced.append(last)
    _splice(model, replaced, new)


def _attention(g: _Graph, softmax: onnx.NodeProto, mask: str) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """softmax(q k^T * scale + mask) v, heads merged: one MultiHeadAttention, and the node it replaces.

    The scale is read from scalar multiplications of q and k (all-MiniLM-L6-v2's export) or a
    scalar division of their product (paraphrase-MiniLM-L3-v2's)."""
    from onnx import helper

    product = g.made_by(softmax.input[0], "Add").input[0]
    divided = 1.0
    divide = g.producer.get(product)
    if divide is not None and divide.op_type == "Div" and (divisor := g.scalar(divide.input[1])):
        divided, product = 1.0 / divisor, divide.input[0]
    scores = g.made_by(product, "MatMul")
    probs = softmax.output[0]
    for user in g.consumers.get(probs, []):  # the export's guard: Where(IsNaN(p), 0, p)
        if user.op_type == "Where" and user.input[2] == probs:
            probs = user.output[0]
    context = g.only_consumer(probs, "MatMul")
    if context.input[0] != probs:
        raise NoMatch(f"{context.name} does not multiply the attention probabilities by the values")
    merged = g.only_consumer(g.only_consumer(context.output[0], "Transpose").output[0], "Reshape")
    (q, q_scale, split), (k, k_scale, _), (v, v_scale, _) = (
        _source(g, scores.input[0]), _source(g, scores.input[1]), _source(g, context.input[1]))
    hidden = _bias_width(g, q)
    if hidden is None or {_bias_width(g, k), _bias_width(g, v)} != {hidden}:
        raise NoMatch(f"the projections of {softmax.name} do not end in biases of one width")
    heads, size = split or (0, 0)
    heads = heads if heads > 0 else hidden // size if size > 0 else 0
    if v_scale != 1.0 or heads <= 0 or hidden % heads:
        raise NoMatch(f"cannot read how {softmax.name} splits {hidden} channels into heads")
    node = helper.make_node(
        "MultiHeadAttention", [q, k, v, "", mask], [merged.output[0]], domain=MS_DOMAIN,
        name=f"adaptive_fused_attention_{merged.output[0]}", num_heads=heads, scale=q_scale * k_scale * divided,
    )
    return node, merged


def _source(g: _Graph, tensor: str) -> tuple[str, float, tuple[int, int] | None]:
    """Walk up through reshapes, transposes and scalar multiplications: the projection's output,
    the product of the scalars, and (heads, head size) of the first reshape to (batch, seq,
    heads, head size), either of them -1 (inferred)."""
    scale, split = 1.0, None
    while (node := g.producer.get(tensor)) is not None:
        if node.op_type in _PASS_THROUGH:
            if node.op_type == "Reshape":
                split = _split(g, node.input[1]) or split
            tensor = node.input[0]
        elif node.op_type == "Mul" and (factor := next(filter(None, map(g.scalar, node.input)), None)) is not None:
            scale *= factor
            tensor = next(name for name in node.input if g.scalar(name) is None)
        else:
            break
    return tensor, scale, split


def _split(g: _Graph, shape: str) -> tuple[int, int] | None:
    """The last two of a 4-dimensional reshape target, when they are constants (a constant
    shape, or a Concat of the batch and sequence lengths and two constants)."""
    if shape in g.constants:
        dims = [int(d) for d in g.constants[shape].reshape(-1)]
    else:
        node = g.producer.get(shape)
        if node is None or node.op_type != "Concat" or len(node.input) != 4:
            return None
        dims = [0, 0, *(g.scalar(name) or 0 for name in node.input[2:])]
    return (int(dims[2]), int(dims[3])) if len(dims) == 4 and (dims[2] > 0 or dims[3] > 0) else None


def _bias_width(g: _Graph, tensor: str) -> int | None:
    """The width of the bias a projection adds last (its output width)."""
    node = g.producer.get(tensor)
    if node is None or node.op_type != "Add":
        return None
    widths = [g.constants[name].shape[0] for name in node.input if name in g.constants and g.constants[name].ndim == 1]
    return widths[0] if len(widths) == 1 else None


def _gelu(g: _Graph, erf: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """x * 0.5 * (1 + erf(x / sqrt 2)), its two multiplications in either order: one Gelu."""
    from onnx import helper

    divide = g.made_by(erf.input[0], "Div")
    x = divide.input[0]
    if not math.isclose(g.scalar(divide.input[1]) or 0.0, math.sqrt(2.0), rel_tol=1e-6):
        raise NoMatch(f"{divide.name} does not divide by sqrt(2)")
    plus_one = g.only_consumer(erf.output[0], "Add")
    if g.scalar(g.other_input(plus_one, erf.output[0])) != 1.0:
        raise NoMatch(f"{plus_one.name} does not add 1")
    first = g.only_consumer(plus_one.output[0], "Mul")
    second = g.only_consumer(first.output[0], "Mul")
    factors = {g.other_input(first, plus_one.output[0]), g.other_input(second, first.output[0])}
    halves = [name for name in factors if g.scalar(name) == 0.5]
    if len(halves) != 1 or factors - set(halves) != {x}:
        raise NoMatch(f"{second.name} is not x * 0.5 * (1 + erf(x / sqrt 2))")
    return helper.make_node("Gelu", [x], [second.output[0]], domain=MS_DOMAIN, name=f"adaptive_fused_gelu_{x}"), second


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nobody reads (repeatedly), then unread initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        read = set(outputs).union(*(node.input for node in graph.node))
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    unread = [t for t in graph.initializer if t.name not in read]
    for tensor in unread:
        graph.initializer.remove(tensor)


def _sort(graph: onnx.GraphProto) -> None:
    """Order the nodes so that each comes after the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ordered: list[onnx.NodeProto] = []
    pending = list(graph.node)
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise NoMatch(f"the rewritten graph has a cycle or an undefined input at {waiting[0].name}")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def _splice(model: onnx.ModelProto, replaced: list[onnx.NodeProto], added: list[onnx.NodeProto]) -> None:
    """Put `added` in place of `replaced`, drop what no output reads any more, restore the node
    order ONNX requires, and declare the com.microsoft operator set the new nodes may use."""
    graph = model.graph
    for node in replaced:
        graph.node.remove(node)
    graph.node.extend(added)
    _drop_unused(graph)
    _sort(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
