"""CUDA printer of the recurrence steps of codegen/lower_loop.py (``loop`` and its BPTT).

The same schedule as the CPU printer (codegen/emit_loop.py): each phase's program (the
same `Program` the CPU compiles into one @njit function) is printed once as a CUDA driver
``cell_…(c, B)`` working on its own namespace ``c``. The host loop binds the phase's
arguments — views of the time-major stacks at step t (``hist[tt]``, ``pre[tt]``) or all
their T·B rows — into ``c`` and launches it: x_t @ U for every t before the loop (one
launch over T·B rows), the step T times writing the next row of the carry history, the
BPTT step T times reading the stashed forward values (nothing recomputed), and the weight
gradients once over the stacked steps after it. Nothing crosses between host and device
but the truncated sweep's T flags.
"""
from __future__ import annotations

import math

from codegen.lower_loop import Recurrence, member_size, packed_layout

from . import kernels
from .emit import register_cuda_printer


def _rank(shape):
    return max(1, len(shape))


def _row(shape):
    return math.prod(d for d in shape[1:])


def _dims(lead, row):
    return ", ".join([lead] + [str(d) for d in row]) + ("," if not row else "")


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


def _arg(step, phase, call, role, shape, t):
    """Device-side text of one phase argument at step ``t`` (cf. emit_loop._Args)."""
    kind, T = role[0], step.length
    if kind == "at":
        s = step.slots[role[1]]
        return f"{s.view}[{t}]" if role[2] == 0 else f"{s.view}[{t} + {role[2]}]"
    if kind == "rows":
        s, off = step.slots[role[1]], role[2]
        src = f"a.{s.buffer}" if off == 0 and s.depth == T else f"{s.view}[{off}:{off + T}]"
        return f"{src}.reshape({_dims(f'{T} * B', s.shape[1:])})"
    if kind == "free":
        return f"a.{step.free[role[1]]}"
    if kind == "temp":
        buf = f"a.{step.buffers[(phase, role[1])]}"
        return f"{buf}.reshape({_dims(f'{T} * B', shape[1:])})" if call.rows and shape and shape[0] is None else buf
    if kind == "out":
        return f"a.{step.buffers[('freeg', role[1])]}"
    if kind == "acc_at":
        return f"a.{step.buffers[('scratch', role[1])]}"
    if kind == "gyat":
        return f"gy_t{role[1]}"
    return f"a.{step.buffers[role]}"   # static, acc, dc, gcur (gcur/dc swap: locals below)


def _call(w, phase, t="tt", local=None):
    step = w.step
    call = step.calls.get(phase)
    if call is None:
        return
    if call.fn not in w.em.cells:
        w.em.cells[call.fn] = call.program
        if call.rows:
            w.em.cell_rows[call.fn] = step.length
        w.em.program(call.program, {})
    c = f"c_{call.fn}"
    w(f"{c} = a.cell_ns_{call.fn}")
    texts = []
    for buf, (role, shape) in zip(call.program.args, call.args):
        text = (local or {}).get(role) or _arg(step, phase, call, role, shape, t)
        texts.append(text)
        w(f"{c}.{buf.name} = {text}")
    w(f"bind_{call.fn}({c})")
    w(f"{call.fn}({c}, {step.length} * B)" if call.rows else f"{call.fn}({c}, B)")
    shapes = {role: shape for role, shape in call.args}
    for dup, first in call.aliases:
        w.copy(_arg(step, phase, call, first, shapes[first], t), _arg(step, phase, call, dup, shapes[first], t),
               _rank(shapes[first]))


def _recurrence(step: Recurrence, em):
    w = _Writer(em, step)
    if step.comment:
        w(f"# {step.comment}")
    for name in step.own_views:
        s = step.slots[name]
        w(f"{s.view} = a.{s.buffer}.reshape({_dims(f'{s.depth}, B', s.shape[1:])})")
    if step.forward:
        _forward(w, step)
    if step.kind == "loop":
        _pack_forward(w, step)
    else:
        _backward(w, step)
    return w.lines


def _forward(w, step):
    for k, x in enumerate(step.xs):
        s = step.slots.get(f"x{k}")
        if s is not None:   # x time-major: each x_t one contiguous block
            rank = len(s.shape) + 1
            w.copy(f"permuted(a.{x}, {(1, 0) + tuple(range(2, rank))})", s.view, rank)
    for k, shape in enumerate(step.carry_shapes):
        _init_carry(w, f"{step.slots[f'hist{k}'].view}[0]", step.inits[k], step.init_shapes[k], shape)
    _call(w, "static_fwd")
    _call(w, "pre")
    w(f"for tt in range({step.length}):")
    w.depth += 1
    _call(w, "fwd")
    w.depth -= 1


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
        size = _row(carry_shape)
        k = w.em.kernel("repeat_row", kernels.repeat_row)
        w(f"run_{k}(a.{init}.reshape(1, {size}), {dst}.reshape(B, {size}))")


def _stack3(s, lo, T):
    view = s.view if (lo == 0 and s.depth == T) else f"{s.view}[{lo}:{lo + T}]"
    return f"{view}.reshape({T}, B, {_row(s.shape)})"


def _pack_forward(w, step):
    layout, nc, T = packed_layout(step), len(step.carry_shapes), step.length
    for k in range(nc):
        off, size = layout[k]
        w.copy(f"{step.slots[f'hist{k}'].view}[{T}].reshape(B, {size})", f"a.{step.out}[:, {off}:{off + size}]", 2)
    for j, (slot, lo) in enumerate(step.y_slots):
        off, _ = layout[nc + j]
        s = step.slots[slot]
        w.copy(_stack3(s, lo, T), f"cols_as_stack(a.{step.out}, {off}, {T}, {_row(s.shape)})", 3)


def _backward(w, step):
    T, nc, layout = step.length, len(step.carry_shapes), packed_layout(step)
    _call(w, "static_bwd")
    for j, shape in enumerate(step.y_shapes):
        off, _ = layout[nc + j]
        w.copy(f"cols_as_stack(a.{step.g}, {off}, {T}, {_row(shape)})", _stack3(step.slots[f"gy{j}"], 0, T), 3)
    for k, target in step.free_targets.items():
        if target[0] == "acc":
            w.fill(f"a.{step.buffers[('freeg', k)]}", "0.0", _rank(step.free_shapes[k]))
    if step.truncate is None:
        for k in range(nc):
            off, size = layout[k]
            w.copy(f"a.{step.g}[:, {off}:{off + size}]", f"{step.slots[f'gc{k}'].view}[{T}].reshape(B, {size})", 2)
        w(f"for tt in range({T - 1}, -1, -1):")
        w.depth += 1
        _call(w, "bwd")
        _sum_step(w, step)
        w.depth -= 1
        d_init = [f"{step.slots[f'gc{k}'].view}[0]" for k in range(nc)]
    else:
        d_init = _truncated_sweep(w, step, layout)
    _call(w, "post")
    _pack_grads(w, step, d_init)


def _sum_step(w, step):
    for role, shape in step.calls["bwd"].args:
        if role[0] == "acc":
            w.add(f"a.{step.buffers[role]}", f"a.{step.buffers[('freeg', role[1])]}", _rank(shape))
        elif role[0] == "acc_at":
            w.add(f"a.{step.buffers[('scratch', role[1])]}", f"{step.slots[role[1]].view}[tt]", _rank(shape))


def _truncated_sweep(w, step, layout):
    """Truncated BPTT (k steps): a short sweep from each step whose cotangent is not zero.

    Which steps those are is found on the device in one pass and read back once (T flags),
    so a loss on the last state launches k cell gradients, not T·k."""
    T, K, nc, buf = step.length, step.truncate, len(step.carry_shapes), step.buffers
    for role, _ in step.calls["bwd"].args:
        if role[0] == "acc_at":
            w.fill(f"a.{step.slots[role[1]].buffer}", "0.0", 2)
    gcur, dc = [buf[("gcur", k)] for k in range(nc)], [buf[("dc", k)] for k in range(nc)]
    for k in range(nc):   # d carry in / out: locals, swapped after each step
        w(f"{gcur[k]} = a.{gcur[k]}")
        w(f"{dc[k]} = a.{dc[k]}")
    for k, shape in enumerate(step.carry_shapes):
        off, size = layout[k]
        w.fill(f"a.{buf[('accc', k)]}", "0.0", _rank(shape))
        w.copy(f"a.{step.g}[:, {off}:{off + size}]", f"a.{buf[('gfinal', k)]}.reshape(B, {size})", 2)
    for j, shape in enumerate(step.y_shapes):
        w.fill(f"a.{buf[('gyzero', j)]}", "0.0", _rank(shape))
    flags = w.buffer(f"{step.out}_live", (T,))
    w.fill(flags, "0.0", 1)
    mark = w.em.kernel("mark_live_steps", kernels.mark_live_steps)
    for j, shape in enumerate(step.y_shapes):
        off, size = layout[nc + j]
        w(f"run_{mark}(a.{step.g}[:, {off}:{off + T * _row(shape)}], {_row(shape)}, {flags})")
    w(f"live = {flags}.copy_to_host()")
    w(f"for tau in range({T - 1}, -1, -1):")
    w.depth += 1
    w(f"if not (tau == {T - 1} or live[tau] != 0):")
    w("    continue")
    for k, shape in enumerate(step.carry_shapes):
        w(f"if tau == {T - 1}:")
        w.depth += 1
        w.copy(f"a.{buf[('gfinal', k)]}", gcur[k], _rank(shape))
        w.depth -= 1
        w("else:")
        w.depth += 1
        w.fill(gcur[k], "0.0", _rank(shape))
        w.depth -= 1
    for j in range(len(step.y_shapes)):
        w(f"gy_t{j} = {step.slots[f'gy{j}'].view}[tau]")
    w(f"lo = max(0, tau - {K - 1})")
    w("for tt in range(tau, lo - 1, -1):")
    w.depth += 1
    local = {("gcur", k): gcur[k] for k in range(nc)}
    local.update({("dc", k): dc[k] for k in range(nc)})
    _call(w, "bwd", local=local)
    _sum_step(w, step)
    for j in range(len(step.y_shapes)):
        w(f"gy_t{j} = a.{buf[('gyzero', j)]}")
    for k in range(nc):
        w(f"{gcur[k]}, {dc[k]} = {dc[k]}, {gcur[k]}")
    w.depth -= 1
    w("if lo == 0:")
    w.depth += 1
    for k, shape in enumerate(step.carry_shapes):
        w.add(gcur[k], f"a.{buf[('accc', k)]}", _rank(shape))
    w.depth -= 1
    w.depth -= 1
    return [f"a.{buf[('accc', k)]}" for k in range(nc)]


def _pack_grads(w, step, d_init):
    """Each loop_grad node's group, in input order, into its packed output."""
    T, nc, nx = step.length, len(step.carry_shapes), len(step.xs)
    for out, emit, members in step.groups:
        off = 0
        for pos in members:
            if pos < nc:
                size = member_size(step, pos, T)
                w.copy(f"{d_init[pos]}.reshape(B, {size})", f"a.{out}[:, {off}:{off + size}]", 2)
            elif pos < nc + nx:
                size = member_size(step, pos, T)
                s = step.slots[step.dx_slots[pos - nc]]
                w.copy(_stack3(s, 0, T), f"cols_as_stack(a.{out}, {off}, {T}, {_row(s.shape)})", 3)
            else:
                k = pos - nc - nx
                g = f"a.{step.buffers[('freeg', k)]}"
                if emit == "batched":
                    size = member_size(step, pos, T)
                    w.copy(f"{g}.reshape(B, {size})", f"a.{out}[:, {off}:{off + size}]", 2)
                else:
                    size = math.prod(step.free_shapes[k])
                    w.copy(f"{g}.reshape({size})", f"a.{out}[{off}:{off + size}]", 1)
            off += size


register_cuda_printer(Recurrence, _recurrence)
