"""emit_loop: the CPU dialect of the recurrence printer (codegen/recurrence_printer.py).

The step's host code is part of the module's @njit functions: buffers are their arguments,
views are the `view` intrinsic, copies and sums are small @njit helpers made once per rank
(codegen/shared_loops.py), and each phase program is an @njit cell called with its views.
"""
from __future__ import annotations

from .emit_cpu import register_emitter
from .lower_loop import Recurrence
from .printer import HELPERS, reshaped
from .recurrence_printer import RecurrencePrinter
from .shared_loops import ANY_NONZERO, array_helper, stack_helper, swap01_helper


class CpuRecurrencePrinter(RecurrencePrinter):
    """Prints into the module's `Writer` ``w``; helpers it calls join the module."""

    def __init__(self, step, w):
        super().__init__(step)
        self.w = w

    def line(self, text):
        self.w(text)

    def indent(self):
        self.w.indent()

    def dedent(self):
        self.w.dedent()

    def comment(self, text):
        self.w(f"# {text}")

    def helper(self, name):
        self.w.printer.helpers.add(name)
        return name

    def buf(self, name):
        return name

    def reshape(self, array, lead, row):
        parts = [lead] + [str(d) for d in row]
        return reshaped(array, "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")")

    def _array_op(self, kind, shape, *args):
        self.w(f"{self.helper(array_helper(kind, shape))}({', '.join(args)})")

    def copy(self, dst, src, shape):
        self._array_op("copy", shape, dst, src)

    def add(self, dst, src, shape):
        self._array_op("add", shape, dst, src)

    def fill(self, dst, value, shape):
        self._array_op("fill", shape, dst, value)

    def time_major(self, view, x, rank):
        self.w(f"{self.helper(swap01_helper(rank))}({view}, {x})  # x time-major: x_t is one contiguous block")

    def broadcast_row(self, dst, init, init_shape, carry_shape):
        # a row (1, *S) and a scalar parameter () (stored as one element) are read at [0]
        src = f"{init}[0]" if tuple(init_shape) in ((), (1,) + tuple(carry_shape[1:])) else init
        self.w("for r in range(B):")
        if len(carry_shape) > 1:
            self.w.indent()
            self.copy(f"{dst}[r]", src, carry_shape[1:])
            self.w.dedent()
        else:
            self.w(f"    {dst}[r] = {src}")

    def stack_to_cols(self, out, off, stack3, width):
        self.w(f"{self.helper(stack_helper('stack_to_cols'))}({out}, {off}, {stack3})")

    def cols_to_stack(self, stack3, g, off, width):
        self.w(f"{self.helper(stack_helper('cols_to_stack'))}({stack3}, {g}, {off})")

    def bind_local(self, name):
        pass   # the buffers are the function's arguments: already locals

    def live_step_tests(self, layout):
        gys = [self.step.slots[f"gy{j}"].view for j in range(len(self.step.y_shapes))]
        return [f"{self.helper(ANY_NONZERO)}({g}[tau])" for g in gys]

    def call(self, phase, t="tt", local=()):
        call = self.step.calls.get(phase)
        if call is None:
            return
        HELPERS.setdefault(call.fn, call.source)
        self.w.printer.helpers.add(call.fn)
        self.w.printer.helpers |= call.helpers
        self.w(f"{call.fn}({', '.join(self.call_args(phase, call, t, local))})")
        self.copy_aliases(phase, call, t, local)


def _emit(step: Recurrence, w):
    CpuRecurrencePrinter(step, w).print_step()


register_emitter(Recurrence, _emit)
