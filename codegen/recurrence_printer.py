"""The host-side schedule of a recurrence step (codegen/lower_loop.py), printed once for every backend.

A ``loop`` step prints: the stacks' views, x copied time-major once, the static and pre
phases (one call each: Wᵀ made contiguous, ``x @ U`` over all T·B rows), then
``for tt in range(T): cell_…(hist[tt], pre[tt], …, hist[tt + 1], …)`` — the carries are
never copied or swapped, each step writes the next row of the history — and the packing
of the node's output row. A ``loop_grad`` step reads those stacks (the forward is not run
again), runs ``cell_grad_…`` for t = T−1 … 0 writing d(carry) into the next row of its own
stack, and then ``cell_post_…`` once over the stacked steps for the weight gradients; with
``truncate=k``, one short sweep per step whose cotangent is not zero.

`RecurrencePrinter` walks that schedule; a backend's printer is a subclass that spells its
primitives — an array's name, a reshaped view, copy/add/fill, a phase call, the test for a
live step — in its own dialect: codegen/emit_loop.py (Numba CPU functions), and
codegen/cuda/recurrence.py (host code launching CUDA kernels).
"""
from __future__ import annotations

import math

from .lower_loop import Recurrence, group_offsets, member_size, packed_layout


def row_size(shape):
    """Elements per batch row of a batched shape (None, d1, d2, …)."""
    return math.prod(d for d in shape[1:])


class RecurrencePrinter:
    """Prints one `Recurrence` step's host code. Subclasses supply the dialect (below the line)."""

    def __init__(self, step: Recurrence):
        self.step = step

    # ---- the schedule (shared) -------------------------------------------------------------
    def print_step(self):
        step = self.step
        self.comment(step.comment)
        for name in step.own_views:
            s = step.slots[name]
            self.line(f"{s.view} = {self.reshape(self.buf(s.buffer), f'{s.depth}, B', s.shape[1:])}")
        if step.forward:
            self.forward()
        if step.kind == "loop":
            self.pack_forward()
        else:
            self.backward()

    def forward(self):
        step = self.step
        for k, x in enumerate(step.xs):
            s = step.slots.get(f"x{k}")
            if s is not None:
                self.time_major(s.view, x, len(s.shape) + 1)
        for k, shape in enumerate(step.carry_shapes):
            self.init_carry(f"{step.slots[f'hist{k}'].view}[0]", step.inits[k], step.init_shapes[k], shape)
        self.call("static_fwd")
        self.call("pre")
        self.line(f"for tt in range({step.length}):")
        self.indent()
        self.call("fwd")
        self.dedent()

    def init_carry(self, dst, init, init_shape, carry_shape):
        try:
            literal = float(init)
        except ValueError:
            literal = None
        if literal is not None:
            self.fill(dst, repr(literal), carry_shape)
        elif tuple(init_shape) == tuple(carry_shape):
            self.copy(dst, self.buf(init), carry_shape)
        else:   # one initial state for every row of the batch
            self.broadcast_row(dst, init, init_shape, carry_shape)

    def stack3(self, s, lo):
        """A stack's steps lo … lo + T − 1 as (T, B, F)."""
        T = self.step.length
        view = s.view if (lo == 0 and s.depth == T) else f"{s.view}[{lo}:{lo + T}]"
        return self.reshape(view, str(T), ("B", row_size(s.shape)))

    def cols(self, name, off, size):
        """Columns off … off + size of a (B, ·) array."""
        return f"{self.buf(name)}[:, {off}:{off + size}]"

    def pack_forward(self):
        step = self.step
        layout, nc, T = packed_layout(step), len(step.carry_shapes), step.length
        for k in range(nc):
            off, size = layout[k]
            self.copy(self.cols(step.out, off, size),
                      self.reshape(f"{step.slots[f'hist{k}'].view}[{T}]", "B", (size,)), (None, size))
        for j, (slot, lo) in enumerate(step.y_slots):
            off, _ = layout[nc + j]
            s = step.slots[slot]
            self.stack_to_cols(step.out, off, self.stack3(s, lo), row_size(s.shape))

    def backward(self):
        step = self.step
        T, nc, layout = step.length, len(step.carry_shapes), packed_layout(step)
        self.call("static_bwd")
        for j, shape in enumerate(step.y_shapes):
            off, _ = layout[nc + j]
            self.cols_to_stack(self.stack3(step.slots[f"gy{j}"], 0), step.g, off, row_size(shape))
        for k, (out, off) in step.free_in_place.items():   # summed straight into the packed row
            shape = step.free_shapes[k]
            if off is None:   # or into the gradient's own buffer (lower_loop._totals_written_in_place)
                self.line(f"{step.buffers[('freeg', k)]} = {self.buf(out)}  # Σ over t, written in place")
                continue
            part = f"{self.buf(out)}[{off}:{off + math.prod(shape)}]"
            self.line(f"{step.buffers[('freeg', k)]} = {self.reshape(part, str(shape[0]), shape[1:])}")
        for k, target in step.free_targets.items():
            if target[0] == "acc":
                self.fill(self.freeg(k), "0.0", step.free_shapes[k])
        if step.truncate is None:
            for k in range(nc):
                off, size = layout[k]
                self.copy(self.reshape(f"{step.slots[f'gc{k}'].view}[{T}]", "B", (size,)),
                          self.cols(step.g, off, size), (None, size))
            self.line(f"for tt in range({T - 1}, -1, -1):")
            self.indent()
            self.call("bwd")
            self.sum_step()
            self.dedent()
            d_init = [f"{step.slots[f'gc{k}'].view}[0]" for k in range(nc)]
        else:
            d_init = self.truncated_sweep(layout)
        self.call("post")
        self.pack_grads(d_init)

    def sum_step(self):
        """After a reverse step: its free-leaf gradients (and, truncated, its stacked values) summed."""
        step = self.step
        for role, shape in step.calls["bwd"].args:
            if role[0] == "acc":
                self.add(self.freeg(role[1]), self.buf(step.buffers[role]), shape)
            elif role[0] == "acc_at":
                self.add(f"{step.slots[role[1]].view}[tt]", self.buf(step.buffers[("scratch", role[1])]), shape)

    def truncated_sweep(self, layout):
        """Truncated BPTT (k steps): what enters at step tau travels back through at most k cells.

        A sweep per tau whose cotangent is not zero (the reference skips zero ones too), so a
        loss on the last state costs k cell gradients, a loss at every step T·k. The carries'
        cotangents in and out are locals swapped after each cell."""
        step = self.step
        T, K, nc, buf = step.length, step.truncate, len(step.carry_shapes), step.buffers
        gcur, dc = [buf[("gcur", k)] for k in range(nc)], [buf[("dc", k)] for k in range(nc)]
        gy_zero = [buf[("gyzero", j)] for j in range(len(step.y_shapes))]
        for role, _ in step.calls["bwd"].args:
            if role[0] == "acc_at":
                self.fill(self.buf(step.slots[role[1]].buffer), "0.0", (None, 1))
        for k in range(nc):
            self.bind_local(gcur[k])
            self.bind_local(dc[k])
        for j, shape in enumerate(step.y_shapes):
            self.fill(self.buf(gy_zero[j]), "0.0", shape)
        for k, shape in enumerate(step.carry_shapes):
            off, size = layout[k]
            self.fill(self.buf(buf[("accc", k)]), "0.0", shape)
            self.copy(self.reshape(self.buf(buf[("gfinal", k)]), "B", (size,)), self.cols(step.g, off, size),
                      (None, size))
        live = " or ".join([f"tau == {T - 1}", *self.live_step_tests(layout)])
        self.line(f"for tau in range({T - 1}, -1, -1):")
        self.indent()
        self.line(f"if not ({live}):")
        self.line("    continue")
        for k, shape in enumerate(step.carry_shapes):
            self.line(f"if tau == {T - 1}:")
            self.indent()
            self.copy(gcur[k], self.buf(buf[("gfinal", k)]), shape)
            self.dedent()
            self.line("else:")
            self.indent()
            self.fill(gcur[k], "0.0", shape)
            self.dedent()
        for j, g in enumerate(gy_zero):
            self.line(f"{g}_t = {step.slots[f'gy{j}'].view}[tau]")
        self.line(f"lo = max(0, tau - {K - 1})")
        self.line("for tt in range(tau, lo - 1, -1):")
        self.indent()
        self.call("bwd", local={*(("gcur", k) for k in range(nc)), *(("dc", k) for k in range(nc))})
        self.sum_step()
        for g in gy_zero:
            self.line(f"{g}_t = {self.buf(g)}")
        for k in range(nc):
            self.line(f"{gcur[k]}, {dc[k]} = {dc[k]}, {gcur[k]}")
        self.dedent()
        self.line("if lo == 0:")
        self.indent()
        for k, shape in enumerate(step.carry_shapes):
            self.add(self.buf(buf[("accc", k)]), gcur[k], shape)
        self.dedent()
        self.dedent()
        return [self.buf(buf[("accc", k)]) for k in range(nc)]

    def freeg(self, k) -> str:
        """The summed gradient of free leaf k: a view of the packed row, or its own buffer."""
        name = self.step.buffers[("freeg", k)]
        return name if k in self.step.free_in_place else self.buf(name)

    def pack_grads(self, d_init):
        """Each loop_grad node's group, in input order, into its packed output (free leaves
        summed in place are there already)."""
        step = self.step
        T, nc, nx = step.length, len(step.carry_shapes), len(step.xs)
        for out, emit, members in step.groups:
            for pos, off in group_offsets(step, emit, members):
                if pos < nc:
                    size = member_size(step, pos, T)
                    self.copy(self.cols(out, off, size), self.reshape(d_init[pos], "B", (size,)), (None, size))
                elif pos < nc + nx:
                    size = member_size(step, pos, T)
                    s = step.slots[step.dx_slots[pos - nc]]
                    self.stack_to_cols(out, off, self.stack3(s, 0), row_size(s.shape))
                elif pos - nc - nx not in step.free_in_place:
                    k = pos - nc - nx
                    g = self.freeg(k)
                    if emit == "batched":
                        size = member_size(step, pos, T)
                        self.copy(self.cols(out, off, size), self.reshape(g, "B", (size,)), (None, size))
                    else:
                        size = math.prod(step.free_shapes[k])
                        self.copy(f"{self.buf(out)}[{off}:{off + size}]", self.reshape(g, str(size), ()), (size,))

    def arg(self, phase, call, role, shape, t, local=()):
        """The text of one argument of a phase call at step ``t``; roles in ``local`` are locals."""
        step, kind, T = self.step, role[0], self.step.length
        if role in local:
            return step.buffers[role]
        if kind == "at":
            s = step.slots[role[1]]
            return f"{s.view}[{t}]" if role[2] == 0 else f"{s.view}[{t} + {role[2]}]"
        if kind == "rows":
            s, off = step.slots[role[1]], role[2]
            src = self.buf(s.buffer) if off == 0 and s.depth == T else f"{s.view}[{off}:{off + T}]"
            return self.reshape(src, f"{T} * B", s.shape[1:])
        if kind == "free":
            return self.buf(step.free[role[1]])
        if kind == "temp":
            b = self.buf(step.buffers[(phase, role[1])])
            return self.reshape(b, f"{T} * B", shape[1:]) if call.rows and shape and shape[0] is None else b
        if kind == "out":
            return self.freeg(role[1])
        if kind == "acc_at":
            return self.buf(step.buffers[("scratch", role[1])])
        if kind == "gyat":
            return f"{step.buffers[('gyzero', role[1])]}_t"
        return self.buf(step.buffers[role])   # static, acc, dc, gcur

    def call_args(self, phase, call, t, local):
        return [self.arg(phase, call, role, shape, t, local) for role, shape in call.args]

    def copy_aliases(self, phase, call, t, local):
        """An argument passed twice is written through its first place: copied to the second."""
        shapes = dict(call.args)
        for dup, first in call.aliases:
            self.copy(self.arg(phase, call, dup, shapes[first], t, local),
                      self.arg(phase, call, first, shapes[first], t, local), shapes[first])

    # ---- the dialect (each backend's printer) ----------------------------------------------
    def line(self, text):
        raise NotImplementedError

    def indent(self):
        raise NotImplementedError

    def dedent(self):
        raise NotImplementedError

    def comment(self, text):
        if text:
            self.line(f"# {text}")

    def buf(self, name) -> str:
        """The text of a buffer the step's function receives (by its name in the schedule)."""
        raise NotImplementedError

    def reshape(self, array, lead, row) -> str:
        """``array`` viewed with shape (lead, *row); ``lead`` is text ("B", "T * B")."""
        raise NotImplementedError

    def copy(self, dst, src, shape):
        raise NotImplementedError

    def add(self, dst, src, shape):
        raise NotImplementedError

    def fill(self, dst, value, shape):
        raise NotImplementedError

    def time_major(self, view, x, rank):
        """x (B, T, …) into its time-major stack ``view`` (T, B, …)."""
        raise NotImplementedError

    def broadcast_row(self, dst, init, init_shape, carry_shape):
        """The one initial state ``init`` into every row of ``dst``."""
        raise NotImplementedError

    def stack_to_cols(self, out, off, stack3, width):
        """A (T, B, F) stack into columns off … off + T·F of ``out``."""
        raise NotImplementedError

    def cols_to_stack(self, stack3, g, off, width):
        raise NotImplementedError

    def bind_local(self, name):
        """Make the buffer ``name`` a local of that name (it is swapped with another)."""
        raise NotImplementedError

    def live_step_tests(self, layout) -> list:
        """Conditions on ``tau``, one true if the cotangent entering at step tau is not all zero."""
        raise NotImplementedError

    def call(self, phase, t="tt", local=()):
        """Call the step's ``phase`` program (if it has one) at step ``t``."""
        raise NotImplementedError
