"""CUDA printer of the recurrence steps of codegen/lower_loop.py (``loop`` and its BPTT).

The cell's schedule (the same `Program` the CPU compiles into one @njit function) is
printed once as a CUDA driver ``cell_<hash>(c, B)`` working on its own namespace ``c``.
The host loop over t launches it T times, binding the step's carries, inputs and outputs
into ``c``; carries swap by reference, x_t and the packed outputs move by copy kernels
over views, so nothing crosses between host and device. BPTT keeps every carry on the
device (T + 1 of them), runs the gradient cell for t = T−1 … 0 and sums the weights'
gradients — the algorithm of the CPU printer and of the NumPy reference; truncated BPTT
runs a sweep of at most k steps from each step whose cotangent is not zero.
"""
from __future__ import annotations

import math

from codegen.lower import CodegenError
from codegen.lower_loop import Recurrence, packed_layout, row_size, member_size

from . import kernels
from .emit import register_cuda_printer


def _rank(shape):
    return max(1, len(shape))


class _Writer:
    def __init__(self, em, step):
        self.em, self.step, self.lines, self.depth = em, step, [], 0

    def __call__(self, line):
        self.lines.append("    " * self.depth + line)

    def temp(self, role):
        """One of the loop's buffers (a temporary of the program, codegen.lower_loop)."""
        name = self.step.buffers[role]
        self(f"{name} = a.{name}")
        return name

    def buffer(self, name, shape):
        """A device buffer the backend allocates per batch size; returns its local name."""
        self.em.extras.setdefault(name, tuple(shape))
        self(f"{name} = a.{name}")
        return name

    def copy(self, src, dst, rank):
        k = self.em.kernel(f"copy{rank}d", lambda n: kernels.copy(n, rank))
        self(f"run_{k}({src}, {dst})")

    def add(self, src, dst, rank):
        k = self.em.kernel(f"add{rank}d", lambda n: kernels.add_into(n, rank))
        self(f"run_{k}({src}, {dst})")

    def fill(self, dst, value, rank):
        k = self.em.kernel(f"fill{rank}d", lambda n: kernels.fill(n, rank))
        self(f"run_{k}({dst}, F({value}))")


def _cell(w, call):
    """Print the cell's program once (its own driver and namespace)."""
    if getattr(call, "program", None) is None:
        raise CodegenError("codegen (cuda): this codegen.lower_loop keeps no cell schedule "
                           "(CellCall.program); the CUDA backend cannot print the recurrence")
    if call.fn not in w.em.cells:
        w.em.cells[call.fn] = call.program
        w.em.program(call.program, {})


def _call(w, call, values):
    """Bind the step's arrays into the cell's namespace and run it."""
    c = f"c_{call.fn}"
    for buf, (kind, key, _shape) in zip(call.program.args, call.args):
        if kind == "temp":   # the cell's scratch: this loop's own (lower_loop declares them)
            w(f"{c}.{buf.name} = a.{w.step.buffers[('temp', call.fn, key)]}")
        else:
            w(f"{c}.{buf.name} = {values[kind](key)}")
    w(f"bind_{call.fn}({c})")
    w(f"{call.fn}({c}, B)")
    for k, j in call.aliases:
        out = values["out"]
        w.copy(out(j), out(k), _rank(values["out_shape"](k)))


def _init_carry(w, dst, init, init_shape, carry_shape):
    try:
        literal = float(init)
    except ValueError:
        literal = None
    if literal is not None:
        w.fill(dst, repr(literal), _rank(carry_shape))
    elif tuple(init_shape) == tuple(carry_shape):
        w.copy(f"a.{init}", dst, _rank(carry_shape))
    else:  # a (1, …) initial state for every row of the batch
        size = row_size(carry_shape)
        k = w.em.kernel("repeat_row", kernels.repeat_row)
        w(f"run_{k}(a.{init}.reshape(1, {size}), {dst}.reshape(B, {size}))")


def _recurrence(step: Recurrence, em):
    w = _Writer(em, step)
    pre, T = step.out, step.length
    if step.comment:
        w(f"# {step.comment}")
    calls = [step.cell] + ([step.grad] if step.grad else [])
    for call in calls:
        _cell(w, call)
        w(f"c_{call.fn} = a.cell_ns_{call.fn}")
    nc = len(step.carry_shapes)
    cur = [w.temp(f"s{k}") for k in range(len(step.carry_shapes))]
    nxt = [w.temp(f"s{k}_new") for k in range(len(step.carry_shapes))]
    xb = [w.temp(f"x{k}") for k in range(len(step.x_shapes))]
    ys = [w.temp(f"y{k}") for k in range(len(step.y_shapes))]
    for k, shape in enumerate(step.carry_shapes):
        _init_carry(w, cur[k], step.inits[k], step.init_shapes[k], shape)
    layout = packed_layout(step)
    hist = None
    if step.kind == "grad":
        hist = [w.buffer(f"{pre}_hist{k}", (T + 1,) + tuple(s)) for k, s in enumerate(step.carry_shapes)]
        for k, s in enumerate(step.carry_shapes):
            w.copy(cur[k], f"{hist[k]}[0]", _rank(s))
    out_shapes = list(step.carry_shapes) + list(step.y_shapes)
    # -- forward over t
    w(f"for tt in range({T}):")
    w.depth += 1
    for k, x in enumerate(step.xs):
        w.copy(f"a.{x}[:, tt]", xb[k], _rank(step.x_shapes[k]))
    outs = nxt + ys
    _call(w, step.cell, {"carry": lambda k: cur[k], "x": lambda k: xb[k], "free": lambda k: f"a.{step.free[k]}",
                         "out": lambda k: outs[k], "out_shape": lambda k: out_shapes[k]})
    if step.kind == "loop":
        for j, y in enumerate(ys):
            off, size = layout[nc + j]
            f = size // T
            w.copy(f"{y}.reshape(B, {f})", f"a.{pre}[:, {off} + tt * {f}:{off} + (tt + 1) * {f}]", 2)
    for k in range(nc):
        w(f"{cur[k]}, {nxt[k]} = {nxt[k]}, {cur[k]}")
        if hist is not None:
            w.copy(cur[k], f"{hist[k]}[tt + 1]", _rank(step.carry_shapes[k]))
    w.depth -= 1
    if step.kind == "loop":
        for k in range(nc):
            off, size = layout[k]
            w.copy(f"{cur[k]}.reshape(B, {size})", f"a.{pre}[:, {off}:{off + size}]", 2)
        return w.lines
    _reverse(w, step, hist, xb, layout)
    return w.lines


def _reverse(w, step, hist, xb, layout):
    pre, T = step.out, step.length
    nc, nx = len(step.carry_shapes), len(step.xs)
    b = {"gc": [w.temp(f"gc{k}") for k in range(len(step.carry_shapes))],
         "d_c": [w.temp(f"dc{k}") for k in range(len(step.carry_shapes))],
         "gy": [w.temp(f"gy{k}") for k in range(len(step.y_shapes))],
         "d_x": [w.temp(f"dx{k}") for k in range(len(step.x_shapes))],
         "acc_x": [w.temp(f"accx{k}") for k in range(len(step.x_shapes))],
         "d_f": [w.temp(f"df{k}") for k in range(len(step.free_shapes))],
         "acc_f": [w.temp(f"accf{k}") for k in range(len(step.free_shapes))]}
    for k, s in enumerate(step.free_shapes):
        w.fill(b["acc_f"][k], "0.0", _rank(s))
    if step.truncate is None:
        acc_c = _full_sweep(w, step, hist, xb, layout, b)
    else:
        acc_c = _truncated_sweep(w, step, hist, xb, layout, b)
    values = acc_c + b["acc_x"] + b["acc_f"]
    off = 0
    for pos in step.members:
        v = values[pos]
        if step.emit == "batched":
            size = member_size(step, pos, T)
            w.copy(f"{v}.reshape(B, {size})", f"a.{pre}[:, {off}:{off + size}]", 2)
        else:
            size = math.prod(step.free_shapes[pos - nc - nx])
            w.copy(f"{v}.reshape({size})", f"a.{pre}[{off}:{off + size}]", 1)
        off += size


def _load_final(w, step, layout, dst):
    for k in range(len(step.carry_shapes)):
        off, size = layout[k]
        w.copy(f"a.{step.g}[:, {off}:{off + size}]", f"{dst[k]}.reshape(B, {size})", 2)


def _load_gy(w, step, layout, gy, t):
    nc, T = len(step.carry_shapes), step.length
    for j, g in enumerate(gy):
        off, size = layout[nc + j]
        f = size // T
        w.copy(f"a.{step.g}[:, {off} + {t} * {f}:{off} + ({t} + 1) * {f}]", f"{g}.reshape(B, {f})", 2)


def _back_step(w, step, hist, xb, b, accumulate_x):
    """One launch of the gradient cell at step ``tt``; sums into the accumulators."""
    for k, x in enumerate(step.xs):
        w.copy(f"a.{x}[:, tt]", xb[k], _rank(step.x_shapes[k]))
    out_shapes = list(step.carry_shapes) + list(step.x_shapes) + list(step.free_shapes)
    outs = b["d_c"] + b["d_x"] + b["d_f"]
    _call(w, step.grad, {"carry": lambda k: f"{hist[k]}[tt]", "x": lambda k: xb[k],
                         "free": lambda k: f"a.{step.free[k]}", "gc": lambda k: b["gc"][k],
                         "gy": lambda k: b["gy"][k], "out": lambda k: outs[k],
                         "out_shape": lambda k: out_shapes[k]})
    for k, s in enumerate(step.x_shapes):
        (w.add if accumulate_x else w.copy)(b["d_x"][k], f"{b['acc_x'][k]}[:, tt]", _rank(s))
    for k, s in enumerate(step.free_shapes):
        w.add(b["d_f"][k], b["acc_f"][k], _rank(s))
    for g, d in zip(b["gc"], b["d_c"]):
        w(f"{g}, {d} = {d}, {g}")


def _full_sweep(w, step, hist, xb, layout, b):
    _load_final(w, step, layout, b["gc"])
    w(f"for tt in range({step.length - 1}, -1, -1):")
    w.depth += 1
    _load_gy(w, step, layout, b["gy"], "tt")
    _back_step(w, step, hist, xb, b, accumulate_x=False)
    w.depth -= 1
    return b["gc"]


def _truncated_sweep(w, step, hist, xb, layout, b):
    """Truncated BPTT (k steps): a short sweep from each step whose cotangent is not zero.

    Which steps those are is found on the device in one pass and read back once (T flags),
    so a loss on the last state launches k cell gradients, not T·k."""
    pre, T, K = step.out, step.length, step.truncate
    nc = len(step.carry_shapes)
    acc_c = [w.temp(f"accc{k}") for k in range(len(step.carry_shapes))]
    final = [w.temp(f"gfinal{k}") for k in range(len(step.carry_shapes))]
    for k, s in enumerate(step.carry_shapes):
        w.fill(acc_c[k], "0.0", _rank(s))
    for k, s in enumerate(step.x_shapes):
        w.fill(b["acc_x"][k], "0.0", _rank(s) + 1)
    _load_final(w, step, layout, final)
    flags = w.buffer(f"{pre}_live", (T,))
    w.fill(flags, "0.0", 1)
    mark = w.em.kernel("mark_live_steps", kernels.mark_live_steps)
    for j in range(len(step.y_shapes)):
        off, size = layout[nc + j]
        w(f"run_{mark}(a.{step.g}[:, {off}:{off + size}], {size // T}, {flags})")
    w(f"live = {flags}.copy_to_host()")
    w(f"for tau in range({T - 1}, -1, -1):")
    w.depth += 1
    w(f"if not (tau == {T - 1} or live[tau] != 0):")
    w("    continue")
    _load_gy(w, step, layout, b["gy"], "tau")
    for k, s in enumerate(step.carry_shapes):
        w(f"if tau == {T - 1}:")
        w.depth += 1
        w.copy(final[k], b["gc"][k], _rank(s))
        w.depth -= 1
        w("else:")
        w.depth += 1
        w.fill(b["gc"][k], "0.0", _rank(s))
        w.depth -= 1
    w(f"lo = max(0, tau - {K - 1})")
    w("for tt in range(tau, lo - 1, -1):")
    w.depth += 1
    if b["gy"]:
        w("if tt != tau:")
        w.depth += 1
        for k, s in enumerate(step.y_shapes):
            w.fill(b["gy"][k], "0.0", _rank(s))
        w.depth -= 1
    _back_step(w, step, hist, xb, b, accumulate_x=True)
    w.depth -= 1
    w("if lo == 0:")
    w.depth += 1
    for k, s in enumerate(step.carry_shapes):
        w.add(b["gc"][k], acc_c[k], _rank(s))
    w.depth -= 1
    w.depth -= 1
    return acc_c


register_cuda_printer(Recurrence, _recurrence)
