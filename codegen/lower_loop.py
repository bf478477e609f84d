"""Numba lowering of recurrences: the ``loop`` node and its reverse loop ``loop_grad`` (BPTT).

The cell graph is compiled ONCE, by the same lowering as any graph, into its own
``@njit`` function ``cell_<hash>(carry…, x_t…, free…, new carry…, y_t…, temps…)``; the
gradient cell (`Cell.grad_cell`, made by ``graphnn.grad``) likewise into
``cell_grad_<hash>``. The loop node becomes a step that allocates the per-step buffers
once and calls the cell T times; ``loop_grad`` runs the cell forward again keeping every
carry, then calls the gradient cell for t = T−1 … 0, carrying d(carry) and summing each
step's contribution to the weights — the same algorithm as the NumPy reference
(graphnn/looped.py), which the tests compare it with. With ``truncate=k`` each step's
cotangent travels back through at most k cells (a short sweep per step, as the reference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from graphnn.graph import Graph
from graphnn.looped import _group_members

from .emit_cpu import emit_program, register_emitter
from .lower import RESERVED, CodegenError, Lowered, identifier, lower_program, register_lowering
from .printer import HELPERS
from .schedule import Buffer


@dataclass
class CellCall:
    """One compiled cell function and how to call it: each argument's source."""

    fn: str
    source: str
    helpers: set
    args: list            # [(kind, key, shape)]: kind 'carry'|'x'|'gc'|'gy'|'free'|'out'|'temp'
    aliases: list = field(default_factory=list)   # [(output k, output j)]: k is the same node as j
    program: object = None   # the cell's schedule (a Program): what the CUDA emitter prints


@dataclass
class Recurrence:
    """Forward ('loop') or reverse ('grad') loop over T steps of a compiled cell."""

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
    free_batched: tuple
    cell: CellCall
    grad: CellCall | None = None
    emit: str = "batched"         # grad: which group the packed output holds
    members: tuple = ()           # grad: input positions in the packed output
    comment: str = ""
    reads: tuple = field(default=())
    truncate: int | None = None   # grad: truncated BPTT, k steps back (None: full)


# -- compiling a cell ------------------------------------------------------------------

def _names(graph, prefix):
    names, taken = {}, set(RESERVED)
    for n in graph.nodes:
        base = identifier(n.name.split("(")[0] if n.name else n.op.name)
        name, k = f"{prefix}{base}", 2
        while name in taken:
            name, k = f"{prefix}{base}_{k}", k + 1
        taken.add(name)
        names[n] = name
    return names


def _compile(fn_name, roles, outputs, dtype, doc):
    """Lower a graph whose leaves play ``roles`` {node: kind} into one @njit function."""
    graph = Graph([o for o in outputs])
    consts = [n for n in graph.nodes if n.kind == "constant" and n.shape != ()]
    if consts:
        raise CodegenError(f"codegen: a recurrence's cell uses the array constant "
                           f"{consts[0].label()!r}; pass it in as a parameter")
    names = _names(graph, "")
    leaves = [n for n in graph.nodes if n.kind in ("input", "parameter")]
    args = [Buffer(names[n], n.shape, "param" if n.kind == "parameter" else "input", n) for n in leaves]
    outs, seen = [], set()
    for o in outputs:
        if o in seen:
            continue
        seen.add(o)
        if o in roles:
            raise CodegenError(f"codegen: a recurrence's step returns its operand {o.label()!r} "
                               "unchanged; the cell must compute every output")
        outs.append((o, "output"))
    prog = lower_program(fn_name, outs, args, names=names, dtype=dtype, doc=doc)
    helpers: set = set()
    source = emit_program(prog, dtype, helpers)
    call = []
    out_pos, aliases = {}, []
    for k, o in enumerate(outputs):
        if o in out_pos:
            aliases.append((k, out_pos[o]))   # y_t = s_t: one node, two outputs
        else:
            out_pos[o] = k
    for a in prog.args:
        if a.node in roles:
            call.append((roles[a.node][0], roles[a.node][1], a.shape))
        elif a.role == "output":
            call.append(("out", out_pos[a.node], a.shape))
        else:
            call.append(("temp", a.name, a.shape))
    return CellCall(fn_name, source, helpers, call, aliases, program=prog)


def _cell_calls(cell, dtype, with_grad):
    # one function per cell and dtype (HELPERS is shared by every generated module)
    key = cell.graph.structural_hash()[:12] + ("_f32" if dtype == "float32" else "")
    roles = {n: ("carry", k) for k, n in enumerate(cell.carry_in)}
    roles.update({n: ("x", k) for k, n in enumerate(cell.x_in)})
    roles.update({n: ("free", k) for k, n in enumerate(cell.free)})
    fwd = _compile(f"cell_{key}", roles, list(cell.carry_out) + list(cell.y_out), dtype,
                   "One time step of the recurrence: new carries and outputs from the previous carries.")
    if not with_grad:
        return fwd, None
    gcell = cell.grad_cell
    roles_g = dict(roles)
    roles_g.update({n: ("gc", k) for k, n in enumerate(gcell.gc)})
    roles_g.update({n: ("gy", k) for k, n in enumerate(gcell.gy)})
    bwd = _compile(f"cell_grad_{key}", roles_g, list(gcell.outputs), dtype,
                   "One BPTT step (the cell's gradient graph): d(previous carries), d(x_t), d(free leaves).")
    return fwd, bwd


# -- lowerings ---------------------------------------------------------------------------

def _lower(node, ctx, kind):
    a = node.attrs
    cell = a["cell"]
    nc, nx, nf = a["n_carry"], a["n_xs"], len(cell.free)
    ins = node.inputs
    fwd, bwd = _cell_calls(cell, ctx.dtype, kind == "grad")
    # a scalar constant is a literal in generated code, not an array argument
    inits = tuple(repr(float(x.value)) if x.kind == "constant" and x.shape == () else ctx.array(x)
                  for x in ins[:nc])
    xs = tuple(ctx.array(x) for x in ins[nc:nc + nx])
    free = tuple(ctx.array(x) for x in ins[nc + nx:nc + nx + nf])
    g = ctx.array(ins[-1]) if kind == "grad" else None
    step = Recurrence(kind, ctx.name(node), inits, xs, free, g, a["length"],
                      tuple(tuple(s) for s in cell.carry_shapes), tuple(tuple(x.shape) for x in ins[:nc]),
                      tuple(tuple(x.shape) for x in cell.x_in), tuple(tuple(s) for s in cell.y_shapes),
                      tuple(tuple(f.shape) for f in cell.free),
                      tuple(bool(f.shape) and f.shape[0] is None for f in cell.free), fwd, bwd,
                      a.get("emit", "batched"),
                      tuple(_group_members(a, ins[:-1])) if kind == "grad" else (),
                      comment=f"{ctx.name(node)}: {'BPTT over' if kind == 'grad' else 'loop over'} "
                              f"T = {a['length']} steps of {fwd.fn}"
                              + (f", truncated to {a['truncate']} steps" if kind == "grad" and a["truncate"] else ""),
                      reads=inits + xs + free + ((g,) if g else ()),
                      truncate=a["truncate"] if kind == "grad" else None)
    return Lowered(steps=[step])


register_lowering("loop", lambda node, ctx: _lower(node, ctx, "loop"))
register_lowering("loop_grad", lambda node, ctx: _lower(node, ctx, "grad"))


# -- printing ---------------------------------------------------------------------------

def _dims(shape, batch="B"):
    # 0-d values are 1-element arrays in generated code (as codegen passes scalar parameters)
    dims = [batch if d is None else str(d) for d in shape] or ["1"]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _size(shape):
    return math.prod(d for d in shape[1:])


def _np_dtype(w):
    return "np.float64" if w.dtype == "float64" else "np.float32"


def _alloc(w, name, shape, zero=False):
    w(f"{name} = np.{'zeros' if zero else 'empty'}({_dims(shape)}, {_np_dtype(w)})")


def _register_cell(w, call: CellCall):
    HELPERS.setdefault(call.fn, call.source)
    w.printer.helpers.add(call.fn)
    w.printer.helpers |= call.helpers


def _call(w, p, call: CellCall, carries, xb, gcs=(), gys=(), outs=None):
    args = []
    for kind, key, _ in call.args:
        args.append({"carry": lambda: carries[key], "x": lambda: xb[key], "free": lambda: p["free"][key],
                     "gc": lambda: gcs[key], "gy": lambda: gys[key], "out": lambda: outs[key],
                     "temp": lambda: p["temps"][call.fn][key]}[kind]())
    w(f"{call.fn}({', '.join(args)})")
    for k, j in call.aliases:
        w(f"{outs[k]}[...] = {outs[j]}")


def _emit(step: Recurrence, w):
    p = {"free": step.free, "temps": {}}
    pre = step.out
    T = step.length
    w(f"# {step.comment}")
    calls = [step.cell] + ([step.grad] if step.grad else [])
    for call in calls:
        _register_cell(w, call)
        p["temps"][call.fn] = {}
        for kind, key, shape in call.args:
            if kind == "temp":
                name = f"{pre}_{call.fn}_{key}"
                p["temps"][call.fn][key] = name
                _alloc(w, name, shape)
    nc = len(step.carry_shapes)
    cur = [f"{pre}_s{k}" for k in range(nc)]
    nxt = [f"{pre}_s{k}_new" for k in range(nc)]
    xb = [f"{pre}_x{k}" for k in range(len(step.xs))]
    ys = [f"{pre}_y{k}" for k in range(len(step.y_shapes))]
    for k, shape in enumerate(step.carry_shapes):
        _alloc(w, cur[k], shape)
        _alloc(w, nxt[k], shape)
        _init_carry(w, cur[k], step.inits[k], step.init_shapes[k], shape)
    for k, shape in enumerate(step.x_shapes):
        _alloc(w, xb[k], shape)
    for k, shape in enumerate(step.y_shapes):
        _alloc(w, ys[k], shape)
    outs = nxt + ys
    if step.kind == "loop":
        _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack=True)
        return
    hist = [f"{pre}_hist{k}" for k in range(nc)]
    for k, shape in enumerate(step.carry_shapes):
        w(f"{hist[k]} = np.empty(({T + 1}, B) + {cur[k]}.shape[1:], {_np_dtype(w)})")
        w(f"{hist[k]}[0] = {cur[k]}")
    _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack=False, hist=hist)
    _reverse_loop(w, step, hist, xb, p)


def _init_carry(w, name, init, init_shape, carry_shape):
    if tuple(init_shape) == tuple(carry_shape):
        w(f"{name}[...] = {init}")
    else:
        src = f"{init}[0]" if init_shape == (1,) + tuple(carry_shape[1:]) else init
        w("for r in range(B):")
        w(f"    {name}[r] = {src}")


def _copy_x(w, step, xb):
    for k, x in enumerate(step.xs):
        w(f"{xb[k]}[...] = {x}[:, tt]")


def _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack, hist=None):
    layout = _layout(step)
    nc = len(cur)
    w(f"for tt in range({step.length}):")
    w.indent()
    _copy_x(w, step, xb)
    _call(w, p, step.cell, cur, xb, outs=outs)
    if pack:
        for j, y in enumerate(ys):
            off, size = layout[nc + j]
            f = size // step.length
            w(f"{step.out}[:, {off} + tt * {f}:{off} + (tt + 1) * {f}] = {y}.reshape((B, {f}))")
    for k in range(nc):
        w(f"{cur[k]}, {nxt[k]} = {nxt[k]}, {cur[k]}")
        if hist is not None:
            w(f"{hist[k]}[tt + 1] = {cur[k]}")
    w.dedent()
    if pack:
        for k in range(nc):
            off, size = layout[k]
            w(f"{step.out}[:, {off}:{off + size}] = {cur[k]}.reshape((B, {size}))")


def _layout(step):
    parts, off = [], 0
    for s in step.carry_shapes:
        parts.append((off, _size(s)))
        off += _size(s)
    for s in step.y_shapes:
        parts.append((off, step.length * _size(s)))
        off += step.length * _size(s)
    return parts


def _reverse_loop(w, step, hist, xb, p):
    pre, T = step.out, step.length
    nc, nx, nf = len(step.carry_shapes), len(step.xs), len(step.free)
    layout = _layout(step)
    gc = [f"{pre}_gc{k}" for k in range(nc)]
    gy = [f"{pre}_gy{k}" for k in range(len(step.y_shapes))]
    d_c = [f"{pre}_dc{k}" for k in range(nc)]
    d_x = [f"{pre}_dx{k}" for k in range(nx)]
    d_f = [f"{pre}_df{k}" for k in range(nf)]
    acc_x = [f"{pre}_accx{k}" for k in range(nx)]
    acc_f = [f"{pre}_accf{k}" for k in range(nf)]
    for k, shape in enumerate(step.carry_shapes):
        _alloc(w, gc[k], shape)
        _alloc(w, d_c[k], shape)
    for k, shape in enumerate(step.y_shapes):
        _alloc(w, gy[k], shape)
    for k, shape in enumerate(step.x_shapes):
        _alloc(w, d_x[k], shape)
        w(f"{acc_x[k]} = np.zeros((B, {T}) + {d_x[k]}.shape[1:], {_np_dtype(w)})")
    for k, shape in enumerate(step.free_shapes):
        _alloc(w, d_f[k], shape)
        _alloc(w, acc_f[k], shape, zero=True)
    bufs = dict(gc=gc, gy=gy, d_c=d_c, d_x=d_x, d_f=d_f, acc_x=acc_x, acc_f=acc_f)
    if step.truncate is None:
        acc_c = _full_sweep(w, step, hist, xb, p, layout, bufs)
    else:
        acc_c = _truncated_sweep(w, step, hist, xb, p, layout, bufs)
    # pack the group this node emits, in input order
    values = acc_c + acc_x + acc_f
    off = 0
    for pos in step.members:
        v = values[pos]
        if step.emit == "batched":
            size = member_size(step, pos, T)
            w(f"{step.out}[:, {off}:{off + size}] = {v}.reshape((B, {size}))")
        else:
            size = math.prod(step.free_shapes[pos - nc - nx])
            w(f"{step.out}[{off}:{off + size}] = {v}.reshape(({size},))")
        off += size


def _load_final(w, step, layout, dst):
    """d(final carries): the packed cotangent's carry columns."""
    for k in range(len(step.carry_shapes)):
        off, size = layout[k]
        w(f"{dst[k]}.reshape((B, {size}))[:, :] = {step.g}[:, {off}:{off + size}]")


def _load_gy(w, step, layout, gy, t):
    """d(y_t) for step ``t``: the packed cotangent's columns of output t."""
    nc, T = len(step.carry_shapes), step.length
    for j, g in enumerate(gy):
        off, size = layout[nc + j]
        f = size // T
        w(f"{g}.reshape((B, {f}))[:, :] = {step.g}[:, {off} + {t} * {f}:{off} + ({t} + 1) * {f}]")


def _back_step(w, step, hist, xb, p, b, accumulate_x):
    """One call of the gradient cell at step ``tt``; sums into the accumulators, swaps d(carry)."""
    _copy_x(w, step, xb)
    _call(w, p, step.grad, [f"{h}[tt]" for h in hist], xb, b["gc"], b["gy"], b["d_c"] + b["d_x"] + b["d_f"])
    for ax, dx in zip(b["acc_x"], b["d_x"]):
        w(f"{ax}[:, tt] {'+=' if accumulate_x else '='} {dx}")
    for af, df in zip(b["acc_f"], b["d_f"]):
        w(f"{af} += {df}")
    for g, d in zip(b["gc"], b["d_c"]):
        w(f"{g}, {d} = {d}, {g}")


def _full_sweep(w, step, hist, xb, p, layout, b):
    """Full BPTT: one reverse sweep, each step's d(y_t) joining as it passes."""
    _load_final(w, step, layout, b["gc"])
    w(f"for tt in range({step.length - 1}, -1, -1):")
    w.indent()
    _load_gy(w, step, layout, b["gy"], "tt")
    _back_step(w, step, hist, xb, p, b, accumulate_x=False)
    w.dedent()
    return b["gc"]


def _truncated_sweep(w, step, hist, xb, p, layout, b):
    """Truncated BPTT (k steps): what enters at step tau travels back through at most k cells.

    A sweep per tau whose cotangent is not zero (the reference skips zero ones too), so a
    loss on the last state costs k cell gradients, a loss at every step T·k."""
    T, K = step.length, step.truncate
    pre = step.out
    acc_c = [f"{pre}_accc{k}" for k in range(len(step.carry_shapes))]
    final = [f"{pre}_gfinal{k}" for k in range(len(step.carry_shapes))]
    for k, shape in enumerate(step.carry_shapes):
        _alloc(w, acc_c[k], shape, zero=True)
        _alloc(w, final[k], shape)
    _load_final(w, step, layout, final)
    w(f"for tau in range({T - 1}, -1, -1):")
    w.indent()
    _load_gy(w, step, layout, b["gy"], "tau")
    live = " or ".join([f"tau == {T - 1}"] + [f"np.any({g} != 0)" for g in b["gy"]])
    w(f"if not ({live}):")
    w("    continue")
    for g, f in zip(b["gc"], final):
        w(f"if tau == {T - 1}:")
        w(f"    {g}[...] = {f}")
        w("else:")
        w(f"    {g}[...] = 0")
    w(f"lo = max(0, tau - {K - 1})")
    w("for tt in range(tau, lo - 1, -1):")
    w.indent()
    for g in b["gy"]:
        w("if tt != tau:")
        w(f"    {g}[...] = 0")
    _back_step(w, step, hist, xb, p, b, accumulate_x=True)
    w.dedent()
    w("if lo == 0:")
    for a, g in zip(acc_c, b["gc"]):
        w(f"    {a} += {g}")
    w.dedent()
    return acc_c


register_emitter(Recurrence, _emit)


def member_size(step, pos, T):
    """Per-example size of gradient group member ``pos`` (carry, sequence input, or free)."""
    nc, nx = len(step.carry_shapes), len(step.x_shapes)
    if pos < nc:
        return _size(step.carry_shapes[pos])
    if pos < nc + nx:
        return _size((None, T) + tuple(step.x_shapes[pos - nc][1:]))
    return _size(step.free_shapes[pos - nc - nx])
