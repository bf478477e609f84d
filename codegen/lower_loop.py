"""Numba lowering of recurrences: the ``loop`` node and its reverse loop ``loop_grad`` (BPTT).

The cell and its gradient cell are split into phases (codegen/cell_phases.py): what reads
only x_t and the weights runs once over all T steps before the loop (``x_t @ U`` as one
(T·B)-row product), the recurrent step runs T times keeping every carry and the values
the backward pass reads, the reverse step runs T times carrying d(carry), and the weight
gradients (Σ_t s_{t−1}ᵀ δ_t, Σ_t x_tᵀ δ_t, Σ δ) and d x_t run once over the stacked steps
after it. Each phase is compiled ONCE, by the same lowering as any graph, into its own
``@njit`` function (``cell_pre_…``, ``cell_…``, ``cell_grad_…``, ``cell_post_…``,
``cell_static_…``); the loop steps call them on views of time-major stacks
(``hist[t]``, ``pre[t]``, …). Nothing of the forward pass is recomputed by BPTT: the
``loop_grad`` step reads the stacks the ``loop`` step of the same program filled.

The algorithm is the NumPy reference's (graphnn/looped.py), which the tests compare it
with; with ``truncate=k`` each step's cotangent travels back through at most k cells (a
short sweep per step, as the reference), and the per-step values the post phase reads
are summed over the sweeps (a VJP is linear in its cotangent).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from graphnn.graph import Graph
from graphnn.looped import Loop, LoopGrad, grad_group_members

from .cell_phases import plan_cell
from .emit_cpu import emit_program
from .lower import CodegenError, Lowered, lower_program, register_lowering
from .names import RESERVED, unique_name
from .schedule import Buffer

PHASES = ("static_fwd", "pre", "fwd", "static_bwd", "bwd", "post")
_PER_STEP = ("cell", "cell_grad")   # the phases run T times a batch: literal sizes pay there
_PREFIX = {"static_fwd": "cell_static", "pre": "cell_pre", "fwd": "cell", "static_bwd": "cell_grad_static",
           "bwd": "cell_grad", "post": "cell_post"}
_DOCS = {"static_fwd": "Values of the weights alone the step reads, computed once per call.",
         "pre": "What the step computes from x_t and the weights alone, for every t at once (T·B rows).",
         "fwd": "One time step of the recurrence: new carries, outputs and the values BPTT reads.",
         "static_bwd": "Values of the weights alone the BPTT step reads (Wᵀ made contiguous), once per call.",
         "bwd": "One BPTT step: d(previous carries) and the per-step gradient values.",
         "post": "The gradients summed over time, once over the stacked steps (T·B rows)."}


@dataclass
class CellCall:
    """One compiled phase function and what each of its arguments is.

    args: [(role, shape)]; role is a source or target of codegen.cell_phases ('at', 'rows',
    'free', 'static', 'acc', 'out', 'acc_at', 'dc', 'gcur', 'gyat') or ('temp', name)."""

    fn: str
    source: str
    helpers: set
    args: list
    aliases: list = field(default_factory=list)   # [(target k, target j)]: output k is output j
    program: object = None   # the phase's schedule (a Program): what the CUDA emitter prints
    rows: bool = False       # runs over the T·B rows of the stacks


@dataclass
class Slot:
    """A time-major stack (depth, B, *row) kept in a (B, depth·row) program temporary."""

    buffer: str
    view: str
    depth: int
    shape: tuple             # per step: (None, …)


@dataclass
class Recurrence:
    """Forward ('loop') or reverse ('grad') loop over T steps of a cell's phases."""

    kind: str
    out: str                      # the packed output buffer
    inits: tuple                  # outer names of the initial carries
    xs: tuple                     # outer names of the input sequences (B, T, …)
    free: tuple                   # outer names of the free leaves
    g: str | None                 # the packed cotangent (grad only)
    length: int
    carry_shapes: tuple
    init_shapes: tuple
    x_shapes: tuple               # per step (None, …)
    y_shapes: tuple
    free_shapes: tuple
    calls: dict                   # phase name -> CellCall
    slots: dict                   # slot name -> Slot
    y_slots: tuple = ()           # per-step output j -> (slot, offset)
    forward: bool = True          # run the forward sweep (a grad step whose program has no loop step)
    own_views: tuple = ()         # the stacks whose views this step prints (the loop step prints its own)
    groups: tuple = ()            # grad: (packed output, 'batched'|'flat', input positions) per loop_grad node
    dx_slots: dict = field(default_factory=dict)
    free_targets: dict = field(default_factory=dict)
    comment: str = ""
    reads: tuple = field(default=())
    truncate: int | None = None   # grad: truncated BPTT, k steps back (None: full)
    buffers: dict = field(default_factory=dict)   # role -> temp name (phase temps, statics, scratch)
    #: grad: free leaf k -> (packed output, offset) where its summed gradient is written in
    #: place (a 'flat' group's part is one contiguous slice), or (its gradient's buffer, None)
    #: (`_totals_written_in_place`); ``buffers[('freeg', k)]`` is then the name of a local view
    #: of that slice, or of that buffer, not a temporary
    free_in_place: dict = field(default_factory=dict)

    def local_names(self) -> set:
        """The names this step binds in the function it is printed into (made fresh by the
        lowering, so no graph name meets them): its stacks' views, the in-place gradient views."""
        return ({s.view for s in self.slots.values()}
                | {self.buffers[("freeg", k)] for k in self.free_in_place})

    @property
    def cell(self):
        return self.calls["fwd"]

    @property
    def grad(self):
        return self.calls.get("bwd")


# -- compiling a phase ---------------------------------------------------------------------

def _names(graph, prefix):
    taken = set(RESERVED)
    return {n: unique_name(n.name.split("(")[0] if n.name else n.op.name, taken, prefix) for n in graph.nodes}


def compile_phase(phase, prefix, dtype, doc) -> CellCall:
    """Lower one phase's graph into one @njit function named by its source's hash."""
    graph = Graph(list(phase.outputs))
    consts = [n for n in graph.nodes if n.kind == "constant" and n.shape != ()]
    if consts:
        raise CodegenError(f"codegen: a recurrence's cell uses the array constant "
                           f"{consts[0].label()!r}; pass it in as a parameter")
    names = _names(graph, "")
    leaves = [n for n in graph.nodes if n.kind in ("input", "parameter") and n not in phase.shape_leaves]
    args = [Buffer(names[n], n.shape, "param" if n.kind == "parameter" else "input", n) for n in leaves]
    outs, out_pos, aliases = [], {}, []
    for k, o in enumerate(phase.outputs):
        if o in phase.sources or o.kind != "op":
            raise CodegenError(f"codegen: a recurrence's step returns its operand {o.label()!r} "
                               "unchanged; the cell must compute every output")
        if o in out_pos:
            if phase.targets[k] != phase.targets[out_pos[o]]:
                aliases.append((phase.targets[k], phase.targets[out_pos[o]]))   # y_t = s_t: one node
            continue
        out_pos[o] = k
        outs.append((o, "output"))
    prog = lower_program("PHASE_FN", outs, args, names=names, dtype=dtype, doc=doc)
    helpers: set = set()
    text = emit_program(prog, dtype, helpers, specialise=prefix in _PER_STEP, inner=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    fn = f"{prefix}_{digest}" + ("_f32" if dtype == "float32" else "")
    prog.name = fn
    source = text.replace("def PHASE_FN(", f"def {fn}(", 1)
    call = []
    for a in prog.args:
        if a.node in phase.sources:
            call.append((phase.sources[a.node], a.shape))
        elif a.role == "output":
            call.append((phase.targets[out_pos[a.node]], a.shape))
        else:
            call.append((("temp", a.name), a.shape))
    return CellCall(fn, source, helpers, call, aliases, program=prog, rows=phase.rows)


_COMPILED: dict = {}


def _calls(cell, dtype, positions, truncate):
    """The compiled phases of ``cell`` (forward only when ``positions`` is None; else its
    BPTT for these gradient positions too), cached per cell."""
    key = (id(cell), dtype, positions, truncate is not None)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is cell:
        return hit[1], hit[2]
    plan = plan_cell(cell, positions, truncate is not None)
    calls = {name: compile_phase(getattr(plan, name), _PREFIX[name], dtype, _DOCS[name])
             for name in PHASES if getattr(plan, name) is not None}
    _COMPILED[key] = (cell, plan, calls)
    return plan, calls


# -- lowerings ---------------------------------------------------------------------------

def _forward_node(node, ctx):
    """The ``loop`` node of this program whose stacks a ``loop_grad`` node reads, if any."""
    ins = node.inputs[:-1]
    for n in ctx.graph.nodes:
        if isinstance(n.op, Loop) and n.attrs["cell"] is node.attrs["cell"] and n.inputs == ins:
            return n
    return None


def _lower(node, ctx, kind):
    a = node.attrs
    cell = a["cell"]
    lead = (node.inputs[-1] if kind == "grad" else node).shape[0]   # the loop's (a reverse loop's cotangent's)
    if lead is not None:   # (1, …): fed nothing batched (graphnn.looped.batch_lead)
        raise CodegenError(
            f"the recurrence {node.label()!r} is fed nothing batched (no sequence, no batched initial carry, "
            "no batched input in its cell), so it is one sequence of states shared by every example; "
            "the compiled backends run recurrences over a batch: give it a batched initial carry "
            "(an input shaped (None, …)) or train it with backend='numpy'")
    nc, nx, nf = a["n_carry"], a["n_xs"], len(cell.free)
    ins = node.inputs
    groups, others, positions = (), (), None
    if kind == "grad":
        key = ("loop_grad", ins)
        if key in ctx.shared:       # both gradient groups of one loop: one reverse sweep
            return ctx.shared[key]
        siblings = [n for n in ctx.graph.nodes if isinstance(n.op, LoopGrad) and n.inputs == ins]
        groups = tuple((ctx.name(s), s.attrs["emit"], tuple(grad_group_members(s.attrs, ins[:-1])))
                       for s in siblings)
        others = tuple(s for s in siblings if s is not node)
        positions = tuple(sorted({p for _, _, m in groups for p in m} | set(range(nc))))
    fwd_node = _forward_node(node, ctx) if kind == "grad" else node
    plan, calls = _calls(cell, ctx.dtype, positions, a["truncate"] if kind == "grad" else None)
    # a scalar constant is a literal in generated code, not an array argument
    inits = tuple(repr(float(x.value)) if x.kind == "constant" and x.shape == () else ctx.array(x)
                  for x in ins[:nc])
    xs = tuple(ctx.array(x) for x in ins[nc:nc + nx])
    free = tuple(ctx.array(x) for x in ins[nc + nx:nc + nx + nf])
    g = ctx.array(ins[-1]) if kind == "grad" else None
    T = a["length"]
    shared = ctx.shared.setdefault(("loop_stacks", node if fwd_node is None else fwd_node), {})
    slots, own = {}, []
    for name, shape in plan.slots.items():
        if name not in shared:
            depth = T + 1 if plan.depth[name] == "T1" else T
            buf = ctx.temp(f"{ctx.name(node)}_{name}", (None, depth * _row(shape)))
            shared[name] = Slot(buf, ctx.fresh(f"{buf}_v"), depth, tuple(shape))
            own.append(name)
        slots[name] = shared[name]
    step = Recurrence(kind, ctx.name(node), inits, xs, free, g, T,
                      tuple(tuple(s) for s in cell.carry_shapes), tuple(tuple(x.shape) for x in ins[:nc]),
                      tuple(tuple(x.shape) for x in cell.x_in), tuple(tuple(s) for s in cell.y_shapes),
                      tuple(tuple(f.shape) for f in cell.free), calls, slots, plan.y_slots,
                      forward=kind == "loop" or fwd_node is None, own_views=tuple(own), groups=groups,
                      dx_slots=dict(plan.dx_slots), free_targets=dict(plan.free_targets),
                      comment=f"{ctx.name(node)}: {'BPTT over' if kind == 'grad' else 'loop over'} "
                              f"T = {T} steps of {calls['fwd'].fn}"
                              + (f", truncated to {a['truncate']} steps" if kind == "grad" and a["truncate"] else ""),
                      reads=inits + xs + free + ((g,) if g else ()),
                      truncate=a["truncate"] if kind == "grad" else None)
    step.buffers = _declare_buffers(step, ctx)
    totals = _totals_written_in_place(step, siblings, ctx) if kind == "grad" else []
    low = Lowered(steps=[step], produces=others + tuple(totals))
    if kind == "grad":
        ctx.shared[key] = low
        for total in totals:   # its lowering is this step (lowerings._map asks)
            ctx.shared[("written by", total)] = low
    return low


def _row(shape):
    return math.prod(d for d in shape[1:])


def _totals_written_in_place(step, siblings, ctx) -> list:
    """The 'BPTT total' nodes the sweep writes itself: a free leaf's gradient summed over time
    goes straight into the total's own buffer (a parameter's gradient in the flat gradient
    vector) instead of its slice of the packed row and then a copy (~40 ms of compile each).

    A total qualifies when it is a program output that is exactly its slice of a 'flat' group's
    packed row — the slice, reshapes, an identity map, each read by nothing else; then
    ``step.free_in_place[k]`` becomes ``(its name, None)``."""
    packed = {ctx.name(s): s for s in siblings}
    totals = []
    for k, (name, off) in list(step.free_in_place.items()):
        shape = step.free_shapes[k]
        total = _slice_as_is(packed[name], ("s", off, off + math.prod(shape), 1), ctx)
        if total is not None and tuple(total.shape) == tuple(shape):
            step.free_in_place[k] = (ctx.name(total), None)
            totals.append(total)
    return totals


def _slice_as_is(packed, spec, ctx):
    """The output node that is ``packed[spec]`` unchanged (through reshapes and an identity
    map, nothing else reading any of them), or None."""
    from graphnn import ops

    from .lowerings import identity_map

    node = next((c for c, _ in ctx.consumers(packed)
                 if isinstance(c.op, ops.Index) and tuple(c.attrs["spec"]) == (spec,)), None)
    while node is not None and node not in ctx.outputs:
        uses = ctx.consumers(node)
        if len(uses) != 1:
            return None
        node = uses[0][0]
        if not (isinstance(node.op, ops.Reshape) or identity_map(node)):
            return None
    return node if node is not None and isinstance(node.op, ops.Map) else None


def _declare_buffers(step, ctx):
    """The phases' scratch, the static values and the reverse loop's accumulators: program
    temporaries, allocated by the caller once per batch size (nothing per batch).

    Roles: (phase, temp name); ('static', tag, k); ('acc', k) a per-step free-leaf gradient,
    summed into ('freeg', k); ('scratch', slot) a per-step value summed into a stack
    (truncated BPTT); ('gcur', k) / ('dc', k) d carry in / out, ('accc', k), ('gfinal', k),
    ('gyzero', j) (truncated BPTT)."""
    pre, T = step.out, step.length
    wanted = {}
    for phase, call in step.calls.items():
        if phase in ("static_fwd", "pre", "fwd") and not step.forward:
            continue
        for role, shape in call.args:
            if role[0] == "temp":
                rows = call.rows and shape and shape[0] is None
                wanted[(phase, role[1])] = (None, T * _row(shape)) if rows else shape
            elif role[0] in ("static", "acc", "dc", "gcur"):
                wanted[role] = shape
            elif role[0] == "acc_at":
                wanted[("scratch", role[1])] = shape
    out = {}
    if step.kind == "grad":
        step.free_in_place = free_in_place(step)
        for k, target in step.free_targets.items():
            if k in step.free_in_place:
                out[("freeg", k)] = ctx.fresh(f"{pre}_freeg_{k}")
            else:
                wanted[("freeg", k)] = step.free_shapes[k]
        if step.truncate is not None:
            for j, shape in enumerate(step.y_shapes):
                wanted[("gyzero", j)] = shape
            for k, shape in enumerate(step.carry_shapes):
                for r in ("gcur", "dc", "accc", "gfinal"):
                    wanted[(r, k)] = shape
    for role, shape in wanted.items():
        hint = f"{pre}_" + "_".join(str(r) for r in role)
        out[role] = ctx.temp(hint, tuple(shape) or (1,))
    return out


register_lowering(Loop, lambda node, ctx: _lower(node, ctx, "loop"))
register_lowering(LoopGrad, lambda node, ctx: _lower(node, ctx, "grad"))


def packed_layout(step):
    """(offset, size) per example of each part of the loop's packed output row."""
    parts, off = [], 0
    for s in step.carry_shapes:
        parts.append((off, _row(s)))
        off += _row(s)
    for s in step.y_shapes:
        parts.append((off, step.length * _row(s)))
        off += step.length * _row(s)
    return parts


def group_offsets(step, emit, members):
    """[(position, offset)] of each member of a gradient group in its packed output row."""
    out, off = [], 0
    for pos in members:
        out.append((pos, off))
        free = pos - len(step.carry_shapes) - len(step.x_shapes)
        flat = emit != "batched" and free >= 0
        off += math.prod(step.free_shapes[free]) if flat else member_size(step, pos, step.length)
    return out


def free_in_place(step) -> dict:
    """Free leaf k -> (packed output, offset) for the gradients summed straight into a 'flat'
    group's contiguous slice (no buffer of their own, no copy after the sweep); a 0-d leaf
    keeps its buffer."""
    nc, nx = len(step.carry_shapes), len(step.x_shapes)
    out = {}
    for name, emit, members in step.groups:
        if emit == "batched":
            continue
        for pos, off in group_offsets(step, emit, members):
            k = pos - nc - nx
            if k >= 0 and step.free_shapes[k]:
                out[k] = (name, off)
    return out


def member_size(step, pos, T):
    """Per-example size of gradient group member ``pos`` (carry, sequence input, or free)."""
    nc, nx = len(step.carry_shapes), len(step.x_shapes)
    if pos < nc:
        return _row(step.carry_shapes[pos])
    if pos < nc + nx:
        return T * _row(step.x_shapes[pos - nc])
    return _row(step.free_shapes[pos - nc - nx])


row_size = _row

from . import emit_loop  # noqa: E402,F401  (the CPU printer of Recurrence registers itself)
