"""CUDA printer of the recurrence steps of codegen/lower_loop.py (``loop`` and its BPTT).

The cell's schedule (the same `Program` the CPU compiles into one @njit function) is
printed once as a CUDA driver ``cell_<hash>(c, B)`` working on its own namespace ``c``.
The host loop over t launches it T times, binding the step's carries, inputs and outputs
into ``c``; carries swap by reference, x_t and the packed outputs move by copy kernels
over views, so nothing crosses between host and device. BPTT keeps every carry on the
device (T + 1 of them), runs the gradient cell for t = T−1 … 0 and sums the weights'
gradients — the algorithm of the CPU printer and of the NumPy reference.
"""
from __future__ import annotations

import math

from codegen.lower import CodegenError
from codegen.lower_loop import Recurrence, _layout, _size, member_size

from . import kernels
from .emit import register_cuda_printer


def _rank(shape):
    return max(1, len(shape))


class _Writer:
    def __init__(self, em, step):
        self.em, self.step, self.lines, self.depth = em, step, [], 0

    def __call__(self, line):
        self.lines.append("    " * self.depth + line)

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
        if kind != "temp":
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
        size = _size(carry_shape)
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
    cur = [w.buffer(f"{pre}_s{k}", s) for k, s in enumerate(step.carry_shapes)]
    nxt = [w.buffer(f"{pre}_s{k}_new", s) for k, s in enumerate(step.carry_shapes)]
    xb = [w.buffer(f"{pre}_x{k}", s) for k, s in enumerate(step.x_shapes)]
    ys = [w.buffer(f"{pre}_y{k}", s) for k, s in enumerate(step.y_shapes)]
    for k, shape in enumerate(step.carry_shapes):
        _init_carry(w, cur[k], step.inits[k], step.init_shapes[k], shape)
    layout = _layout(step)
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
    nc, nx, nf = len(step.carry_shapes), len(step.xs), len(step.free)
    gc = [w.buffer(f"{pre}_gc{k}", s) for k, s in enumerate(step.carry_shapes)]
    d_c = [w.buffer(f"{pre}_dc{k}", s) for k, s in enumerate(step.carry_shapes)]
    gy = [w.buffer(f"{pre}_gy{k}", s) for k, s in enumerate(step.y_shapes)]
    d_x = [w.buffer(f"{pre}_dx{k}", s) for k, s in enumerate(step.x_shapes)]
    acc_x = [w.buffer(f"{pre}_accx{k}", (s[0], T) + tuple(s[1:])) for k, s in enumerate(step.x_shapes)]
    d_f = [w.buffer(f"{pre}_df{k}", s) for k, s in enumerate(step.free_shapes)]
    acc_f = [w.buffer(f"{pre}_accf{k}", s) for k, s in enumerate(step.free_shapes)]
    for k, s in enumerate(step.carry_shapes):
        off, size = layout[k]
        w.copy(f"a.{step.g}[:, {off}:{off + size}]", f"{gc[k]}.reshape(B, {size})", 2)
    for k, s in enumerate(step.free_shapes):
        w.fill(acc_f[k], "0.0", _rank(s))
    out_shapes = list(step.carry_shapes) + list(step.x_shapes) + list(step.free_shapes)
    outs = d_c + d_x + d_f
    w(f"for tt in range({T - 1}, -1, -1):")
    w.depth += 1
    for k, x in enumerate(step.xs):
        w.copy(f"a.{x}[:, tt]", xb[k], _rank(step.x_shapes[k]))
    for j, g in enumerate(gy):
        off, size = layout[nc + j]
        f = size // T
        w.copy(f"a.{step.g}[:, {off} + tt * {f}:{off} + (tt + 1) * {f}]", f"{g}.reshape(B, {f})", 2)
    _call(w, step.grad, {"carry": lambda k: f"{hist[k]}[tt]", "x": lambda k: xb[k],
                         "free": lambda k: f"a.{step.free[k]}", "gc": lambda k: gc[k], "gy": lambda k: gy[k],
                         "out": lambda k: outs[k], "out_shape": lambda k: out_shapes[k]})
    for k in range(nx):
        w.copy(d_x[k], f"{acc_x[k]}[:, tt]", _rank(step.x_shapes[k]))
    for k in range(nf):
        w.add(d_f[k], acc_f[k], _rank(step.free_shapes[k]))
    for k in range(nc):
        w(f"{gc[k]}, {d_c[k]} = {d_c[k]}, {gc[k]}")
    w.depth -= 1
    values = gc + acc_x + acc_f
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


register_cuda_printer(Recurrence, _recurrence)
