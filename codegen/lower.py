"""Lowering: graph nodes → a `Program` (schedule.py), with elementwise chains fused.

Each op class has a lowering (`register_lowering(OpClass, fn)`); ``fn(node, ctx)`` returns a
`Lowered` saying how the node is computed:

- ``element(index, read)``: the node is elementwise — one output element as a sympy
  expression of input elements (``read(pos, index)``). Such nodes are inlined into their
  consumer (no buffer, no temporary) when they have one consumer of the same shape, and
  otherwise become a store in a fused `Loop` (loops of the same shape share one nest).
- ``reduction=(op, axes, keepdims)``: a sum/max carried by the loop that computes its
  operand (the bias gradient Σ_b δ accumulates in the loop that computes δ).
- ``view=(kind, args)``: a no-copy view of input 0 (transpose, reshape, index).
- ``steps``: explicit steps (matmul, softmax cross-entropy, …) that write the node's
  buffer ``ctx.name(node)``; ``ctx.array(x)`` names an input they read as a whole array.

Buffers are named after the nodes (``h``, ``net_h``; gradients ``d_h``, ``d_W1``), so the
generated code reads like the derivation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from graphnn.errors import GraphnnError
from graphnn.graph import Graph, Node
from graphnn.ops.base import OpTable, broadcast_index

from .names import INTERNAL_NAMES, RESERVED, identifier
from .schedule import BATCH, Accumulate, Buffer, Copy, Let, Loop, Program, Scalar, Store, View


class CodegenError(GraphnnError):
    """The graph cannot be compiled as asked (an op without lowering, a bad shape...)."""


@dataclass
class Lowered:
    """How one node is computed (see the module docstring)."""

    steps: list = field(default_factory=list)
    element: object = None          # callable(index, read) -> sympy expr
    cheap: bool = False             # an index mapping only: inline it everywhere
    reduction: tuple | None = None  # (op, axes, keepdims)
    view: tuple | None = None       # (kind, args) of input 0
    produces: tuple = ()            # other nodes the steps also write (fused softmax)
    shape_only: tuple = ()          # input positions read for their shape only (not values)


#: op class -> fn(node, ctx) -> Lowered (a subclass of a lowered op inherits its lowering)
LOWERINGS = OpTable("a CPU/CUDA lowering")
LOOP_INDICES = ("i", "j", "k", "l", "m", "n", "o", "q")

def register_lowering(op_class, fn):
    """Register ``fn(node, ctx) -> Lowered`` as the CPU/CUDA lowering of ``op_class``'s nodes."""
    LOWERINGS[op_class] = fn
    return fn


def available_lowerings():
    """The names of the ops that have a lowering."""
    from . import lowerings  # noqa: F401  (the built-in ones register on import)
    return sorted(cls.name for cls in LOWERINGS.classes())


class Context:
    """What lowerings see: names, array inputs, temporaries, the graph and the dtype."""

    def __init__(self, graph: Graph, names: dict, dtype: str):
        self.graph, self.names, self.dtype = graph, names, dtype
        self.arrays_needed: set = set()
        self.temps: list = []
        self.shared: dict = {}
        self._deps = None
        self.current = None          # the node being lowered (owner of new temps)
        self.outputs: set = set()    # the program's outputs (always computed into their buffers)
        self.lowered: dict = {}      # node -> its Lowered, for the nodes lowered so far (its inputs)
        self._consumers = graph.consumers()
        self._taken = set(names.values()) | RESERVED | INTERNAL_NAMES

    def name(self, node: Node) -> str:
        return self.names[node]

    def array(self, node: Node) -> str:
        """The name of ``node`` as a whole array (forces it into a buffer or view)."""
        self.arrays_needed.add(node)
        return self.names[node]

    def temp(self, hint: str, shape: tuple) -> str:
        """A scratch buffer that is not a graph node (a linear layer's x @ W)."""
        name = self.fresh(hint)
        self.temps.append(Buffer(name, tuple(shape), "temp", self.current))
        return name

    def fresh(self, hint: str) -> str:
        name, k = identifier(hint), 2
        base = name
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    def load(self, name: str, index) -> sympy.Expr:
        """Read element ``index`` of array ``name`` (recorded as a dependency)."""
        if self._deps is not None:
            self._deps.append((name, tuple(index)))
        # real=True: graph values are real, so sympy keeps |exp(tanh z)| as exp(tanh z), never re/im parts
        return sympy.Indexed(sympy.IndexedBase(name, real=True), *index) if index else sympy.Symbol(name, real=True)

    def consumers(self, node):
        return self._consumers.get(node, [])

    def sibling(self, x: Node, op_class):
        """Another node of the graph applying ``op_class`` to ``x`` alone (for fusion)."""
        return next((c for c, pos in self.consumers(x) if isinstance(c.op, op_class) and c.inputs == (x,)), None)


def lower_program(name: str, outputs: list, args: list, *, names: dict, dtype: str,
                  returns: Node | None = None, doc: str = "") -> Program:
    """Schedule the computation of ``outputs`` (list of (node, role)) as one `Program`.

    ``args`` are the leaf `Buffer`s in signature order (inputs, params, consts); outputs
    with role 'grad'/'output' become arguments written in place; ``returns`` (a scalar
    node) is returned. Temporaries are appended to the arguments (role 'temp').
    """
    from . import lowerings  # noqa: F401

    roots = ([returns] if returns is not None else []) + [n for n, _ in outputs]
    graph = Graph(roots)
    ctx = Context(graph, names, dtype)
    ctx.outputs = set(roots)
    lowered = ctx.lowered
    for node in graph.nodes:
        if node.kind != "op":
            continue
        fn = LOWERINGS.get(node.op)
        if fn is None:
            raise CodegenError(f"codegen: no CPU lowering for op {node.op.name!r} (node {_describe(node, names)}); "
                               f"available: {', '.join(available_lowerings())}")
        ctx.current = node
        lowered[node] = low = fn(node, ctx)
        if low.view is not None:
            ctx.array(node.inputs[0])
    return _Scheduler(graph, ctx, lowered, outputs, returns).program(name, args, doc)


def _describe(node, names):
    return repr(node.name or names.get(node, node.op.name))


def _shape_key(shape):
    return tuple(shape)


class _Scheduler:
    """Decides inline / buffer / scalar / view for each node, then fuses loops."""

    def __init__(self, graph, ctx, lowered, outputs, returns):
        self.graph, self.ctx, self.lowered = graph, ctx, lowered
        self.required = {n: role for n, role in outputs}
        self.returns = returns
        self.mode = {n: self._mode(n) for n in graph.nodes}
        self.steps: list = []
        self.ready: dict = {}        # buffer name -> index of the step that completes it
        self.groups: dict = {}       # loop shape -> the open Loop's step index
        self.members: dict = {}      # buffer name -> (loop step index, let symbol)
        self.done: set = set()

    # -- modes -------------------------------------------------------------------------
    def _mode(self, node):
        if node.kind in ("input", "parameter"):
            return "arg"
        if node.kind == "constant":
            return "literal" if node.shape == () else "arg"
        low = self.lowered[node]
        if low.view is not None:
            return "view"
        if low.element is None and low.reduction is None:
            return "array"
        if node.shape == ():
            return "scalar"
        if low.reduction is not None or node in self.required or node in self.ctx.arrays_needed:
            return "array"
        if low.cheap:
            return "inline"
        uses = [(c, pos) for c, pos in self.ctx.consumers(node)
                if c not in self.lowered or pos not in self.lowered[c].shape_only]
        if len(uses) != 1:
            return "array"
        consumer, pos = uses[0]
        clow = self.lowered.get(consumer)
        if clow is None or (clow.element is None and clow.reduction is None):
            return "array"
        if clow.element is not None and tuple(consumer.shape) != tuple(node.shape):
            return "array"   # a broadcast read would recompute the chain per element
        return "inline"

    # -- expressions ---------------------------------------------------------------------
    def expr(self, node, index):
        """Element ``index`` of ``node`` as an expression of materialised values."""
        mode = self.mode[node]
        if mode == "literal":
            value = float(node.value)
            return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)
        if mode == "inline" or (mode in ("array", "scalar") and self._computing is node):
            low = self.lowered[node]
            if low.element is None:   # a reduction being scheduled: its operand's element
                return self.expr(node.inputs[0], index)
            saved, self._computing = self._computing, None
            try:
                return low.element(index, lambda pos, idx: self.expr(node.inputs[pos], idx))
            finally:
                self._computing = saved
        if node.shape == ():
            if mode == "scalar":
                return self.ctx.load(self.local(node), ())
            return self.ctx.load(self.ctx.name(node), (0,))   # a scalar array: one element
        return self.ctx.load(self.ctx.name(node), index)

    def _stored(self, node) -> bool:
        """A scalar node that also needs its one-element array (an output, or a view's source)."""
        return node in self.required or node in self.ctx.arrays_needed

    def local(self, node) -> str:
        """The local variable of a scalar node (an output also gets stored into its array)."""
        name = self.ctx.name(node)
        return f"{name}_s" if self._stored(node) else name

    def _store_scalar(self, node):
        if self._stored(node):
            name = self.ctx.name(node)
            store = Store(sympy.Indexed(sympy.IndexedBase(name), 0), sympy.Symbol(self.local(node)))
            self.ready[name] = self._emit(Loop((), (), [store]))

    _computing = None

    def _build(self, node, index, evaluate_reduction_operand=False):
        """Expression of ``node`` at ``index`` and the (name, index) reads it makes."""
        self.ctx._deps = []
        self._computing = node
        try:
            if evaluate_reduction_operand:
                e = self.expr(node.inputs[0], index)
            else:
                e = self.expr(node, index)
            return e, self.ctx._deps
        finally:
            self.ctx._deps, self._computing = None, None

    # -- scheduling ----------------------------------------------------------------------
    def program(self, name, args, doc):
        for node in self.graph.nodes:
            self._schedule(node)
        for node, role in self.required.items():
            if self.mode[node] in ("arg", "literal"):
                raise CodegenError(f"codegen: output {node.label()!r} is the {node.kind} "
                                   f"{_describe(node, self.ctx.names)} itself, which the compiled code does "
                                   "not copy; make the output an op of it (e.g. x * 1)")
        self._drop_unused_views()
        self.args = list(args)
        known = {a.name for a in self.args}
        for node, role in self.required.items():
            if self.ctx.name(node) not in known:
                self.args.append(Buffer(self.ctx.name(node), node.shape, role, node))
                known.add(self.ctx.name(node))
        for node in self.graph.nodes:
            stored_scalar = self.mode[node] == "scalar" and self._stored(node)
            if (self.mode[node] == "array" or stored_scalar) and self.ctx.name(node) not in known:
                self.args.append(Buffer(self.ctx.name(node), node.shape, "temp", node))
                known.add(self.ctx.name(node))
        for buf in self.ctx.temps:
            self.args.append(buf)
        ret = sympy.Symbol(self.local(self.returns)) if self.returns is not None else None
        return Program(name, self.args, self.steps, ret, doc)

    def _emit(self, step):
        self.steps.append(step)
        return len(self.steps) - 1

    def _schedule(self, node):
        mode = self.mode[node]
        if mode in ("arg", "literal"):
            return
        low = self.lowered[node]
        name = self.ctx.name(node)
        if low.steps and id(low) not in self.done:
            self.done.add(id(low))
            at = None
            for step in low.steps:
                at = self._emit(step)
            for out in (node,) + tuple(low.produces):
                self.ready[self.ctx.name(out)] = at
            for buf in self.ctx.temps:
                if buf.node is node:
                    self.ready[buf.name] = at
        if mode == "inline" or (low.element is None and low.reduction is None and low.view is None):
            return
        if mode == "view":
            kind, vargs = low.view
            if node in self.required:   # an output (a gradient x @ Wᵀ ends in a transpose): copied
                view = self.ctx.fresh(f"{name}_view")
                self._emit(View(view, self.ctx.name(node.inputs[0]), kind, tuple(vargs)))
                self.ready[name] = self._emit(Copy(name, view))
                return
            # a bound copy says what it stands for (s_T = copy(index) is index itself)
            note = f"{self._what(node)}: the same array" if kind == "alias" else ""
            at = self._emit(View(name, self.ctx.name(node.inputs[0]), kind, tuple(vargs), note))
            self.ready[name] = at
            return
        if low.reduction is not None:
            self._schedule_reduction(node, low)
        elif mode == "scalar":
            e, _ = self._build(node, ())
            local = self.local(node)
            self.ready[local] = self._emit(Scalar(sympy.Symbol(local, real=True), e, comment=self._what(node)))
            self._store_scalar(node)
        else:
            self._schedule_element(node)

    def _schedule_element(self, node):
        shape = _shape_key(node.shape)
        index = _loop_index(shape)
        expr, deps = self._build(node, index)
        loop_at = self._loop_for(shape, index, deps)
        loop = self.steps[loop_at]
        name = self.ctx.name(node)
        let = sympy.Symbol(f"{name}_{''.join(str(s) for s in index)}", real=True)
        loop.body.append(Let(let, self._use_lets(expr, loop_at, index)))
        loop.body.append(Store(sympy.Indexed(sympy.IndexedBase(name), *index), let))
        self.members[name] = (loop_at, let)
        self.ready[name] = loop_at
        self._describe(loop, node)

    def _what(self, node):
        names = self.ctx.names
        args = ", ".join(names.get(x, x.op.name) for x in node.inputs)
        return f"{names[node]} = {node.op.label(node)}({args})"

    def _describe(self, loop, node):
        what = self._what(node)
        loop.comment = f"{loop.comment}; {what}" if loop.comment else what

    def _schedule_reduction(self, node, low):
        op, axes, keepdims = low.reduction
        src = node.inputs[0]
        shape = _shape_key(src.shape)
        index = _loop_index(shape)
        expr, deps = self._build(node, index, evaluate_reduction_operand=True)
        loop_at = self._loop_for(shape, index, deps)
        loop = self.steps[loop_at]
        name = self.ctx.name(node)
        out_index = tuple((0 if keepdims else None) if a in axes else s for a, s in enumerate(index))
        out_index = tuple(s for s in out_index if s is not None)
        target = sympy.Indexed(sympy.IndexedBase(name), *out_index) if out_index else sympy.Symbol(self.local(node))
        loop.body.append(Accumulate(target, self._use_lets(expr, loop_at, index), op))
        self._describe(loop, node)
        self.ready[name if out_index else self.local(node)] = loop_at
        if not out_index:
            self._store_scalar(node)
        self.members.pop(name, None)

    def _loop_for(self, shape, index, deps):
        """The open loop of this shape if every read is available there, else a new loop."""
        at = self.groups.get(shape)
        if at is not None and all(self._readable_in(at, name, idx, index) for name, idx in deps):
            return at
        at = self._emit(Loop(index, tuple(BATCH if d is None else sympy.Integer(d) for d in shape)))
        self.groups[shape] = at
        return at

    def _readable_in(self, at, name, idx, index):
        member = self.members.get(name)
        if member is not None and member[0] == at:
            return tuple(idx) == tuple(index)          # same element: the loop's own local
        return self.ready.get(name, -1) < at

    def _use_lets(self, expr, at, index):
        """Reads of values computed earlier in the same loop become its locals."""
        subs = {}
        for ind in expr.atoms(sympy.Indexed):
            member = self.members.get(str(ind.base))
            if member is not None and member[0] == at and tuple(ind.indices) == tuple(index):
                subs[ind] = member[1]
        return expr.xreplace(subs) if subs else expr

    def _drop_unused_views(self):
        while True:   # a view read only by a dropped view is dropped next round
            used = {self.ctx.name(n) for n in self.required}
            for step in self.steps:
                used |= _names_read(step)
                if isinstance(getattr(step, "out", None), str):
                    used.add(step.out)       # written through a view (a GEMM into out.reshape(-1, n))
            kept = [s for s in self.steps if not (isinstance(s, View) and s.name not in used)]
            if len(kept) == len(self.steps):
                return
            self.steps = kept


def _names_read(step) -> set:
    """Array/scalar names a step reads (for dropping unused views)."""
    out = set()
    if isinstance(step, View):
        return {step.source}
    if isinstance(step, Loop):
        for s in step.body:
            out |= {str(i.base) for i in s.expr.atoms(sympy.Indexed)}
            out |= {str(x) for x in s.expr.free_symbols if not isinstance(x, sympy.Indexed)}
    elif isinstance(step, Scalar):
        out |= {str(x) for x in step.expr.free_symbols}
    else:
        for key, value in vars(step).items():
            if key in ("out", "name", "comment"):
                continue
            if isinstance(value, str):
                out.add(value)
            elif isinstance(value, tuple):
                out |= {v for v in value if isinstance(v, str)}
    return out


names_read = _names_read   # public: the operands a step reads (codegen/fuse_conv.py's rewrite)


def _loop_index(shape):
    return tuple(sympy.Symbol(LOOP_INDICES[a]) for a in range(len(shape)))


# -- helpers lowerings use ---------------------------------------------------------------

def broadcast_read(read, pos, node, index):
    """``read`` input ``pos`` of ``node`` at the element broadcasting maps ``index`` to."""
    return read(pos, broadcast_index(tuple(index), node.inputs[pos].shape, len(node.shape)))
