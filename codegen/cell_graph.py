"""Graph helpers of the recurrence schedule (codegen/cell_phases.py): which ops treat the
rows of the batch independently, and rebuilding a cell's graph around placeholders."""
from __future__ import annotations

from graphnn.graph import Graph, Node
from graphnn.ops import (Concat, Count, Expand, Index, IndexGrad, Linear, LogSoftmax, Map, MatMul, Max,
                         Reshape, Softmax, SoftmaxCrossEntropy, StopGradient, Sum, Transpose, input as input_)
from graphnn.ops.base import OpTable
from graphnn.ops.elementwise import V

#: op class -> fn(node) -> bool: the op computes row r of its (batched) output from row r of its
#: batched operands only, so it may run over T·B rows at once. Ops not listed stay per step.
ROW_WISE = OpTable("a row-wise rule (the recurrence schedule)")

VIEWS = (Transpose, Reshape, Index, StopGradient)


def batched(node) -> bool:
    return bool(node.shape) and node.shape[0] is None


def full_first(spec) -> bool:
    """The index takes the batch axis whole (normalize_index: ('s', None, None, None))."""
    return bool(spec) and tuple(spec[0]) == ("s", None, None, None)


def rows_kept(node):
    """Output batched, every batched operand batched on axis 0 with the output's rank."""
    return batched(node) and all(x.ndim == node.ndim for x in node.inputs if batched(x))


for _cls, _rule in {
    Map: rows_kept,
    MatMul: lambda n: batched(n) and batched(n.inputs[0]) and (not batched(n.inputs[1]) or n.ndim >= 3),
    Linear: lambda n: batched(n) and batched(n.inputs[0]) and not any(batched(x) for x in n.inputs[1:]),
    Transpose: lambda n: batched(n) and tuple(n.attrs["axes"])[0] == 0,
    Reshape: lambda n: batched(n) and batched(n.inputs[0]),
    Index: lambda n: batched(n) and full_first(n.attrs["spec"]),
    IndexGrad: lambda n: batched(n) and full_first(n.attrs["spec"]),
    StopGradient: batched,
    Softmax: lambda n: batched(n) and n.ndim >= 2,
    LogSoftmax: lambda n: batched(n) and n.ndim >= 2,
    SoftmaxCrossEntropy: lambda n: batched(n) and n.inputs[0].ndim >= 2,
    Sum: lambda n: batched(n) and 0 not in n.attrs["axes"],
    Max: lambda n: batched(n) and 0 not in n.attrs["axes"],
    Expand: lambda n: batched(n) and (batched(n.inputs[0]) or 0 in n.attrs["axes"]),
    Concat: lambda n: batched(n) and n.attrs["axis"] >= 1,
    Count: lambda n: False,   # counts the batch: B per step, T·B over the stack
}.items():
    ROW_WISE[_cls] = _rule


def contraction(node) -> bool:
    """A sum over the batch axis of per-row terms: Aᵀ @ D (A, D batched) or Σ over axis 0."""
    if isinstance(node.op, MatMul):
        a, b = node.inputs
        return node.ndim == 2 and a.ndim == 2 and b.ndim == 2 and a.shape[1] is None and batched(b) \
            and isinstance(a.op, Transpose) and batched(a.inputs[0])
    if isinstance(node.op, Sum):
        return 0 in node.attrs["axes"] and batched(node.inputs[0]) and not batched(node)
    return False


def value_inputs(node):
    """(position, input) pairs read for their values (not shape-only operands)."""
    skip = node.op.nondiff_inputs if node.kind == "op" else ()
    return [(pos, x) for pos, x in enumerate(node.inputs) if pos not in skip]


def transposed_rows(x) -> bool:
    return isinstance(x.op, Transpose) and x.ndim == 2 and x.shape[1] is None and batched(x.inputs[0])


def identity(node) -> bool:
    """A Map that copies its one operand (∂+/∂x of a sum, an explicit copy)."""
    return isinstance(node.op, Map) and len(node.inputs) == 1 and node.shape == node.inputs[0].shape \
        and node.attrs.get("compute", node.attrs["expr"]) == V[0] and "nondiff" not in node.attrs


def rebuild(outputs, subs, keep_identity=True, shape_refs=True):
    """Copies of ``outputs`` reading the placeholders ``subs`` {node: leaf} instead of those
    nodes; a shape-only operand that is computed becomes a placeholder of its shape (it is
    never read); without ``keep_identity``, copies inside the graph read their operand.
    Returns (new outputs, {shape placeholder})."""
    memo, shape_leaves = dict(subs), set()
    roots = set(outputs)
    for n in Graph(list(outputs)).nodes:
        if n in memo:
            continue
        if n.kind != "op":
            memo[n] = n
            continue
        if not keep_identity and n not in roots and identity(n):
            memo[n] = memo[n.inputs[0]]
            continue
        new = []
        for pos, x in enumerate(n.inputs):
            if shape_refs and pos in n.op.nondiff_inputs and x.kind == "op" and x not in subs:
                if ("shape", x) not in memo:
                    memo[("shape", x)] = input_(f"shape_of_{x.name or x.op.name}", x.shape)
                    shape_leaves.add(memo[("shape", x)])
                new.append(memo[("shape", x)])
            else:
                new.append(memo[x])
        same = all(a is b for a, b in zip(new, n.inputs))
        memo[n] = n if same else Node(n.op, new, dict(n.attrs), n.shape, dtype=n.dtype, name=n.name)
    return [memo[o] for o in outputs], shape_leaves
