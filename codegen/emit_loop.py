"""emit_loop: the CPU printer of the recurrence steps (codegen/lower_loop.py).

A ``loop`` step prints: the stacks' views, x copied time-major once, the static and pre
phases (one call each: Wᵀ made contiguous, ``x @ U`` over all T·B rows), then
``for tt in range(T): cell_…(hist[tt], pre[tt], …, hist[tt + 1], …)`` — the carries are
never copied or swapped, each step writes the next row of the history — and the packing
of the node's output row. A ``loop_grad`` step reads those stacks (the forward is not run
again), runs ``cell_grad_…`` for t = T−1 … 0 writing d(carry) into the next row of its own
stack, and then ``cell_post_…`` once over the stacked steps for the weight gradients.
"""
from __future__ import annotations

import math

from .emit_cpu import register_emitter
from .lower_loop import Recurrence, member_size, packed_layout
from .printer import HELPERS, reshaped
from .shared_loops import ANY_NONZERO, array_helper, stack_helper, swap01_helper


def _row(shape):
    return math.prod(d for d in shape[1:])


def _shape_text(lead, row):
    parts = [lead] + [str(d) for d in row]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _helper(w, name):
    w.printer.helpers.add(name)
    return name


def _array_op(w, kind, shape, *args):
    w(f"{_helper(w, array_helper(kind, shape))}({', '.join(args)})")


class _Args:
    """The text of each argument role of a phase call at step ``t``."""

    def __init__(self, step):
        self.step = step

    def rows(self, name, shape, T):
        return reshaped(name, _shape_text(f'{T} * B', shape[1:]))

    def __call__(self, phase, call, role, shape, t):
        step, kind = self.step, role[0]
        if kind == "at":
            s = step.slots[role[1]]
            return f"{s.view}[{t}]" if role[2] == 0 else f"{s.view}[{t} + {role[2]}]"
        if kind == "rows":
            s, off, T = step.slots[role[1]], role[2], step.length
            if off == 0 and s.depth == T:
                return self.rows(s.buffer, s.shape, T)
            return self.rows(f"{s.view}[{off}:{off + T}]", s.shape, T)
        if kind == "free":
            return step.free[role[1]]
        if kind == "temp":
            buf = step.buffers[(phase, role[1])]
            return self.rows(buf, shape, step.length) if call.rows and shape and shape[0] is None else buf
        if kind == "out":
            return step.buffers[("freeg", role[1])]
        if kind == "acc_at":
            return step.buffers[("scratch", role[1])]
        if kind == "gyat":
            return f"{step.buffers[('gyzero', role[1])]}_t"
        return step.buffers[role]   # static, acc, dc, gcur


def _call(w, step, phase, t="tt"):
    call = step.calls.get(phase)
    if call is None:
        return
    HELPERS.setdefault(call.fn, call.source)
    w.printer.helpers.add(call.fn)
    w.printer.helpers |= call.helpers
    args = _Args(step)
    w(f"{call.fn}({', '.join(args(phase, call, role, shape, t) for role, shape in call.args)})")
    shapes = {role: shape for role, shape in call.args}
    for dup, first in call.aliases:
        _array_op(w, "copy", shapes[first], args(phase, call, dup, shapes[first], t),
                  args(phase, call, first, shapes[first], t))


def _emit(step: Recurrence, w):
    w(f"# {step.comment}")
    for name in step.own_views:
        s = step.slots[name]
        w(f"{s.view} = {reshaped(s.buffer, _shape_text(f'{s.depth}, B', s.shape[1:]))}")
    if step.forward:
        _forward(step, w)
    if step.kind == "loop":
        _pack_forward(step, w)
    else:
        _backward(step, w)


def _forward(step, w):
    for k, x in enumerate(step.xs):
        s = step.slots.get(f"x{k}")
        if s is not None:
            rank = 2 + len(s.shape) - 1
            w(f"{_helper(w, swap01_helper(rank))}({s.view}, {x})  # x time-major: x_t is one contiguous block")
    hist = [step.slots[f"hist{k}"] for k in range(len(step.carry_shapes))]
    for k, shape in enumerate(step.carry_shapes):
        _init_carry(w, f"{hist[k].view}[0]", step.inits[k], step.init_shapes[k], shape)
    _call(w, step, "static_fwd")
    _call(w, step, "pre")
    w(f"for tt in range({step.length}):")
    w.indent()
    _call(w, step, "fwd")
    w.dedent()


def _init_carry(w, name, init, init_shape, carry_shape):
    try:
        float(init)
        _array_op(w, "fill", carry_shape, name, init)
        return
    except ValueError:
        pass
    if tuple(init_shape) == tuple(carry_shape):
        _array_op(w, "copy", carry_shape, name, init)
    else:   # one initial state for every row of the batch
        src = f"{init}[0]" if init_shape == (1,) + tuple(carry_shape[1:]) else init
        w("for r in range(B):")
        if len(carry_shape) > 1:
            w.indent()
            _array_op(w, "copy", carry_shape[1:], f"{name}[r]", src)
            w.dedent()
        else:
            w(f"    {name}[r] = {src}")


def _stack3(s, lo, T):
    """A stack's steps lo … lo + T − 1 as (T, B, F)."""
    view = s.view if (lo == 0 and s.depth == T) else f"{s.view}[{lo}:{lo + T}]"
    return reshaped(view, f"({T}, B, {_row(s.shape)})")


def _pack_forward(step, w):
    layout, nc, T = packed_layout(step), len(step.carry_shapes), step.length
    for k in range(nc):
        off, size = layout[k]
        _array_op(w, "copy", (None, size), f"{step.out}[:, {off}:{off + size}]",
                  reshaped(f"{step.slots[f'hist{k}'].view}[{T}]", f"(B, {size})"))
    for j, (slot, lo) in enumerate(step.y_slots):
        off, _ = layout[nc + j]
        w(f"{_helper(w, stack_helper('stack_to_cols'))}({step.out}, {off}, {_stack3(step.slots[slot], lo, T)})")


def _backward(step, w):
    T, nc = step.length, len(step.carry_shapes)
    layout, buf = packed_layout(step), step.buffers
    _call(w, step, "static_bwd")
    for j in range(len(step.y_shapes)):
        off, _ = layout[nc + j]
        w(f"{_helper(w, stack_helper('cols_to_stack'))}({_stack3(step.slots[f'gy{j}'], 0, T)}, {step.g}, {off})")
    for k, target in step.free_targets.items():
        if target[0] == "acc":
            _array_op(w, "fill", step.free_shapes[k], buf[("freeg", k)], "0.0")
    if step.truncate is None:
        for k in range(nc):
            off, size = layout[k]
            _array_op(w, "copy", (None, size), reshaped(f"{step.slots[f'gc{k}'].view}[{T}]", f"(B, {size})"),
                      f"{step.g}[:, {off}:{off + size}]")
        w(f"for tt in range({T - 1}, -1, -1):")
        w.indent()
        _call(w, step, "bwd")
        _sum_step(w, step)
        w.dedent()
        d_init = [f"{step.slots[f'gc{k}'].view}[0]" for k in range(nc)]
    else:
        d_init = _truncated_sweep(w, step, layout)
    _call(w, step, "post")
    _pack_grads(w, step, d_init)


def _sum_step(w, step):
    """After a reverse step: its free-leaf gradients (and, truncated, its stacked values) summed."""
    call = step.calls["bwd"]
    for role, shape in call.args:
        if role[0] == "acc":
            _array_op(w, "add", shape, step.buffers[("freeg", role[1])], step.buffers[role])
        elif role[0] == "acc_at":
            _array_op(w, "add", shape, f"{step.slots[role[1]].view}[tt]", step.buffers[("scratch", role[1])])


def _truncated_sweep(w, step, layout):
    """Truncated BPTT (k steps): what enters at step tau travels back through at most k cells.

    A sweep per tau whose cotangent is not zero (the reference skips zero ones too), so a
    loss on the last state costs k cell gradients, a loss at every step T·k."""
    T, K, nc, buf = step.length, step.truncate, len(step.carry_shapes), step.buffers
    for role, _ in step.calls["bwd"].args:
        if role[0] == "acc_at":
            s = step.slots[role[1]]
            _array_op(w, "fill", (None, 1), s.buffer, "0.0")
    for j, shape in enumerate(step.y_shapes):
        _array_op(w, "fill", shape, buf[("gyzero", j)], "0.0")
    for k, shape in enumerate(step.carry_shapes):
        off, size = layout[k]
        _array_op(w, "fill", shape, buf[("accc", k)], "0.0")
        _array_op(w, "copy", (None, size), reshaped(buf[('gfinal', k)], f"(B, {size})"),
                  f"{step.g}[:, {off}:{off + size}]")
    w(f"for tau in range({T - 1}, -1, -1):")
    w.indent()
    w.printer.helpers.add(ANY_NONZERO)
    gys = [step.slots[f"gy{j}"].view for j in range(len(step.y_shapes))]
    live = " or ".join([f"tau == {T - 1}"] + [f"{ANY_NONZERO}({g}[tau])" for g in gys])
    w(f"if not ({live}):")
    w("    continue")
    for k, shape in enumerate(step.carry_shapes):
        w(f"if tau == {T - 1}:")
        w.indent()
        _array_op(w, "copy", shape, buf[("gcur", k)], buf[("gfinal", k)])
        w.dedent()
        w("else:")
        w.indent()
        _array_op(w, "fill", shape, buf[("gcur", k)], "0.0")
        w.dedent()
    for j, g in enumerate(gys):
        w(f"{buf[('gyzero', j)]}_t = {g}[tau]")
    w(f"lo = max(0, tau - {K - 1})")
    w("for tt in range(tau, lo - 1, -1):")
    w.indent()
    _call(w, step, "bwd")
    _sum_step(w, step)
    for j in range(len(gys)):
        w(f"{buf[('gyzero', j)]}_t = {buf[('gyzero', j)]}")
    for k in range(nc):
        w(f"{buf[('gcur', k)]}, {buf[('dc', k)]} = {buf[('dc', k)]}, {buf[('gcur', k)]}")
    w.dedent()
    w("if lo == 0:")
    w.indent()
    for k, shape in enumerate(step.carry_shapes):
        _array_op(w, "add", shape, buf[("accc", k)], buf[("gcur", k)])
    w.dedent()
    w.dedent()
    return [buf[("accc", k)] for k in range(nc)]


def _pack_grads(w, step, d_init):
    """Each loop_grad node's group, in input order, into its packed output."""
    T, nc, nx = step.length, len(step.carry_shapes), len(step.xs)
    for out, emit, members in step.groups:
        off = 0
        for pos in members:
            if pos < nc:
                size = member_size(step, pos, T)
                _array_op(w, "copy", (None, size), f"{out}[:, {off}:{off + size}]", reshaped(d_init[pos], f"(B, {size})"))
            elif pos < nc + nx:
                size = member_size(step, pos, T)
                s = step.slots[step.dx_slots[pos - nc]]
                w(f"{_helper(w, stack_helper('stack_to_cols'))}({out}, {off}, {_stack3(s, 0, T)})")
            else:
                k = pos - nc - nx
                g = step.buffers[("freeg", k)]
                if emit == "batched":
                    size = member_size(step, pos, T)
                    _array_op(w, "copy", (None, size), f"{out}[:, {off}:{off + size}]", reshaped(g, f"(B, {size})"))
                else:
                    size = math.prod(step.free_shapes[k])
                    _array_op(w, "copy", (size,), f"{out}[{off}:{off + size}]", reshaped(g, f"({size},)"))
            off += size


register_emitter(Recurrence, _emit)
