"""The CUDA emitter: a `ModelSchedule` (codegen.plan.lower) printed as one module of
``@cuda.jit`` kernels plus plain-Python host drivers that launch them.

Only the printing differs from the CPU emitter; the schedule is the same. Per step:

- ``Loop``       one kernel. Threads split the loop indices that every indexed reduction
                 keeps (all indices when the loop has none); the other indices run inside
                 the thread, so a bias gradient Σ_b δ[b, j] needs no atomics — and is split
                 over R threads per column plus a combining kernel (``split``). A loop that
                 reduces to a scalar (the loss) runs as one block and finishes with a
                 shared-memory tree: deterministic, no warp intrinsics.
- ``Scalar``     a one-thread kernel (scalars live on the device as 1-element arrays).
- ``MatMul``     the tiled shared-memory kernel, in its A@B, A@Bᵀ or Aᵀ@B form.
- ``RowSoftmax``, ``SoftmaxCE``: one thread per row.
- ``View``       made once per buffer set by ``bind_<program>`` (no per-step cost).
- ``Fill``, ``Copy``, ``Scatter``, ``Concat``: elementwise kernels over views.
- ``Update``     one kernel over the flat parameter buffer; the per-step scalars (β₁ᵗ …)
                 are computed by the host driver from the step count and passed in.

Drivers take ``a`` (a namespace of device arrays named after the schedule's buffers) and
the batch size ``B``; they never copy between host and device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import re

import sympy

from codegen.emit_cpu import index_text
from codegen.lower import CodegenError
from codegen.printer import HELPERS, KernelPrinter, max_into
from codegen.schedule import (BATCH, BATCH_F, Accumulate, Concat, Copy, Fill, Let, Loop, MatMul,
                              RowSoftmax, Scalar, Scatter, SoftmaxCE, Store, Update, View)

from . import kernels

#: step type -> fn(step, emitter) -> driver lines; for steps other helpers add to the
#: schedule (convolution, pooling and noise: codegen/cuda/conv.py)
CUDA_PRINTERS: dict = {}


#: the schedule's own step types, printed by CudaEmitter itself
BUILTIN_STEPS = (Loop, Scalar, MatMul, RowSoftmax, SoftmaxCE, Fill, Copy, Scatter, Concat, View)


def cuda_can_print(step_type) -> bool:
    return issubclass(step_type, BUILTIN_STEPS) or step_type in CUDA_PRINTERS


def register_cuda_printer(step_type, fn):
    """Print schedule steps of ``step_type`` for CUDA: ``fn(step, emitter)`` returns the
    driver's lines and adds its kernels with ``emitter.kernel(hint, make_source)``."""
    CUDA_PRINTERS[step_type] = fn
    return fn


class CudaPrinter(KernelPrinter):
    """The CPU emitter's printer, but exp and tanh are libdevice's (fast on the GPU already)."""

    def _print_tanh(self, expr):
        return f"math.{type(expr).__name__}({self._print(expr.args[0])})"

    _print_exp = _print_tanh


def device_helper(source: str) -> str:
    """A CPU helper (``@njit`` function from codegen.printer.HELPERS) as a CUDA device function."""
    return re.sub(r"^@njit\(.*\)\s*$", "@cuda.jit(device=True)", source.strip(), flags=re.M) + "\n"


#: the start value of a register reduction
IDENTITY = {"sum": "F(0)", "max": "F(-math.inf)"}


@dataclass
class LoopPlan:
    """How one fused loop maps onto threads (see `CudaEmitter._plan_loop`)."""

    extent: dict          # index symbol -> its extent as text ("B" or a literal)
    local: set            # the loop's own symbols (indices and lets)
    par_idx: list         # indices the threads split
    serial: list          # indices each thread loops over
    reg_targets: dict     # indexed reduction target -> register name
    prefill: list         # (target, op) of reductions that need their buffer filled first
    sregs: dict           # scalar reduction target name -> (register, op)
    indexed_accs: list
    one_block: bool       # scalar reductions: one block, reduced by a tree
    ptotal: int
    split: int


class CudaEmitter:
    """Collects kernels (deduplicated by source) and driver functions for one module."""

    def __init__(self, dtype="float64", split=1):
        self.dtype = dtype
        self.split = split    # row groups of a column reduction over the batch (see _loop)
        self.kernels: list[str] = []
        self.by_body: dict[str, str] = {}
        self.drivers: list[str] = []
        self.ranks: dict[str, int] = {}   # the current program's array ranks
        self.scalars: set[str] = set()    # the current program's 1-element device scalars
        self.program_scalars: dict[str, set] = {}   # program name -> its scalars
        self.extras: dict[str, tuple] = {}           # the current program's own buffers: name -> shape
        self.program_extras: dict[str, dict] = {}    # program name -> its own buffers
        self.cells: dict[str, object] = {}           # recurrence cell programs (their own namespaces)
        self.cell_rows: dict[str, int] = {}          # cell program -> T where it runs over T·B rows
        self.count = 0
        self.helpers: set[str] = set()    # codegen.printer.HELPERS the printed code calls
        self._printers: list = []

    # -- kernels -----------------------------------------------------------------------
    def kernel(self, hint, make):
        """A kernel from ``make(name) -> source``; an identical kernel is reused."""
        probe = make("KERNEL")
        if probe in self.by_body:
            return self.by_body[probe]
        name = f"k{self.count}_{hint}"
        self.count += 1
        self.kernels.append(make(name))
        self.by_body[probe] = name
        return name

    def printer(self, dtype=None):
        p = CudaPrinter(dtype or self.dtype)
        self._printers.append(p)
        return p

    # -- programs ----------------------------------------------------------------------
    def program(self, prog, args_ranks: dict):
        """Driver ``<prog.name>(a, B)`` and ``bind_<prog.name>(a)`` (its views).

        Re-entrant: a step may print another program (a recurrence's cell) meanwhile."""
        saved = self.ranks, self.scalars, self.extras
        self.ranks = dict(args_ranks)
        self.ranks.update({a.name: len(a.shape) for a in prog.args})
        self.scalars, self.extras = set(), {}
        try:
            self._program(prog)
            self.program_scalars[prog.name] = self.scalars
            self.program_extras[prog.name] = self.extras
        finally:
            self.ranks, self.scalars, self.extras = saved

    def all_scalars(self, programs) -> set:
        return set().union(*(self.program_scalars.get(p.name, set()) for p in programs))

    def all_extras(self, programs) -> dict:
        """The buffers the drivers of ``programs`` allocate for themselves: name -> shape."""
        out = {}
        for p in programs:
            out.update(self.program_extras.get(p.name, {}))
        return out

    def _program(self, prog):
        body, binds, run = [], [], []
        for step in prog.steps:
            if isinstance(step, View):
                binds.append(self._view(step))
            elif isinstance(step, Scalar):
                run.append(step)      # consecutive scalars: one single-thread kernel
            else:
                if run:
                    body += self._scalars(run)
                    run = []
                body += self._step(step, binds)
        if run:
            body += self._scalars(run)
        lines = [f"def {prog.name}(a, B):", f'    """{prog.doc or prog.name}"""', "    nB = F(B)"]
        lines += ["    " + line for line in body]
        if prog.returns is not None:
            self.scalars.add(str(prog.returns))
            lines.append(f"    return a.{prog.returns}")
        self.drivers.append("\n".join(lines) + "\n")
        bind = [f"def bind_{prog.name}(a):", f'    """The views {prog.name} reads and writes."""']
        bind += ["    " + line for line in binds] or ["    pass"]
        self.drivers.append("\n".join(bind) + "\n")

    def update(self, upd: Update):
        """Driver ``update(a, t, hyper)`` for the optimizer step over a.flat_params."""
        p = self.printer()
        state = list(upd.state)
        consts = [str(s) for s, _ in upd.hoisted]
        args = ["w", "g", *state, *consts, *upd.hyper, "t"]
        rename = {sympy.Symbol(s): sympy.Symbol(s + "_") for s in ("w", "g", *state)}
        loop = ["w_ = w[i]", "g_ = g[i]", *[f"{s}_ = {s}[i]" for s in state]]
        for target, expr in upd.rules:
            loop.append(f"{target}_ = {p.doprint(sympy.sympify(expr).xreplace(rename))}")
        loop += ["w[i] = w_", *[f"{s}[i] = {s}_" for s in state]]

        def make(name):
            body = "\n".join("        " + line for line in loop)
            return (f"@cuda.jit(cache=CACHE)\ndef {name}({', '.join(args)}):\n"
                    f'    """The optimizer step, one element of the flat parameters per thread."""\n'
                    f"    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):\n{body}\n")
        kname = self.kernel("update", make)
        host = CudaPrinter("float64")  # host-side Python: plain floats, math.exp
        lines = ["def update(a, t, hyper):", '    """One optimizer step: a.flat_params -= … (in place)."""']
        for h in upd.hyper:
            lines.append(f"    {h} = hyper[{h!r}]")
        for sym, expr in upd.hoisted:
            lines.append(f"    {sym} = F({host.doprint(expr)})")
        call = ", ".join(["a.flat_params", "a.flat_grad", *[f"a.state_{s}" for s in state],
                          *consts, *[f"F({h})" for h in upd.hyper], "t"])
        lines.append(f"    {kname}[blocks_for(a.flat_params.size), THREADS]({call})")
        self.drivers.append("\n".join(lines) + "\n")

    def source_parts(self):
        for p in self._printers:
            self.helpers |= p.helpers
        unknown = self.helpers - set(HELPERS)
        if unknown:
            raise CodegenError(f"codegen (cuda): the printed code calls unknown helpers {sorted(unknown)}")
        return [device_helper(HELPERS[h]) for h in sorted(self.helpers)] + self.kernels + self.drivers

    # -- steps -------------------------------------------------------------------------
    def _step(self, step, binds):
        comment = getattr(step, "comment", "")
        head = [f"# {comment}"] if comment else []
        if isinstance(step, Loop):
            return head + self._loop(step)
        if isinstance(step, MatMul):
            form = ("t" if step.trans_a else "n") + ("t" if step.trans_b else "n")
            k = self.kernel(f"matmul_{form}", lambda n: kernels.matmul(n, step.trans_a, step.trans_b))
            return head + [f"run_{k}(a.{step.a}, a.{step.b}, a.{step.out})"]
        if isinstance(step, RowSoftmax):
            k = self.kernel("log_softmax" if step.log else "softmax", lambda n: kernels.row_softmax(n, step.log))
            return head + [f"run_{k}({self._rows(step.x)}, {self._rows(step.out)})"]
        if isinstance(step, SoftmaxCE):
            probs = step.probs is not None
            k = self.kernel("softmax_ce", lambda n: kernels.softmax_ce_rows(n, probs))
            loss = f"a.{step.loss}" if self.ranks.get(step.loss, 1) == 1 else f"a.{step.loss}.reshape(a.{step.loss}.size)"
            args = [self._rows(step.logits), self._rows(step.targets), loss]
            args += [self._rows(step.probs)] if probs else []
            return head + [f"run_{k}({', '.join(args)})"]
        if isinstance(step, Fill):
            return head + [self._fill(step.out, step.value)]
        if isinstance(step, Copy):
            # out (contiguous) seen with src's shape: a strided view made contiguous (reshape)
            rank = self.ranks.get(step.src, self.ranks.get(step.out, 1))
            k = self.kernel(f"copy{rank}d", lambda n: kernels.copy(n, rank))
            return head + [f"run_{k}(a.{step.src}, a.{step.out}.reshape(a.{step.src}.shape))"]
        if isinstance(step, Scatter):
            view = f"{step.out}__at"
            binds.append(f"a.{view} = a.{step.out}[{index_text(step.spec)}]")
            self.ranks[view] = sum(1 for k in step.spec if k[0] == "s")
            return head + [self._fill(step.out, 0.0), self._copy(view, step.g)]
        if isinstance(step, Concat):
            out, start, lines = step.out, "0", [*head]
            rank = self.ranks.get(out)
            for n, x in enumerate(step.inputs):
                view = f"{out}__part{n}"
                end = f"{start} + a.{x}.shape[{step.axis}]"
                binds.append(f"a.{view} = a.{out}[{', '.join([':'] * step.axis)}{', ' if step.axis else ''}"
                             f"{start}:{end}]")
                start = end   # the next part starts where this one ends
                self.ranks[view] = rank if rank is not None else self.ranks.get(x, 1)
                lines.append(self._copy(view, x))
            return lines
        fn = CUDA_PRINTERS.get(type(step))
        if fn is not None:
            return fn(step, self)
        raise CodegenError(f"codegen (cuda): no CUDA printer for schedule step {type(step).__name__}; "
                           "register one with codegen.cuda.emit.register_cuda_printer")

    def _rows(self, name):
        """An array as 2-d rows over its last axis (softmax works row by row)."""
        if self.ranks.get(name, 2) == 2:
            return f"a.{name}"
        return f"rows(a.{name})"

    def _view(self, step: View):
        src = f"a.{step.source}"
        if step.kind == "alias":
            code, rank = src, self.ranks.get(step.source)
        elif step.kind == "transpose":
            axes = tuple(step.args)
            rank = len(axes)
            code = f"permuted({src}, {axes})"
        elif step.kind == "reshape":
            dims = ", ".join(f"a.{step.source}.shape[0]" if d is None else str(d) for d in step.args)
            code, rank = f"{src}.reshape({dims}{',' if len(step.args) == 1 else ''})", len(step.args)
        elif step.kind == "index":
            code, rank = f"{src}[{index_text(step.args)}]", sum(1 for k in step.args if k[0] == "s")
        else:
            raise CodegenError(f"codegen (cuda): unknown view kind {step.kind!r}")
        self.ranks[step.name] = rank
        return f"a.{step.name} = {code}"

    def _fill(self, out, value):
        rank = self.ranks.get(out, 1)
        k = self.kernel(f"fill{rank}d", lambda n: kernels.fill(n, rank))
        value = float(value)
        text = repr(value) if math.isfinite(value) else ("-math.inf" if value < 0 else "math.inf")
        return f"run_{k}(a.{out}, F({text}))"

    def _copy(self, out, src):
        rank = self.ranks.get(out, 1)
        k = self.kernel(f"copy{rank}d", lambda n: kernels.copy(n, rank))
        return f"run_{k}(a.{src}, a.{out})"

    def _scalars(self, steps):
        """Scalar steps (1-element device arrays) computed in order by one thread."""
        args, lines, comments = set(), [], []
        for step in steps:
            expr, arrays, scalars = self._device_expr(step.expr, set())
            self.scalars.add(str(step.name))
            args |= arrays | scalars | {str(step.name)}
            lines.append(f"        {step.name}[0] = {self.printer().doprint(expr)}")
            if step.comment:
                comments.append(f"# {step.comment}")
        args = sorted(args)

        def make(name):
            return (f"@cuda.jit(cache=CACHE)\ndef {name}({', '.join(args + ['B', 'nB'])}):\n"
                    f"    if cuda.grid(1) == 0:\n" + "\n".join(lines) + "\n")
        k = self.kernel("scalars_" + "_".join(str(s.name) for s in steps)[:40], make)
        return comments + [f"{k}[1, 1]({', '.join(f'a.{x}' for x in args)}, B, nB)"]

    def _device_expr(self, expr, local):
        """Scalars (1-element device arrays) read as ``s[0]``; returns (expr, arrays, scalars)."""
        arrays = {str(i.base) for i in expr.atoms(sympy.Indexed)}
        scalars = set()
        subs = {}
        for s in expr.free_symbols:
            if isinstance(s, sympy.Symbol) and s not in local and s not in (BATCH, BATCH_F) \
                    and not isinstance(s, sympy.Indexed) and str(s) not in arrays:
                scalars.add(str(s))
                subs[s] = sympy.Indexed(sympy.IndexedBase(str(s)), 0)
        # free_symbols of an Indexed include its base label and indices: drop those
        scalars -= arrays
        self.scalars |= scalars
        return (expr.xreplace(subs) if subs else expr), arrays, scalars

    def _plan_loop(self, loop: Loop) -> "LoopPlan":
        """Which indices threads split, which reductions live in registers, and the split."""
        indices = [sympy.Symbol(str(i)) for i in loop.indices]
        extent = {i: ("B" if e == BATCH else str(int(e))) for i, e in zip(indices, loop.extents)}
        lets = {b.name for b in loop.body if isinstance(b, Let)}
        accs = [b for b in loop.body if isinstance(b, Accumulate)]
        indexed_accs = [b for b in accs if isinstance(b.target, sympy.Indexed)]
        scalar_accs = [b for b in accs if not isinstance(b.target, sympy.Indexed)]
        # threads split the indices every indexed reduction keeps
        par = set(indices)
        for b in indexed_accs:
            par &= {s for s in b.target.indices if s in set(indices)}
        par_idx = [i for i in indices if i in par]
        serial = [i for i in indices if i not in par]
        reg_targets = {}   # target -> register name (the target's indices are exactly par)
        prefill = []
        for b in indexed_accs:
            kept = {s for s in b.target.indices if isinstance(s, sympy.Symbol)}
            if kept == par and b.target not in reg_targets:
                reg_targets[b.target] = f"acc{len(reg_targets)}"
            elif kept != par and b.target not in prefill:
                prefill.append((b.target, b.op))
        sregs = {}
        for b in scalar_accs:
            sregs.setdefault(str(b.target), (f"sacc{len(sregs)}", b.op))
        self.scalars |= set(sregs)
        # A reduction over the batch kept per column (a bias gradient: Σ_b δ[b, j]) gives one
        # thread per column only; with ``split`` R > 1, R threads share each column, each
        # summing every R-th row into its own slot of a scratch array, and a second kernel
        # adds the R partial sums in a fixed order (deterministic, no atomics).
        ptotal = math.prod(int(extent[i]) for i in par_idx) if all(extent[i] != "B" for i in par_idx) else 0
        split = self.split if (self.split > 1 and reg_targets and not sregs and not prefill and par_idx
                               and ptotal and serial and extent[serial[0]] == "B") else 1
        return LoopPlan(extent, set(indices) | lets, par_idx, serial, reg_targets, prefill, sregs, indexed_accs,
                        bool(scalar_accs), ptotal, split)

    def _loop_lines(self, loop: Loop, plan: "LoopPlan", pr):
        """The per-thread body: register inits, the serial loops over the body, the stores."""
        lines = [f"{reg} = {IDENTITY[next(b.op for b in plan.indexed_accs if b.target == t)]}"
                 for t, reg in plan.reg_targets.items()]
        inner = []
        for b in loop.body:
            if isinstance(b, Let):
                inner.append(f"{b.name} = {pr(b.expr)}")
            elif isinstance(b, Store):
                inner.append(f"{pr(b.target)} = {pr(b.expr)}")
            elif isinstance(b, Accumulate):
                value = pr(b.expr)
                if isinstance(b.target, sympy.Indexed) and b.target in plan.reg_targets:
                    dest = plan.reg_targets[b.target]
                elif isinstance(b.target, sympy.Indexed):
                    dest = pr(b.target)
                else:
                    dest = plan.sregs[str(b.target)][0]
                inner.append(f"{dest} += {value}" if b.op == "sum" else max_into(dest, value))
        depth = 0
        for n, s in enumerate(plan.serial):
            first = n == 0 and plan.split > 1
            rng = f"range(rr, {plan.extent[s]}, {plan.split})" if first else f"range({plan.extent[s]})"
            lines.append("    " * depth + f"for {s} in {rng}:")
            depth += 1
        lines += ["    " * depth + line for line in inner]
        parts = {}
        for target, reg in plan.reg_targets.items():
            if plan.split > 1:
                parts[target] = f"part{len(self.extras)}_{reg}"
                self.extras[parts[target]] = (plan.split, plan.ptotal)
                lines.append(f"{parts[target]}[rr, pf] = {reg}")
            else:
                lines.append(f"{pr(target)} = {reg}")
        return lines, parts

    def _loop(self, loop: Loop):
        p = self.printer()
        plan = self._plan_loop(loop)
        arrays, scalars = set(), set()

        def pr(e):
            e2, arr, sc = self._device_expr(e, plan.local)
            arrays.update(arr)
            scalars.update(sc)
            return p.doprint(e2)

        lines, parts = self._loop_lines(loop, plan, pr)
        args_arrays = sorted(arrays | scalars | set(plan.sregs) | set(parts.values()))
        sig = args_arrays + ["B", "nB"]
        body = [f"{reg} = {IDENTITY[op]}" for reg, op in plan.sregs.values()]
        total = " * ".join(plan.extent[i] for i in plan.par_idx) or "1"
        if plan.split > 1:
            total = f"{plan.ptotal} * {plan.split}"
            body.append(f"for flat in range(cuda.grid(1), {total}, cuda.gridsize(1)):")
            body.append(f"    pf = flat % {plan.ptotal}")
            body.append(f"    rr = flat // {plan.ptotal}")
            unravel = self._unravel(plan.par_idx, plan.extent, "pf")
        else:
            body.append(f"for flat in range(cuda.grid(1), {total}, cuda.gridsize(1)):")
            unravel = self._unravel(plan.par_idx, plan.extent, "flat")
        body += ["    " + line for line in unravel + lines]
        if plan.sregs:
            body += self._tree(plan.sregs)
        comment = loop.comment.replace('"', "'")

        def make(name):
            src = [f"@cuda.jit(cache=CACHE)", f"def {name}({', '.join(sig)}):"]
            if comment:
                src.append(f'    """{comment}"""')
            src += ["    " + line for line in body]
            return "\n".join(src) + "\n"
        k = self.kernel("loop", make)
        out = [self._fill(str(target.base), 0.0 if op == "sum" else -math.inf) for target, op in plan.prefill]
        grid = "1" if plan.one_block else f"blocks_for({total})"
        out.append(f"{k}[{grid}, THREADS]({', '.join(f'a.{x}' for x in args_arrays)}, B, nB)")
        if parts:
            out.append(self._combine(parts, plan.reg_targets, plan.indexed_accs, plan.par_idx, plan.extent,
                                     plan.ptotal, plan.split, pr))
        return out

    def _combine(self, parts, reg_targets, indexed_accs, par_idx, extent, ptotal, split, pr):
        """The second kernel of a split reduction: each column adds its R partial sums."""
        ops = {t: next(b.op for b in indexed_accs if b.target == t) for t in reg_targets}
        body = [f"for pf in range(cuda.grid(1), {ptotal}, cuda.gridsize(1)):"]
        body += ["    " + line for line in self._unravel(par_idx, extent, "pf")]
        names = set(parts.values())
        for target, part in parts.items():
            body.append(f"    acc = {part}[0, pf]")
            body.append(f"    for rr in range(1, {split}):")
            body.append(f"        {'acc += ' + part + '[rr, pf]' if ops[target] == 'sum' else max_into('acc', part + '[rr, pf]')}")
            body.append(f"    {pr(target)} = acc")
            names.add(str(target.base))
        args = sorted(names)

        def make(name):
            src = [f"@cuda.jit(cache=CACHE)", f"def {name}({', '.join(args)}):",
                   f'    """The {split} partial sums of each column, added in order."""']
            return "\n".join(src + ["    " + line for line in body]) + "\n"
        k = self.kernel("combine", make)
        return f"{k}[blocks_for({ptotal}), THREADS]({', '.join(f'a.{x}' for x in args)})"

    @staticmethod
    def _unravel(par_idx, extent, flat):
        return kernels.unravel(par_idx, [extent[i] for i in par_idx], flat)

    @staticmethod
    def _tree(sregs):
        """Shared-memory tree over one block's threads for each scalar accumulator."""
        lines = ["t = cuda.threadIdx.x"]
        for reg, op in sregs.values():
            lines.append(f"{reg}_part = cuda.shared.array(THREADS, dtype=F)")
            lines.append(f"{reg}_part[t] = {reg}")
        lines.append("cuda.syncthreads()")
        lines.append("s = THREADS // 2")
        lines.append("while s > 0:")
        lines.append("    if t < s:")
        for reg, op in sregs.values():
            if op == "sum":
                lines.append(f"        {reg}_part[t] += {reg}_part[t + s]")
            else:
                lines.append(f"        {max_into(f'{reg}_part[t]', f'{reg}_part[t + s]')}")
        lines.append("    cuda.syncthreads()")
        lines.append("    s //= 2")
        lines.append("if t == 0:")
        for target, (reg, _) in sregs.items():
            lines.append(f"    {target}[0] = {reg}_part[0]")
        return lines
