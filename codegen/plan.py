"""`lower(model, optimizer, dtype)`: the whole model as schedules, ready for an emitter.

Forward graph, gradient graph (``graphnn.grad`` — the one autodiff) and the optimizer's
sympy update rules become three `Program`s and one `Update`:

- ``forward``:   inputs, params → the model's output (written into ``out``)
- ``loss``:      inputs, params → the loss (returned)
- ``evaluate``:  the loss (returned) and the output (written): test metrics in one function
- ``grad_step``: inputs, params → the loss (returned) and every trainable gradient,
                 written into views of ONE flat gradient buffer (`flat_layout` order)
- ``update``:    the optimizer's rules over the flat parameter / gradient / state arrays

Trainable parameters live in one flat array too, in `trainable` order (graph order), so
the update is one loop and data-parallel training reduces one contiguous buffer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy

from graphnn.autodiff import grad
from graphnn.graph import Graph
from graphnn.ops import Constant, Map, Max, SoftmaxCrossEntropy, Sum, Transpose
from graphnn.ops.base import OpTable

from .lower import CodegenError, lower_program
from .names import RESERVED, unique_name
from .schedule import Buffer, Program, Update


@dataclass
class ModelSchedule:
    """Everything an emitter needs to print one model's module."""

    model_name: str
    graph_hash: str
    dtype: str
    inputs: list          # data inputs (batched feeds), in model.inputs order
    trainable: list       # trainable parameters, graph order = flat layout order
    fixed: list           # non-trainable parameters
    consts: list          # array constants (passed as arguments, never globals)
    names: dict           # node -> identifier
    flat_layout: list     # [(param node, offset, size, shape)]
    gradients: dict       # trainable param -> its gradient node (buffer names[gradient])
    forward: Program
    loss: Program
    grad_step: Program
    update: Update
    evaluate: Program = None   # loss + output in one function (the CPU Trainer's test metrics)
    runtime_only: bool = False  # rebuilt from a stored plan (codegen/plan_cache.py): arguments, no steps

    @property
    def n_flat(self) -> int:
        return sum(size for _, _, size, _ in self.flat_layout)

    @property
    def programs(self):
        return [self.forward, self.loss, self.grad_step]


def lower(model, optimizer, dtype="float64") -> ModelSchedule:
    """Schedules for ``model`` trained by ``optimizer`` in ``dtype`` (see module docstring)."""
    trainable = list(model.params)
    if not trainable:
        raise CodegenError(f"codegen: model {model.name!r} has no trainable parameters")
    grads = grad(model.loss, trainable)
    names = _names(model, grads, optimizer_names(optimizer))
    full = Graph([model.loss, model.output] + [grads[p] for p in trainable])
    inputs = _ordered_inputs(model, full)
    params = [n for n in full.nodes if n.kind == "parameter"]
    fixed = [p for p in params if p not in trainable]   # fixed ones, and those held behind stop_gradient
    consts = [n for n in full.nodes if n.kind == "constant" and n.shape != ()]

    def leaf_args(graph):
        used = set(graph.nodes)
        return ([Buffer(names[n], n.shape, "input", n) for n in inputs if n in used]
                + [Buffer(names[n], n.shape, "param", n) for n in trainable + fixed if n in used]
                + [Buffer(names[n], n.shape, "const", n) for n in consts if n in used])

    out_name = names[model.output]
    forward = lower_program("forward", [(model.output, "output")], leaf_args(Graph([model.output])),
                            names=names, dtype=dtype,
                            doc=f"The output {out_name!r} for a batch of inputs (written into {out_name}).")
    loss = lower_program("loss", [], leaf_args(Graph([model.loss])), names=names, dtype=dtype,
                         returns=model.loss, doc="The loss of a batch (nothing is written).")
    evaluate = lower_program("evaluate", [(model.output, "output")], leaf_args(Graph([model.loss, model.output])),
                             names=names, dtype=dtype, returns=model.loss,
                             doc=f"The loss of a batch (returned) and the output {out_name!r} (written).")
    grad_outputs = [(grads[p], "grad") for p in trainable]
    grad_step = lower_program("grad_step", grad_outputs, leaf_args(full), names=names, dtype=dtype,
                              returns=model.loss,
                              doc="Forward and backward: the loss, and the gradients into d_* "
                                  "(views of one flat gradient buffer).")
    layout, offset = [], 0
    for p in trainable:
        size = math.prod(p.shape)
        layout.append((p, offset, size, p.shape))
        offset += size
    return ModelSchedule(model.name, model.structural_hash(), dtype, inputs, trainable, fixed, consts,
                         names, layout, {p: grads[p] for p in trainable}, forward, loss, grad_step,
                         update_step(optimizer), evaluate)


def _ordered_inputs(model, graph):
    used = [n for n in graph.nodes if n.kind == "input"]
    first = [n for n in model.inputs if n in used]
    return first + [n for n in used if n not in first]


def optimizer_names(optimizer) -> set:
    """The update's arguments and train_epoch's per-step arrays: no graph name may take them."""
    return {*optimizer.hyper, *(f"{h}_per_step" for h in optimizer.hyper), *(f"state_{s}" for s in optimizer.state)}


def _names(model, grads, reserved=()) -> dict:
    """Identifiers for every node: the graph's names, d_<name> for adjoints, op names else;
    none of them in ``reserved`` or internal to the module (`unique_name`)."""
    record = grads.record
    taken = set(RESERVED) | set(reserved)
    names = {}

    def give(node, hint):
        if node in names:
            return
        names[node] = unique_name(hint, taken)

    forward = Graph([model.loss, model.output])
    for n in forward.nodes:            # named nodes first: they keep their names
        if n.name:
            give(n, n.name)
    for n in forward.nodes:
        give(n, _op_hint(n, names))
    for p in grads:                    # parameter gradients: d_W1 (the flat layout's views)
        give(grads[p], f"d_{names[p]}")
    for node in record.order:
        adj = record.adjoints[node]
        if adj.total is not None and node in names:
            give(adj.total, f"d_{names[node]}")
    for node in record.order:
        for term in record.adjoints[node].terms:
            if node in names and term.consumer in names:
                give(term.contribution, f"d_{names[node]}_via_{names[term.consumer]}")
    for n in Graph([grads[p] for p in grads]).nodes:
        give(n, _op_hint(n, names))
    return names


#: how an unnamed node's buffer is called, by op class: fn(node, "_of_<operand>") -> hint
NAME_HINTS = OpTable("a buffer-name hint", {
    Sum: lambda node, of: f"sum{of}", Max: lambda node, of: f"max{of}",
    SoftmaxCrossEntropy: lambda node, of: "sce", Constant: lambda node, of: "c", Map: lambda node, of: "e",
    Transpose: lambda node, of: f"{node.inputs[0].name or 'x'}T",
})


def _op_hint(node, names):
    of = f"_of_{names[node.inputs[0]]}" if node.inputs and node.inputs[0] in names else ""
    hint = NAME_HINTS.get(node.op)
    return hint(node, of) if hint is not None else node.op.name


def update_step(optimizer) -> Update:
    """The optimizer's rules, with per-step scalars (β₁ᵗ, 1 − β₁, …) hoisted out of the loop."""
    from graphnn.optim import g, t, w

    state = tuple(sympy.Symbol(s) for s in optimizer.state)
    element = {w, g, *state}
    hoisted: dict = {}

    def hoist(e):
        if not (e.free_symbols & element):
            if e.is_Atom:
                return e
            if e not in hoisted:
                hoisted[e] = sympy.Symbol(f"c{len(hoisted)}")
            return hoisted[e]
        if isinstance(e, (sympy.Add, sympy.Mul)):
            free = [a for a in e.args if not (a.free_symbols & element)]
            dep = [hoist(a) for a in e.args if a.free_symbols & element]
            if free and (len(free) > 1 or not free[0].is_Atom):
                free = [hoist(e.func(*free))]
            return e.func(*free, *dep)
        return e.func(*[hoist(a) for a in e.args]) if e.args else e

    rules = [(target, hoist(expr)) for target, expr in optimizer.rules()]
    hyper = tuple(sympy.Symbol(k) for k in optimizer.hyper)
    unknown = {s for _, e in rules for s in e.free_symbols} - element - set(hoisted.values()) - set(hyper) - {t}
    if unknown:
        raise CodegenError(f"codegen: optimizer {optimizer.name!r} rules use unknown symbols {sorted(map(str, unknown))}")
    return Update(rules, [(s, e) for e, s in hoisted.items()], tuple(str(s) for s in state),
                  tuple(str(h) for h in hyper))
