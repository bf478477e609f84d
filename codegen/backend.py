"""The 'cpu' training backend: the generated Numba module behind graphnn's backend protocol.

Parameters live in one flat array (trainable ones, in `ModelSchedule.flat_layout` order);
``backend.params[node]`` are views into it, so compiled updates are visible at once.
Temporaries are allocated once per batch size, in one workspace array the generated functions
carve them from (codegen/workspace.py), and reused; a whole epoch is one call. Every buffer
the backend allocates starts on a cache-line boundary (`aligned_zeros`).
"""
from __future__ import annotations

import contextlib
import re

import numba  # noqa: F401  (this backend compiles with Numba: a missing one fails here, named)
import numpy as np

from graphnn.evaluate import bind, check_finite_feeds, resolve_dtype
from graphnn.graph import Graph
from graphnn.training.backends import epoch_by_steps

from .cache import load_generated_module
from .finite import check_result, guarded_epoch, name_nonfinite, step_is_finite
from .emit_cpu import emit_module
from .emit_epoch import train_epoch_args
from .emit_update import update_args
from .lower import CodegenError
from .plan import lower
from .plan_cache import load_plan, save_plan
from .workspace import (CACHE_LINE, FLAT_GRAD, FLAT_PARAMS, WORK, Carving, Workspace,  # noqa: F401
                        aligned_copy, aligned_zeros, batched_inputs, workspace_buffers)


class CpuBackend:
    """Compiled training on the CPU (see the module docstring). Protocol as NumpyBackend, plus
    ``gradients(feeds) -> (loss, flat_grad)`` and ``apply_gradients(flat_grad)``."""

    name = "cpu"

    def __init__(self, model, optimizer, dtype="float64", params=None, *, verbose=False, blas_threads=None):
        self.model, self.optimizer = model, optimizer
        self.dtype = resolve_dtype(dtype)
        self.dtype_name = np.dtype(self.dtype).name
        # a cached start reads the stored plan instead of lowering and printing (plan_cache.py)
        planned = load_plan(model, optimizer, self.dtype_name)
        if planned is None:
            self.schedule = lower(model, optimizer, self.dtype_name)
            self.source = emit_module(self.schedule, optimizer)
        else:
            self.schedule, self.source = planned
        # hyperparameter values (and schedules) are run-time arguments: not part of the key
        key = {"graph": self.schedule.graph_hash, "dtype": self.dtype_name,
               "optimizer": repr(optimizer.code_key())}
        self.cache_key = key
        self.module = load_generated_module(self.source, key, verbose=verbose)
        if planned is None:
            save_plan(model, optimizer, self.schedule, getattr(self.module, "_graphnn_path", None))
        elif verbose:
            print("graphnn cache: plan stored with the module: the model was not lowered again")
        self.blas_threads = blas_threads
        self.trainable = list(self.schedule.trainable)
        self._carving = Carving.of(self.schedule)
        self._init_params(params or model.initial_params())
        self.steps = 0
        self._buffers: dict = {}
        self._data: dict = {}
        self._recorded = None

    # -- storage -----------------------------------------------------------------------
    def _init_params(self, start):
        sched, dt = self.schedule, self.dtype
        self.flat_params = aligned_zeros(sched.n_flat, dt)
        self.flat_grad = aligned_zeros(sched.n_flat, dt)
        self.flat_state = {s: aligned_zeros(sched.n_flat, dt) for s in sched.update.state}
        self.params, self.grads, self.state = {}, {}, {}
        for p, off, size, shape in sched.flat_layout:
            view = self.flat_params[off:off + size].reshape(shape)
            view[...] = start[p]
            self.params[p] = view
            self.grads[p] = self.flat_grad[off:off + size].reshape(shape)
            self.state[p] = {s: a[off:off + size].reshape(shape) for s, a in self.flat_state.items()}
        for p in self.model.parameters:
            if p not in self.params:
                self.params[p] = aligned_copy(start[p], dt)
        # kernels see a scalar (shape ()) as an array of one element
        self._grad_buffers = {sched.names[sched.gradients[p]]: _one(g) for p, g in self.grads.items()}
        self._kernel_params = {p: _one(v) for p, v in self.params.items()}
        self._consts = {sched.names[c]: aligned_copy(c.value, dt) for c in sched.consts}

    def _workspace(self, batch: int) -> Workspace:
        """The temporaries for this batch size (shared by all programs; codegen/workspace.py)."""
        ws = self._buffers.get(batch)
        if ws is None:
            ws = self._buffers[batch] = Workspace(workspace_buffers(self.schedule), batch, self.dtype)
        return ws

    def _temps(self, batch: int) -> dict:
        """name -> the preallocated array for this batch size (a view into its workspace)."""
        return self._workspace(batch).views

    def _feeds(self, graph_nodes, feeds):
        """Checked, converted feeds by name (the reference's own checks and errors)."""
        values = bind(Graph(graph_nodes), feeds, None, self.dtype)
        # C-contiguous: the generated code views and multiplies inputs as such (codegen/intrinsics.py)
        return {self.schedule.names[n]: np.ascontiguousarray(_one(v)) for n, v in values.items() if n.kind == "input"}

    def _args(self, prog, feeds: dict, batch: int):
        """The printed function's arguments for ``prog`` (codegen/workspace.py: `Carving.args`)."""
        values = {WORK: self._workspace(batch).work, FLAT_PARAMS: self.flat_params, FLAT_GRAD: self.flat_grad}
        for a in prog.args:
            if a.role == "input":
                values[a.name] = feeds[a.name]
            elif a.role == "param":
                values[a.name] = self._kernel_params[a.node]
            elif a.role == "const":
                values[a.name] = self._consts[a.name]
            elif a.role == "grad":
                values[a.name] = self._grad_buffers[a.name]
        return [values[n] for n in self._carving.args(prog)]

    def _named_state(self) -> dict:
        """Parameters, gradients, constants and update arguments by their generated names."""
        names = self.schedule.names
        out = {names[p]: v for p, v in self._kernel_params.items()}
        out.update(self._grad_buffers)
        out.update(self._consts)
        out.update(zip(update_args(self.schedule.update), self._update_args()))
        return out

    def _update_args(self):
        """apply_update's arguments for update number ``self.steps`` (schedules evaluated there)."""
        hyper = self.optimizer.hyper_at(max(self.steps, 1))
        return [self.flat_params, self.flat_grad, *self.flat_state.values(), self.steps,
                *(self.dtype(hyper[h]) for h in self.schedule.update.hyper)]

    # -- protocol ----------------------------------------------------------------------
    def train_step(self, feeds) -> float:
        f = self._feeds([self.model.loss], feeds)
        batch = _batch_of(f, self.schedule)
        # grad_step then apply_update (the module's train_step does both in one call, but
        # compiling it as well would cost another second for no measurable gain here)
        loss = self._call("grad_step", self._args(self.schedule.grad_step, f, batch))
        if not step_is_finite(loss, self.flat_grad):   # before the update: name the node (codegen/finite.py)
            name_nonfinite(self, feeds, self.steps + 1)
        self.steps += 1
        self._call("apply_update", self._update_args())
        return float(loss)

    def gradients(self, feeds):
        """(loss, flat gradient) for a batch; the array is this backend's own buffer, in
        flat-layout order (overwritten by the next call)."""
        f = self._feeds([self.model.loss], feeds)
        loss = self._call("grad_step", self._args(self.schedule.grad_step, f, _batch_of(f, self.schedule)))
        if not step_is_finite(loss, self.flat_grad):
            name_nonfinite(self, feeds, self.steps + 1)
        return float(loss), self.flat_grad

    def apply_gradients(self, flat_grad) -> None:
        """One optimizer step with the given flat gradient (e.g. averaged over MPI ranks)."""
        flat_grad = np.asarray(flat_grad)
        if flat_grad.shape != self.flat_grad.shape:
            raise ValueError(f"apply_gradients: expected a flat gradient of {self.flat_grad.size} values, "
                             f"got shape {flat_grad.shape}")
        if flat_grad is not self.flat_grad:
            self.flat_grad[...] = flat_grad
        self.steps += 1
        self._call("apply_update", self._update_args())

    #: train_epoch feeds each batch its own ``step`` (training.backends.TrainingFeeds relies on it)
    epoch_feeds_steps = True

    def train_epoch(self, feeds, batches) -> float:
        """One epoch over ``batches`` (index arrays, equal sizes but a shorter last one) in one call.

        Unbatched inputs are fed once (dropout's ``training``); a fed ``step`` is the first
        batch's, and each later batch gets the next number, as single steps would."""
        batches = [np.asarray(b) for b in batches]
        size = len(batches[0])
        if any(len(b) != size for b in batches[:-1]) or len(batches[-1]) > size:
            return epoch_by_steps(self.train_step, feeds, batches)   # unequal batches
        if len(batches[-1]) < size and len(batches) > 1 and self._batch_axis_inside():
            # a short batch uses the buffers' leading rows, which is not its part of a buffer
            # whose batch axis is not the first (a transposed activation): it runs as a step
            head = self.train_epoch(feeds, batches[:-1]) * size * (len(batches) - 1)
            last = epoch_by_steps(self.train_step, feeds, batches[-1:]) * len(batches[-1])
            return (head + last) / (size * (len(batches) - 1) + len(batches[-1]))
        order = np.ascontiguousarray(np.concatenate(batches), dtype=np.int64)
        values = {f"{k}_data": v for k, v in self._data_arrays(feeds).items()}
        ws = self._workspace(size)   # includes the batch buffers named like the inputs
        values[WORK] = ws.work
        values.update(self._named_state())
        values.update(self._unbatched_inputs(feeds))
        values.update({f"{h}_per_step": v.astype(self.dtype) for h, v in
                       self.optimizer.hyper_table(self.steps + 1, len(batches)).items()})
        values.update(order=order, batch_size=size)
        args = [values[n] for n in train_epoch_args(self.schedule, self._carving)]
        def run():
            with self._blas():
                total = self._call("train_epoch", args)
            self.steps += len(batches)
            return float(total)
        # NaN/inf: checked at the epoch's end, then replayed step by step to name the node
        total = guarded_epoch(self, run, feeds, batches, self._snapshot, self._restore,
                              lambda: bool(np.isfinite(self.flat_params).all()))
        return total / len(order)

    def _batch_axis_inside(self) -> bool:
        """Whether a temporary has the batch axis after its first (a transposed activation)."""
        return any(None in a.shape[1:] for prog in self.schedule.programs for a in prog.args
                   if a.role in ("temp", "output"))

    def _snapshot(self):
        return self.flat_params.copy(), {s: a.copy() for s, a in self.flat_state.items()}, self.steps

    def _restore(self, saved):
        params, state, self.steps = saved
        self.flat_params[...] = params
        for s, a in state.items():
            self.flat_state[s][...] = a

    def _unbatched_inputs(self, feeds) -> dict:
        """Fresh one-element (or fixed-shape) arrays of the unbatched inputs: fed, else their default."""
        out = {}
        for a in self.schedule.grad_step.args:
            if a.role == "input" and not a.batched:
                value = feeds.get(a.node.name, feeds.get(a.node, a.node.value))
                if value is None:
                    raise KeyError(f"train_epoch: no value fed for input {a.node.name!r}")
                out[a.name] = _one(np.array(value, dtype=self.dtype).reshape(a.node.shape))
        return out

    def _data_arrays(self, feeds) -> dict:
        """Whole training arrays in the backend's dtype, converted once and reused."""
        out = {}
        for a in batched_inputs(self.schedule):
            # by the input's own name (the argument's identifier may differ: deduplicated ε and ε̂,
            # or a name that is taken, an input called 'i') or node
            value = feeds[a.node.name] if a.node.name in feeds else feeds[a.node]
            cached = self._data.get(a.name)
            if cached is None or cached[0] is not value:
                converted = self._feeds([self.model.loss], {**feeds, a.node.name: value})[a.name]
                check_finite_feeds({a.node: converted})   # once per training array, on entry
                if converted.ctypes.data % CACHE_LINE and not np.may_share_memory(converted, value):
                    converted = aligned_copy(converted, self.dtype)   # a copy of ours: aligned too
                cached = (value, converted)
                self._data[a.name] = cached
            out[a.name] = cached[1]
        return out

    def loss(self, feeds) -> float:
        return self.evaluate(feeds)[0]

    def evaluate(self, feeds):
        """(loss, output) of a batch in one compiled call."""
        f = self._feeds([self.model.loss, self.model.output], feeds)
        batch = _batch_of(f, self.schedule)
        loss, out = float(self._call("evaluate", self._args(self.schedule.evaluate, f, batch))), self._output(batch)
        check_result(self, "evaluate", feeds, loss, out)   # NaN/inf: the reference names the node
        return loss, out

    def predict(self, feeds):
        f = self._feeds([self.model.output], feeds)
        prog = self.schedule.forward
        batch = _batch_of(f, self.schedule)
        self._call("forward", self._args(prog, f, batch))
        out = self._output(batch)
        check_result(self, "predict", feeds, out)
        return out

    def _output(self, batch):
        """A copy of the output buffer, in the output's own shape (a 0-d output is stored as one element)."""
        out = self.model.output
        return self._temps(batch)[self.schedule.names[out]].reshape(
            tuple(batch if d is None else d for d in out.shape)).copy()

    # -- calling compiled code -----------------------------------------------------------
    def _blas(self):
        if self.blas_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=self.blas_threads, user_api="blas")

    @contextlib.contextmanager
    def recording(self):
        """Within it, each call of a compiled function is recorded as ``(name, args)`` instead of
        run (it returns 0): the exact argument types are known before anything compiles
        (codegen/background.py). Parameters are not touched; the update count is restored."""
        self._recorded, steps = [], self.steps
        try:
            yield self._recorded
        finally:
            self._recorded, self.steps = None, steps

    def _call(self, fn_name, args):
        from numba.core.errors import NumbaError

        if self._recorded is not None:
            self._recorded.append((fn_name, list(args)))
            return self.dtype(0)
        try:
            return getattr(self.module, fn_name)(*args)
        except NumbaError as e:
            raise CodegenError(explain_numba_error(e, fn_name, self.source, self.module)) from None


def _one(array):
    return array.reshape(1) if array.ndim == 0 else array


def _batch_of(feeds, schedule):
    for a in batched_inputs(schedule):
        if a.name in feeds:
            return feeds[a.name].shape[0]
    return 1


def explain_numba_error(error, fn_name, source, module) -> str:
    """A Numba error as: which generated function, which line of its source, what Numba said."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = source.splitlines()
    path = getattr(module, "__file__", "") or ""
    where = ""
    for file, line in re.findall(r'File "([^"]+)", line (\d+)', text):
        if "graphnn_gen_" in file and 1 <= int(line) <= len(lines):
            where = f"\n  generated line {line}: {lines[int(line) - 1].strip()}"
            break   # the first reported line is the innermost one
    said = [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.strip().startswith(("Failed in nopython", "During:", "File ", "<source"))]
    return (f"codegen: Numba could not compile the generated function {fn_name!r} ({path}){where}\n"
            f"  Numba says: {' '.join(said[:3])[:400]}")
