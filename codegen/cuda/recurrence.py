"""The CUDA dialect of the recurrence printer (codegen/recurrence_printer.py).

The same schedule as the CPU: each phase's program (the same `Program` the CPU compiles
into one @njit function) is printed once as a CUDA driver ``cell_…(c, B)`` working on its
own namespace ``c``. The host loop binds the phase's arguments — views of the time-major
stacks at step t (``hist[tt]``, ``pre[tt]``) or all their T·B rows — into ``c`` and
launches it: x_t @ U for every t before the loop (one launch over T·B rows), the step T
times writing the next row of the carry history, the BPTT step T times reading the stashed
forward values (nothing recomputed), and the weight gradients once over the stacked steps
after it. Buffers live in the driver's namespace ``a``; copies and sums are kernels made
once per rank. Nothing crosses between host and device but the truncated sweep's T flags.
"""
from __future__ import annotations

from codegen.lower_loop import Recurrence
from codegen.recurrence_printer import RecurrencePrinter, row_size

from . import kernels
from .emit import register_cuda_printer


def _rank(shape):
    return max(1, len(shape))


class CudaRecurrencePrinter(RecurrencePrinter):
    """Collects the host lines of one step for the module's driver (``em``: the CUDA emitter)."""

    def __init__(self, step, em):
        super().__init__(step)
        self.em, self.lines, self.depth = em, [], 0

    def line(self, text):
        self.lines.append("    " * self.depth + text)

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def buf(self, name):
        return f"a.{name}"

    def reshape(self, array, lead, row):
        return f"{array}.reshape({', '.join([lead] + [str(d) for d in row])})"

    def _launch(self, kind, make, shape, *args):
        k = self.em.kernel(f"{kind}{_rank(shape)}d", lambda n: make(n, _rank(shape)))
        self.line(f"run_{k}({', '.join(args)})")

    def copy(self, dst, src, shape):
        self._launch("copy", kernels.copy, shape, src, dst)

    def add(self, dst, src, shape):
        self._launch("add", kernels.add_into, shape, src, dst)

    def fill(self, dst, value, shape):
        self._launch("fill", kernels.fill, shape, dst, f"F({value})")

    def time_major(self, view, x, rank):
        self.line("# x time-major: each x_t one contiguous block")
        self.copy(view, f"permuted(a.{x}, {(1, 0) + tuple(range(2, rank))})", (None,) * rank)

    def broadcast_row(self, dst, init, init_shape, carry_shape):
        size = row_size(carry_shape)
        k = self.em.kernel("repeat_row", kernels.repeat_row)
        self.line(f"run_{k}(a.{init}.reshape(1, {size}), {dst}.reshape(B, {size}))")

    def stack_to_cols(self, out, off, stack3, width):
        self.copy(f"cols_as_stack(a.{out}, {off}, {self.step.length}, {width})", stack3, (None,) * 3)

    def cols_to_stack(self, stack3, g, off, width):
        self.copy(stack3, f"cols_as_stack(a.{g}, {off}, {self.step.length}, {width})", (None,) * 3)

    def bind_local(self, name):
        self.line(f"{name} = a.{name}")

    def live_step_tests(self, layout):
        """Which steps are live is found on the device in one pass and read back once (T flags)."""
        step = self.step
        T, nc = step.length, len(step.carry_shapes)
        flags = f"{step.out}_live"
        self.em.extras.setdefault(flags, (T,))
        self.line(f"{flags} = a.{flags}")
        self.fill(flags, "0.0", (T,))
        mark = self.em.kernel("mark_live_steps", kernels.mark_live_steps)
        for j, shape in enumerate(step.y_shapes):
            off, _ = layout[nc + j]
            self.line(f"run_{mark}(a.{step.g}[:, {off}:{off + T * row_size(shape)}], {row_size(shape)}, {flags})")
        self.line(f"live = {flags}.copy_to_host()")
        return ["live[tau] != 0"]

    def call(self, phase, t="tt", local=()):
        step = self.step
        call = step.calls.get(phase)
        if call is None:
            return
        if call.fn not in self.em.cells:
            self.em.cells[call.fn] = call.program
            if call.rows:
                self.em.cell_rows[call.fn] = step.length
            self.em.program(call.program, {})
        c = f"c_{call.fn}"
        self.line(f"{c} = a.cell_ns_{call.fn}")
        for buf, text in zip(call.program.args, self.call_args(phase, call, t, local)):
            self.line(f"{c}.{buf.name} = {text}")
        self.line(f"bind_{call.fn}({c})")
        self.line(f"{call.fn}({c}, {step.length} * B)" if call.rows else f"{call.fn}({c}, B)")
        self.copy_aliases(phase, call, t, local)


def _recurrence(step: Recurrence, em):
    printer = CudaRecurrencePrinter(step, em)
    printer.print_step()
    return printer.lines


register_cuda_printer(Recurrence, _recurrence)
