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
from graphnn.looped import Loop, LoopGrad, grad_group_members

from .emit_cpu import emit_program, register_emitter
from .lower import RESERVED, CodegenError, Lowered, identifier, lower_program, register_lowering
from .printer import HELPERS
from .shared_loops import ANY_NONZERO, array_helper
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
    buffers: dict = field(default_factory=dict)   # role ('s0', 'gc0', ('temp', fn, key)…) -> buffer


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
                      tuple(grad_group_members(a, ins[:-1])) if kind == "grad" else (),
                      comment=f"{ctx.name(node)}: {'BPTT over' if kind == 'grad' else 'loop over'} "
                              f"T = {a['length']} steps of {fwd.fn}"
                              + (f", truncated to {a['truncate']} steps" if kind == "grad" and a["truncate"] else ""),
                      reads=inits + xs + free + ((g,) if g else ()),
                      truncate=a["truncate"] if kind == "grad" else None)
    step.buffers = _declare_buffers(step, ctx)
    return Lowered(steps=[step])


def _declare_buffers(step, ctx):
    """Every per-batch array of the loop, as a temporary of the program: the caller
    allocates it once per batch size (no allocation per batch, and none for Numba to
    compile). Only the (T + 1)-deep carry history of BPTT is allocated in the loop."""
    pre, T = step.out, step.length
    wanted = {}
    for call in [step.cell] + ([step.grad] if step.grad else []):
        for kind, key, shape in call.args:
            if kind == "temp":
                wanted[("temp", call.fn, key)] = shape
    for k, shape in enumerate(step.carry_shapes):
        wanted[f"s{k}"] = wanted[f"s{k}_new"] = shape
    wanted.update({f"x{k}": shape for k, shape in enumerate(step.x_shapes)})
    wanted.update({f"y{k}": shape for k, shape in enumerate(step.y_shapes)})
    if step.kind == "grad":
        for k, shape in enumerate(step.carry_shapes):
            wanted[f"gc{k}"] = wanted[f"dc{k}"] = wanted[f"accc{k}"] = wanted[f"gfinal{k}"] = shape
        wanted.update({f"gy{k}": shape for k, shape in enumerate(step.y_shapes)})
        for k, shape in enumerate(step.x_shapes):
            wanted[f"dx{k}"] = shape
            wanted[f"accx{k}"] = (shape[0], T) + tuple(shape[1:])
        for k, shape in enumerate(step.free_shapes):
            wanted[f"df{k}"] = wanted[f"accf{k}"] = shape
    out = {}
    for role, shape in wanted.items():
        hint = f"{pre}_{role[1]}_{role[2]}" if isinstance(role, tuple) else f"{pre}_{role}"
        out[role] = ctx.temp(hint, tuple(shape) or (1,))
    return out


register_lowering(Loop, lambda node, ctx: _lower(node, ctx, "loop"))
register_lowering(LoopGrad, lambda node, ctx: _lower(node, ctx, "grad"))


# -- printing ---------------------------------------------------------------------------


def _array_op(w, kind, shape, *args):
    helper = array_helper(kind, shape)
    w.printer.helpers.add(helper)
    w(f"{helper}({', '.join(args)})")


def _copy(w, dst, src, shape):
    _array_op(w, "copy", shape, dst, src)


def _add(w, dst, src, shape):
    _array_op(w, "add", shape, dst, src)


def _fill(w, dst, value, shape):
    _array_op(w, "fill", shape, dst, value)


def _is_literal(text):
    try:
        float(text)
        return True
    except ValueError:
        return False

def row_size(shape):
    return math.prod(d for d in shape[1:])


def _np_dtype(w):
    return "np.float64" if w.dtype == "float64" else "np.float32"


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
    out_shapes = {key: shape for kind, key, shape in call.args if kind == "out"}
    for k, j in call.aliases:
        _copy(w, outs[k], outs[j], out_shapes[j])


def _emit(step: Recurrence, w):
    p = {"free": step.free, "temps": {}}
    pre = step.out
    T = step.length
    w(f"# {step.comment}")
    calls = [step.cell] + ([step.grad] if step.grad else [])
    for call in calls:
        _register_cell(w, call)
        p["temps"][call.fn] = {key: step.buffers[("temp", call.fn, key)]
                               for kind, key, _ in call.args if kind == "temp"}
    nc = len(step.carry_shapes)
    buf = step.buffers
    cur = [buf[f"s{k}"] for k in range(nc)]
    nxt = [buf[f"s{k}_new"] for k in range(nc)]
    xb = [buf[f"x{k}"] for k in range(len(step.xs))]
    ys = [buf[f"y{k}"] for k in range(len(step.y_shapes))]
    for k, shape in enumerate(step.carry_shapes):
        _init_carry(w, cur[k], step.inits[k], step.init_shapes[k], shape)
    outs = nxt + ys
    if step.kind == "loop":
        _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack=True)
        return
    hist = [f"{pre}_hist{k}" for k in range(nc)]
    for k, shape in enumerate(step.carry_shapes):
        w(f"{hist[k]} = np.empty(({T + 1}, B) + {cur[k]}.shape[1:], {_np_dtype(w)})")
        _copy(w, f"{hist[k]}[0]", cur[k], shape)
    _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack=False, hist=hist)
    _reverse_loop(w, step, hist, xb, p)


def _init_carry(w, name, init, init_shape, carry_shape):
    if _is_literal(init):
        _fill(w, name, init, carry_shape)
    elif tuple(init_shape) == tuple(carry_shape):
        _copy(w, name, init, carry_shape)
    else:   # one initial state for every row of the batch
        src = f"{init}[0]" if init_shape == (1,) + tuple(carry_shape[1:]) else init
        w("for r in range(B):")
        if len(carry_shape) > 1:
            w.indent()
            _copy(w, f"{name}[r]", src, carry_shape[1:])
            w.dedent()
        else:
            w(f"    {name}[r] = {src}")


def _copy_x(w, step, xb):
    for k, x in enumerate(step.xs):
        _copy(w, xb[k], f"{x}[:, tt]", step.x_shapes[k])


def _forward_loop(w, step, cur, nxt, xb, ys, outs, p, pack, hist=None):
    layout = packed_layout(step)
    nc = len(cur)
    w(f"for tt in range({step.length}):")
    w.indent()
    _copy_x(w, step, xb)
    _call(w, p, step.cell, cur, xb, outs=outs)
    if pack:
        for j, y in enumerate(ys):
            off, size = layout[nc + j]
            f = size // step.length
            _copy(w, f"{step.out}[:, {off} + tt * {f}:{off} + (tt + 1) * {f}]", f"{y}.reshape((B, {f}))", (None, f))
    for k in range(nc):
        w(f"{cur[k]}, {nxt[k]} = {nxt[k]}, {cur[k]}")
        if hist is not None:
            _copy(w, f"{hist[k]}[tt + 1]", cur[k], step.carry_shapes[k])
    w.dedent()
    if pack:
        for k in range(nc):
            off, size = layout[k]
            _copy(w, f"{step.out}[:, {off}:{off + size}]", f"{cur[k]}.reshape((B, {size}))", (None, size))


def packed_layout(step):
    parts, off = [], 0
    for s in step.carry_shapes:
        parts.append((off, row_size(s)))
        off += row_size(s)
    for s in step.y_shapes:
        parts.append((off, step.length * row_size(s)))
        off += step.length * row_size(s)
    return parts


def _reverse_loop(w, step, hist, xb, p):
    T = step.length
    nc, nx, nf = len(step.carry_shapes), len(step.xs), len(step.free)
    layout = packed_layout(step)
    buf = step.buffers
    gc = [buf[f"gc{k}"] for k in range(nc)]
    gy = [buf[f"gy{k}"] for k in range(len(step.y_shapes))]
    d_c = [buf[f"dc{k}"] for k in range(nc)]
    d_x = [buf[f"dx{k}"] for k in range(nx)]
    d_f = [buf[f"df{k}"] for k in range(nf)]
    acc_x = [buf[f"accx{k}"] for k in range(nx)]
    acc_f = [buf[f"accf{k}"] for k in range(nf)]
    for a, shape in zip(acc_f, step.free_shapes):
        _fill(w, a, "0.0", shape)
    if step.truncate is not None:   # (full BPTT writes every acc_x[:, t])
        for a, shape in zip(acc_x, step.x_shapes):
            _fill(w, a, "0.0", (None,) + tuple(shape))
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
            _copy(w, f"{step.out}[:, {off}:{off + size}]", f"{v}.reshape((B, {size}))", (None, size))
        else:
            size = math.prod(step.free_shapes[pos - nc - nx])
            _copy(w, f"{step.out}[{off}:{off + size}]", f"{v}.reshape(({size},))", (size,))
        off += size


def _load_final(w, step, layout, dst):
    """d(final carries): the packed cotangent's carry columns."""
    for k in range(len(step.carry_shapes)):
        off, size = layout[k]
        _copy(w, f"{dst[k]}.reshape((B, {size}))", f"{step.g}[:, {off}:{off + size}]", (None, size))


def _load_gy(w, step, layout, gy, t):
    """d(y_t) for step ``t``: the packed cotangent's columns of output t."""
    nc, T = len(step.carry_shapes), step.length
    for j, g in enumerate(gy):
        off, size = layout[nc + j]
        f = size // T
        _copy(w, f"{g}.reshape((B, {f}))", f"{step.g}[:, {off} + {t} * {f}:{off} + ({t} + 1) * {f}]", (None, f))


def _back_step(w, step, hist, xb, p, b, accumulate_x):
    """One call of the gradient cell at step ``tt``; sums into the accumulators, swaps d(carry)."""
    _copy_x(w, step, xb)
    _call(w, p, step.grad, [f"{h}[tt]" for h in hist], xb, b["gc"], b["gy"], b["d_c"] + b["d_x"] + b["d_f"])
    for ax, dx, shape in zip(b["acc_x"], b["d_x"], step.x_shapes):
        (_add if accumulate_x else _copy)(w, f"{ax}[:, tt]", dx, shape)
    for af, df, shape in zip(b["acc_f"], b["d_f"], step.free_shapes):
        _add(w, af, df, shape)
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
    acc_c = [step.buffers[f"accc{k}"] for k in range(len(step.carry_shapes))]
    final = [step.buffers[f"gfinal{k}"] for k in range(len(step.carry_shapes))]
    for a, shape in zip(acc_c, step.carry_shapes):
        _fill(w, a, "0.0", shape)
    _load_final(w, step, layout, final)
    w(f"for tau in range({T - 1}, -1, -1):")
    w.indent()
    _load_gy(w, step, layout, b["gy"], "tau")
    w.printer.helpers.add(ANY_NONZERO)
    live = " or ".join([f"tau == {T - 1}"] + [f"{ANY_NONZERO}({g})" for g in b["gy"]])
    w(f"if not ({live}):")
    w("    continue")
    for g, f, shape in zip(b["gc"], final, step.carry_shapes):
        w(f"if tau == {T - 1}:")
        w.indent()
        _copy(w, g, f, shape)
        w.dedent()
        w("else:")
        w.indent()
        _fill(w, g, "0.0", shape)
        w.dedent()
    w(f"lo = max(0, tau - {K - 1})")
    w("for tt in range(tau, lo - 1, -1):")
    w.indent()
    for g, shape in zip(b["gy"], step.y_shapes):
        w("if tt != tau:")
        w.indent()
        _fill(w, g, "0.0", shape)
        w.dedent()
    _back_step(w, step, hist, xb, p, b, accumulate_x=True)
    w.dedent()
    w("if lo == 0:")
    w.indent()
    for a, g, shape in zip(acc_c, b["gc"], step.carry_shapes):
        _add(w, a, g, shape)
    w.dedent()
    w.dedent()
    return acc_c


register_emitter(Recurrence, _emit)


def member_size(step, pos, T):
    """Per-example size of gradient group member ``pos`` (carry, sequence input, or free)."""
    nc, nx = len(step.carry_shapes), len(step.x_shapes)
    if pos < nc:
        return row_size(step.carry_shapes[pos])
    if pos < nc + nx:
        return row_size((None, T) + tuple(step.x_shapes[pos - nc][1:]))
    return row_size(step.free_shapes[pos - nc - nx])
