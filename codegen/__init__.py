"""graphnn's Numba code generator.

Pipeline (each stage usable alone):

1. ``lower(model, optimizer, dtype) -> ModelSchedule`` (plan.py): the forward graph, the
   gradient graph from ``graphnn.grad`` and the optimizer's sympy rules become
   emitter-independent schedules (schedule.py): `Program`s of plain dataclass steps —
   fused elementwise `Loop`s, `MatMul`, `SoftmaxCE`, `View`, reductions carried by loops,
   and one `Update` over the flat parameters. Programs: ``forward`` (output), ``loss``,
   ``evaluate`` (loss + output), ``grad_step`` (loss + gradients). Buffers are named after the graph's nodes.
2. ``register_lowering(OpClass, fn)`` (lower.py): how an op class's nodes become schedule;
   ``fn(node, ctx) -> Lowered``. An op with no lowering is a `CodegenError` naming the op
   and node.
3. ``emit_module(schedule)`` (emit_cpu.py): one readable module of ``@njit(cache=True,
   fastmath=FASTMATH, error_model='numpy')`` functions: forward, loss, evaluate, grad_step,
   apply_update, train_step, train_epoch. ``register_emitter(StepType, fn)`` prints new
   step types. A CUDA emitter can print the same schedules.
4. ``load_generated_module`` (cache.py): the source is cached on disk under a stable module
   name so Numba's cache works across processes ($GRAPHNN_CACHE_DIR moves it).
5. `CpuBackend` (backend.py): the 'cpu' training backend, which graphnn.training's registry
   names ('codegen.backend:CpuBackend') and loads on first use; importing it imports Numba.
   NaN/inf checks (finite.py): the data once, each step's loss and gradient, a compiled
   epoch at its end; a bad step is replayed on the NumPy reference to name the node.

Contracts others rely on:
- flat layout: the trainable parameters of ``model.params`` (graph order), each raveled
  C-order, concatenated; ``ModelSchedule.flat_layout`` = [(node, offset, size, shape)].
  The gradient buffer and the optimizer state buffers use the same layout.
- ``CpuBackend.gradients(feeds) -> (loss, flat_grad)`` and ``apply_gradients(flat_grad)``
  (the NumPy backend has the same two methods and layout).
- generated names: a node's buffer is its identifier (``h``, ``net_h``); gradients are
  ``d_<name>``; the batch size is ``B`` (``nB`` as a float); a linear layer's x @ W is
  ``<name>_xW``.
"""
from .cache import cache_info, clear_cache, load_generated_module
from .emit_cpu import emit_module, register_emitter
from .printer import FASTMATH
from .lower import CodegenError, Lowered, available_lowerings, register_lowering
from .plan import ModelSchedule, lower
from . import schedule
# the lowerings register themselves by op class
from . import lowerings, lower_conv, lower_loop, lower_modern  # noqa: F401


def source(model, optimizer="sgd", dtype="float64", **hyper) -> str:
    """The generated module's source for ``model`` (what ``graphnn codegen MODEL`` prints)."""
    from graphnn.optim import make_optimizer

    opt = make_optimizer(optimizer, **{"lr": model.defaults.get("lr"), **hyper})
    return emit_module(lower(model, opt, dtype), opt)


def __getattr__(name):
    # CpuBackend imports Numba: only when asked for (``graphnn codegen`` prints source without it)
    if name == "CpuBackend":
        from .backend import CpuBackend
        return CpuBackend
    raise AttributeError(f"module 'codegen' has no attribute {name!r}")
