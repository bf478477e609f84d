"""emit_cpu: a `ModelSchedule` → one readable Python module of Numba ``@njit`` functions.

Functions (all ``@njit(cache=True, fastmath=FASTMATH, error_model='numpy')``):

    forward(inputs, params, work)          the model's output into its buffer in ``work``
    evaluate(inputs, targets, params, work)  the loss of a batch, and the output
    grad_step(inputs, params, grads, work) loss; gradients into the d_* views
    apply_update(flat_params, flat_grad, state_*, step, hyper)
    train_step(... grad_step's args, flat_params, flat_grad, state_*, step, hyper)
    train_epoch(data arrays, order, batch_size, ... train_step's args but the batched inputs)

Every array is an argument (the caller preallocates temporaries per batch size, in one
workspace array each function carves them from: codegen/workspace.py; a short last batch
uses the leading rows of the same buffers), so nothing is a global and Numba's
``cache=True`` works. Each step type of the schedule has one printer here;
`register_emitter` adds printers for step types other helpers define.
"""
from __future__ import annotations

import sympy

from graphnn.ops.structure import numpy_slice

from . import schedule as S
from .fuse_update import GemmUpdate
from .nest_sharing import CENSUS, identity_copy, nest_helper
from .outline import outline_body, should_outline
from .printer import HELPERS, INDENT, INTRINSICS, Writer, jit_settings, max_into, reshaped
from .lowerings import contiguous_index
from .shared_loops import array_helper, shareable_nest, small_matmul, stored_update
from .workspace import Carving


EMITTERS: dict = {}


def register_emitter(step_type, fn, *, cpu_only=False):
    """Print steps of ``step_type``: ``fn(step, out: Writer)`` appends source lines.
    ``cpu_only``: a step only a CPU rewrite (`register_rewrite`) makes, never the shared
    schedule, so the CUDA printer needs none."""
    EMITTERS[step_type] = fn
    if cpu_only:
        CPU_ONLY_STEPS.add(step_type)
    return fn


#: step types made by CPU-only rewrites (a fused block), not by the shared schedule
CPU_ONLY_STEPS: set = set()


#: CPU-only rewrites of a program's steps before printing, ``fn(prog, steps) -> steps`` (fusions)
REWRITES: list = []


def register_rewrite(fn):
    REWRITES.append(fn)
    return fn


def _dim(d) -> str:
    return "B" if d is None or d == "B" or d == S.BATCH else str(d)


def _shape(shape) -> str:
    dims = [_dim(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


# -- step printers ---------------------------------------------------------------------

def _loop(step: S.Loop, w: Writer):
    copied = identity_copy(step)
    if copied is not None:   # one call of the stored copy kernel: nothing to compile here
        dst, src = copied
        name = array_helper("copy", (None,) * len(step.indices))
        w.printer.helpers.add(name)
        if step.comment:
            w(f"# {step.comment}")
        return w(f"{name}({dst}, {src})")
    if shareable_nest(step) or CENSUS.shares(step, w, _loop_inline):
        return _outlined_loop(step, w)
    _loop_inline(step, w)


def _outlined_loop(step: S.Loop, w: Writer):
    name, args = nest_helper(step, w, _loop_inline)
    args = CENSUS.one_layout(name, args, w.strided)
    w.printer.helpers.add(name)
    if step.comment:
        w(f"# {step.comment}")
    w(f"{name}({', '.join(args)})")


def _loop_inline(step: S.Loop, w: Writer):
    if not step.indices and not step.accumulators():
        for item in step.body:   # a scalar store: out[0] = value
            w(f"{w.expr(item.target)} = {w.expr(item.expr)}")
        return
    if step.comment:
        w(f"# {step.comment}")
    scalar_accs = []
    for acc in step.accumulators():
        init = w.num(float("-inf") if acc.op == "max" else 0.0)
        if isinstance(acc.target, sympy.Indexed):
            _fill_loop(w, str(acc.target.base), len(acc.target.indices), init)
        else:
            scalar_accs.append(acc.target)
            w(f"{acc.target}_acc = {'-np.inf' if acc.op == 'max' else '0.0'}  # accumulated in float64")
    for idx, ext in zip(step.indices, step.extents):
        w(f"for {idx} in range({_dim(ext)}):")
        w.indent()
    for item in step.body:
        if isinstance(item, S.Let):
            w(f"{item.name} = {w.expr(item.expr)}")
        elif isinstance(item, S.Store):
            w(f"{w.expr(item.target)} = {w.expr(item.expr)}")
        elif isinstance(item, S.Accumulate):
            target = w.expr(item.target) if isinstance(item.target, sympy.Indexed) else f"{item.target}_acc"
            if item.op == "sum":
                w(f"{target} += {w.expr(item.expr)}")
            else:
                w(max_into(target, w.expr(item.expr)))
    w.dedent(len(step.indices))
    for name in scalar_accs:
        w(f"{name} = {_cast(w, f'{name}_acc')}")


def _fill_loop(w, name, ndim, value):
    """name[...] = value as plain loops (a slice assignment costs Numba much more compile time)."""
    if ndim == 1:
        w(f"for k in range({name}.shape[0]):")
        w(f"    {name}[k] = {value}")
        return
    idx = [f"f{d}" for d in range(ndim)]
    for d, i in enumerate(idx):
        w(f"for {i} in range({name}.shape[{d}]):")
        w.indent()
    w(f"{name}[{', '.join(idx)}] = {value}")
    w.dedent(ndim)


def _cast(w, text):
    return text if w.dtype == "float64" else f"np.float32({text})"


def _scalar(step: S.Scalar, w: Writer):
    w(f"{step.name} = {w.expr(step.expr)}" + (f"  # {step.comment}" if step.comment else ""))


def _operands(step) -> tuple:
    """A product step's operands as kernel text (``x.T``: a transposed view, no copy)."""
    return (f"{step.a}.T" if step.trans_a else step.a), (f"{step.b}.T" if step.trans_b else step.b)


def _matmul(step: S.MatMul, w: Writer):
    a, b = _operands(step)
    if step.comment:
        w(f"# {step.comment}")
    if not step.tiny:
        w(f"gemm({a}, {b}, {step.out})")
        return
    fn = small_matmul(step.trans_a, step.trans_b, tuple(_dim(d) for d in step.shape), w.dtype, w.specialise)
    w.printer.helpers.add(fn)
    w(f"{fn}({step.a}, {step.b}, {step.out})  # tiny: loops beat a BLAS call")


def _gemm_update(step: GemmUpdate, w: Writer):
    a, b = _operands(step)
    if step.comment:
        w(f"# {step.comment}")
    w(f"gemm_update({a}, {b}, {step.param}, {step.alpha})")


def _view(step: S.View, w: Writer):
    src = step.source
    if step.kind == "transpose":
        axes = tuple(step.args)
        text = f"{src}.T" if axes == (1, 0) else f"permuted({src}, {axes})"   # not .transpose(axes): a helper to compile
    elif step.kind == "reshape":
        text = reshaped(src, _shape(step.args))
    elif step.kind == "index":
        text = f"{src}[{index_text(step.args)}]"
    else:
        text = src
    if step.kind in ("transpose", "reshape"):
        rank = len(step.args)
    elif step.kind == "index":
        rank = sum(1 for k in step.args if k[0] == "s")
    else:
        rank = w.ranks.get(src)
    if rank is not None:
        w.ranks[step.name] = rank
    if _strided_view(step, src in w.strided):
        w.strided.add(step.name)
    w(f"{step.name} = {text}" + (f"  # {step.comment}" if step.comment else ""))


def _strided_view(step: S.View, of_strided: bool) -> bool:
    """Whether Numba types the view as any layout ('A'): a permutation other than a matrix's
    .T (F-ordered), a slice that is not contiguous, or any view of such an array but a reshape
    (which needs a contiguous operand: the lowering copied a strided one first)."""
    if step.kind == "transpose":
        return of_strided or tuple(step.args) != (1, 0)
    if step.kind == "index":
        return of_strided or not contiguous_index(step.args)
    return of_strided and step.kind != "reshape"


def index_text(spec):
    """A normalised basic index (ops.structure spec) as Python slice text; both emitters use it."""
    parts = []
    for k in spec:
        if k[0] == "i":
            parts.append(str(k[1]))
        else:
            sl = numpy_slice(k)   # the reference's own conversion (bounds of -1 mean "before 0")
            text = lambda v: "" if v is None else str(v)  # noqa: E731
            parts.append(f"{text(sl.start)}:{text(sl.stop)}" + (f":{sl.step}" if sl.step not in (None, 1) else ""))
    return ", ".join(parts) or "..."


for _type, _fn in {S.Loop: _loop, S.Scalar: _scalar, S.MatMul: _matmul, S.View: _view}.items():
    register_emitter(_type, _fn)
register_emitter(GemmUpdate, _gemm_update, cpu_only=True)


# -- the module --------------------------------------------------------------------------

def jit_decorator(inner=False):
    """The decorator line of a printed function (``inner``: called only from compiled code)."""
    return "@njit(**JIT_INNER)" if inner else "@njit(**JIT)"


def emit_program(prog: S.Program, dtype: str, helpers: set | None = None, *, specialise=False,
                 inner=False, carving: Carving | None = None) -> str:
    """One ``@njit`` function for a `Program` (helper functions it calls are added to ``helpers``);
    ``specialise``: its tiny products get helpers with literal sizes (for code run many times a
    batch, a recurrence's step; elsewhere one size-generic helper per transposition pays more);
    ``inner``: called only from compiled code (a recurrence's cell), so it gets no Python wrapper;
    ``carving``: a function called from Python carves its temporaries, parameters and gradients
    from the workspace and the flat vectors (codegen/workspace.py)."""
    carving = None if inner else carving
    carves = carving.lines([a.name for a in prog.args if carving.carves(a)], "B") if carving else []
    lines = None
    if not (inner or specialise) and should_outline(prog):   # each segment carves what it reads
        lines = program_lines(prog, dtype, helpers, outline_views=carves)
    if lines is None:
        lines = program_lines(prog, dtype, helpers, specialise=specialise, carves=carves)
    ret = [f"{INDENT}return {prog.returns}"] if prog.returns is not None else []
    doc = [f'{INDENT}"""{prog.doc}"""'] if prog.doc else []
    args = ", ".join(carving.args(prog) if carving else [a.name for a in prog.args])
    return "\n".join([jit_decorator(inner), f"def {prog.name}({args}):", *doc, *lines, *ret]) + "\n"


def program_lines(prog: S.Program, dtype: str, helpers: set | None = None, *, specialise=False,
                  finish=None, carves=(), outline_views=None) -> list | None:
    """The statements of a `Program`'s function body (one indent), without its return;
    ``finish(steps, writer) -> steps`` last changes the steps after the rewrites (train_epoch's
    folded SGD); ``carves``: lines that carve buffers from the workspace, first after ``B``.
    ``outline_views``: print runs of steps alike as segment calls (codegen/outline.py), these
    lines (views the statements read: carves, batch rows) where they are read — or return
    None where no run became a segment."""
    w = Writer(dtype)
    w.specialise = specialise
    w.ranks.update({a.name: len(a.shape) for a in prog.args})
    steps = prog.steps
    for rewrite in REWRITES:
        steps = rewrite(prog, steps)
    if finish is not None:
        steps = finish(steps, w)
    starts = []
    for step in steps:
        fn = EMITTERS.get(type(step))
        if fn is None:
            raise TypeError(f"emit_cpu: no printer for schedule step {type(step).__name__}; "
                            "register one with codegen.emit_cpu.register_emitter")
        starts.append((len(w.lines), isinstance(step, S.View)))
        fn(step, w)
    body = w.lines
    if outline_views is not None and CENSUS.is_counting:   # the census's printing is thrown away
        body = [INDENT + line for line in outline_views] + body
    elif outline_views is not None:
        body = outline_body(w.lines, starts, prog.returns, dtype, w.printer.helpers, outline_views)
        if body is None:
            return None
    head = []
    batched = next((a for a in prog.args if a.role == "input" and a.batched), None)
    carves = [INDENT + line for line in carves]
    text = "\n".join(carves + body)
    if "B" in _words(text) or "nB" in _words(text):   # fed nothing batched (a recurrence of its own): one row
        head.append(f"{INDENT}B = {batched.name}.shape[0]" if batched is not None else f"{INDENT}B = 1")
    if "nB" in _words(text):
        head.append(f"{INDENT}nB = {'float(B)' if dtype == 'float64' else 'np.float32(B)'}")
    if helpers is not None:
        helpers |= w.printer.helpers
    return head + carves + body


def _words(text):
    import re
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text))


def emit_module(sched, optimizer=None) -> str:
    """The whole module's source text for a `ModelSchedule`."""
    if sched.runtime_only:
        raise ValueError("emit_module: a run-time-only schedule (a stored plan) has no steps to print; "
                         "lower the model (codegen.plan.lower)")
    layout = "\n".join(f"    {sched.names[p]:<12} [{off}:{off + size}]  shape {_shape(shape)}"
                       for p, off, size, shape in sched.flat_layout)
    header = (f'"""graphnn generated kernels: model {sched.model_name!r}, {sched.dtype}'
              # the optimizer's rules and hyperparameter names: their values are run-time arguments
              + (f", {optimizer.name}({', '.join(optimizer.hyper)})" if optimizer is not None else "") + ".\n\n"
              f"Graph {sched.graph_hash[:16]}. Generated by codegen.emit_cpu from the model's graph, its\n"
              "gradient graph (graphnn.grad) and the optimizer's update rules. Every array is an\n"
              "argument; temporaries are preallocated by the caller per batch size, in one workspace\n"
              "array each function carves them from (codegen/workspace.py).\n\n"
              "Flat layout of the trainable parameters (and of the gradient buffer):\n"
              f"{layout}\n"
              '"""\n')
    carving = Carving.of(sched)

    def print_all(helpers):
        programs = [emit_program(prog, sched.dtype, helpers, carving=carving)
                    for prog in sched.programs + [sched.evaluate]]
        return programs + [stored_update(sched.update, sched.dtype, helpers), emit_train_step(sched, carving),
                           emit_train_epoch(sched, helpers, carving)]

    with CENSUS.counting():   # the first printing only counts the nests (codegen/nest_sharing.py)
        print_all(set())
    helpers: set = set()
    with CENSUS.sharing():
        programs = print_all(helpers)
    # the intrinsics last: the kernels read first, and Numba resolves a global when it compiles
    intrinsics = "# -- the intrinsics the kernels call (codegen/intrinsics.py: why) --" + INTRINSICS
    kernels = [HELPERS[h].strip() + "\n" for h in sorted(helpers)] + programs
    imports = ("import math\n\nimport numpy as np\n\n"
               "from codegen.linking import njit\nfrom codegen.pipeline import GeneratedCompiler\n\n"
               + jit_settings(kernels))
    return "\n\n".join([header, imports] + kernels + [intrinsics])


from .emit_arrays import array_op  # noqa: E402  (Fill, Copy, Scatter, Concat: their printers register)
from . import emit_softmax  # noqa: E402,F401  (SoftmaxCE, RowSoftmax: their printers register)
from .emit_epoch import emit_train_epoch, emit_train_step  # noqa: E402
