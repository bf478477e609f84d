"""The 'cuda' training backend: the model's schedule printed as CUDA kernels, run on the GPU.

Parameters (one flat device buffer, views per parameter), gradients (one flat buffer),
optimizer state, temporaries and the training data live on the device. An epoch copies
the batch order to the device once, gathers each mini-batch on the device, runs
grad_step + update, and accumulates the loss there: one device→host copy per epoch.
``train_step``/``loss``/``predict`` on host arrays copy their feeds in and results out.
"""
from __future__ import annotations

import math
import types
import unicodedata
import warnings

import numpy as np

from codegen.finite import check_result, guarded_epoch, name_nonfinite
from codegen.plan import lower
from graphnn.evaluate import bind, check_finite_feeds, resolve_dtype
from graphnn.graph import Graph

from . import conv, modern, recurrence  # noqa: F401  (CUDA printers of conv/pool/noise, modern and loop steps)
from . import kernels
from .device import is_simulator, require_cuda
from .emit import CudaEmitter
from .module import LaunchOptions, load_module, module_source


def emit_schedule(sched, split=8):
    """The CUDA emitter's output for a `ModelSchedule`: (emitter, module parts)."""
    em = CudaEmitter(sched.dtype, split)
    for prog in sched.programs:
        em.program(prog, {})
    em.update(sched.update)
    extra = [kernels.gather_rows("gather_rows"), kernels.scale_add("add_scaled"), kernels.fill("fill1d", 1)]
    return em, em.source_parts() + extra


def cuda_source(model, optimizer, dtype="float64", *, tile=16, threads=256, split=8) -> str:
    """The generated CUDA module for ``model`` as text (no GPU or numba-cuda needed):
    what ``graphnn codegen MODEL --cuda`` prints."""
    sched = lower(model, optimizer, dtype)
    _, parts = emit_schedule(sched, split)
    return module_source(parts, dtype, LaunchOptions(tile, threads, split=split), cache=True,
                         title=_title(model, dtype, optimizer))


def _title(model, dtype, optimizer):
    # the optimizer's rules and hyperparameter names only: their values are run-time arguments
    return f"graphnn CUDA kernels: model {model.name!r}, {dtype}, {optimizer.name}({', '.join(optimizer.hyper)})"


class CudaBackend:
    """``Trainer(model, backend='cuda')``; see the module docstring."""

    name = "cuda"

    def __init__(self, model, optimizer, dtype="float64", params=None, *, tile=None, threads=None,
                 verbose=False):
        self.cuda = require_cuda()
        self.model, self.optimizer = model, optimizer
        self.dtype = resolve_dtype(dtype)
        dname = np.dtype(self.dtype).name
        self.schedule = sched = lower(model, optimizer, dname)
        sim = is_simulator(self.cuda)
        if sim:
            _quiet_hash_wraparound()
        if sim and tile is None:
            # the simulator pays per thread and per barrier: 4×4 tiles for small matrices
            tile = 16 if _largest_matmul_dim(sched.programs) > 16 else 4
        self.options = LaunchOptions.for_target(sim, tile, threads)
        self.emitter, parts = emit_schedule(sched, self.options.split)
        key = {"graph": sched.graph_hash, "optimizer": repr(optimizer.code_key()),
               "tile": self.options.tile, "threads": self.options.threads, "split": self.options.split}
        self.module, self.source = load_module(parts, dtype=dname, options=self.options, key=key,
                                               title=_title(model, dname, optimizer), verbose=verbose)
        self._names = sched.names
        self.trainable = list(sched.trainable)
        self._init_device(params or model.initial_params())
        self._sets: dict = {}
        self._data: dict = {}
        self.steps = 0

    # -- device state --------------------------------------------------------------------
    def _init_device(self, start):
        cuda, dt = self.cuda, self.dtype
        flat = np.zeros(self.schedule.n_flat, dt)
        for p, off, size, shape in self.schedule.flat_layout:
            flat[off:off + size] = np.asarray(start[p], dtype=dt).ravel()
        self.flat_params = cuda.to_device(flat)
        self.flat_grad = cuda.device_array(flat.shape, dt)
        self.state = {s: cuda.to_device(np.zeros_like(flat)) for s in self.schedule.update.state}
        self.views = {}
        for p, off, size, shape in self.schedule.flat_layout:
            self.views[p] = _shaped(self.flat_params[off:off + size], shape)
        self.fixed = {p: cuda.to_device(_as_1elem(np.asarray(start[p], dt))) for p in self.schedule.fixed}
        self.consts = {c: cuda.to_device(_as_1elem(np.asarray(c.value, dt))) for c in self.schedule.consts}
        self.epoch_total = cuda.device_array(1, dt)

    @property
    def params(self) -> dict:
        """Host copies of every parameter (one device→host copy of the flat buffer)."""
        flat = self.flat_params.copy_to_host()
        out = {}
        for p, off, size, shape in self.schedule.flat_layout:
            out[p] = flat[off:off + size].reshape(shape).copy()
        for p, arr in self.fixed.items():
            out[p] = arr.copy_to_host().reshape(p.shape)
        return out

    def set_params(self, values: dict) -> None:
        """Overwrite parameters ({node: array}) on the device (``params`` are host copies)."""
        flat = self.flat_params.copy_to_host()
        for p, off, size, shape in self.schedule.flat_layout:
            if p in values:
                flat[off:off + size] = np.asarray(values[p], dtype=self.dtype).ravel()
        self.flat_params.copy_to_device(flat)
        for p, arr in self.fixed.items():
            if p in values:
                arr.copy_to_device(_as_1elem(np.asarray(values[p], dtype=self.dtype)))

    def export_state(self):
        """(params, optimizer state {param: {name: array}}) as host copies (checkpoints)."""
        host = {s: a.copy_to_host() for s, a in self.state.items()}
        state = {p: {s: h[off:off + size].reshape(shape).copy() for s, h in host.items()}
                 for p, off, size, shape in self.schedule.flat_layout}
        return self.params, state

    def import_state(self, params, state):
        """Put host values of parameters (and optimizer state) on the device (resume)."""
        self.set_params(params)
        host = {s: a.copy_to_host() for s, a in self.state.items()}
        for p, off, size, shape in self.schedule.flat_layout:
            for s, h in host.items():
                if s in (state.get(p) or {}):
                    h[off:off + size] = np.asarray(state[p][s], dtype=self.dtype).ravel()
        for s, h in host.items():
            self.state[s].copy_to_device(h)

    def _snapshot(self):
        return (self.flat_params.copy_to_host(), {s: a.copy_to_host() for s, a in self.state.items()},
                self.steps)

    def _restore(self, saved):
        flat, state, self.steps = saved
        self.flat_params.copy_to_device(flat)
        for s, h in state.items():
            self.state[s].copy_to_device(h)

    def _params_finite(self) -> bool:
        return bool(np.isfinite(self.flat_params.copy_to_host()).all())

    def buffers(self, batch: int):
        """The device namespace for batch size ``batch`` (allocated once per size)."""
        a = self._sets.get(batch)
        if a is not None:
            return a
        cuda, dt, names = self.cuda, self.dtype, self._names
        a = types.SimpleNamespace(flat_params=self.flat_params, flat_grad=self.flat_grad)
        for s, arr in self.state.items():
            setattr(a, f"state_{s}", arr)
        shapes = {}
        grad_bufs = [b for b in self.schedule.grad_step.args if b.role == "grad"]
        if len(grad_bufs) != len(self.trainable):
            raise RuntimeError("codegen (cuda): grad_step writes a different number of gradients than "
                               "there are trainable parameters")
        grad_of = {b.name: p for b, p in zip(grad_bufs, self.trainable)}
        offsets = {p: (off, size, shape) for p, off, size, shape in self.schedule.flat_layout}
        for prog in self.schedule.programs:
            for buf in prog.args:
                shape = tuple(batch if d is None else d for d in buf.shape)
                if buf.name in shapes:
                    if shapes[buf.name] != shape:
                        raise RuntimeError(f"codegen (cuda): buffer {buf.name!r} is used with shapes "
                                           f"{shapes[buf.name]} and {shape}")
                    continue
                shapes[buf.name] = shape
                if buf.role == "param":
                    arr = self.views.get(buf.node) if buf.node in self.views else self.fixed[buf.node]
                elif buf.role == "const":
                    arr = self.consts[buf.node]
                elif buf.role == "grad":
                    off, size, pshape = offsets[grad_of[buf.name]]
                    arr = _shaped(self.flat_grad[off:off + size], pshape)
                else:  # input, output, temp
                    arr = cuda.device_array(shape or (1,), dt)
                setattr(a, _attr(buf.name), arr)
        for name in sorted(self.emitter.all_scalars(self.schedule.programs)):
            if not hasattr(a, _attr(name)):
                setattr(a, _attr(name), cuda.device_array(1, dt))
        for name, shape in self.emitter.all_extras(self.schedule.programs).items():
            setattr(a, _attr(name), cuda.device_array(tuple(batch if d is None else d for d in shape) or (1,), dt))
        for fn, prog in self.emitter.cells.items():   # (a phase over all T steps: T·B rows)
            setattr(a, _attr(f"cell_ns_{fn}"), self._cell_namespace(prog, batch * self.emitter.cell_rows.get(fn, 1)))
        # 2-d views of the batched inputs, for the on-device gather
        a._gather = {}
        for node in self.schedule.inputs:
            name = names[node]
            arr = getattr(a, _attr(name), None)
            if arr is not None and node.shape and node.shape[0] is None:
                a._gather[name] = arr.reshape(batch, max(1, math.prod(arr.shape[1:])))
        for prog in self.schedule.programs:
            getattr(self.module, f"bind_{prog.name}")(a)
        self._sets[batch] = a
        return a

    def _cell_namespace(self, prog, batch):
        """A recurrence cell's own scalars and extras; the recurrence binds its carries,
        inputs, outputs and temporaries into it before each step."""
        cuda, dt = self.cuda, self.dtype
        c = types.SimpleNamespace()   # (its temporaries are the loop's, bound before each step)
        for name in sorted(self.emitter.program_scalars.get(prog.name, ())):
            if not hasattr(c, _attr(name)):
                setattr(c, _attr(name), cuda.device_array(1, dt))
        for name, shape in self.emitter.program_extras.get(prog.name, {}).items():
            setattr(c, _attr(name), cuda.device_array(tuple(batch if d is None else d for d in shape), dt))
        return c

    # -- feeds -----------------------------------------------------------------------------
    def _upload(self, program, feeds):
        """Check ``feeds`` (graphnn's own feed errors) and copy them into a buffer set."""
        nodes = [b.node for b in program.args if b.role == "input"]
        values = bind(Graph(nodes), feeds, {}, self.dtype) if nodes else {}
        batch = next((values[n].shape[0] for n in nodes if n.shape and n.shape[0] is None), 1)
        a = self.buffers(batch)
        for n in nodes:
            dst = getattr(a, _attr(self._names[n]))
            dst.copy_to_device(_plain(values[n]).reshape(dst.shape))
        return a, batch

    def _device_data(self, feeds):
        """Device copies of the training arrays, made once per (unchanged) host array."""
        out = {}
        for node in self.schedule.inputs:
            if not (node.shape and node.shape[0] is None):
                continue
            host = feeds.get(node.name, feeds.get(node)) if hasattr(feeds, "get") else None
            if host is None:
                raise KeyError(f"train_epoch: missing feed for input {node.name!r}")
            key = (node, id(host))
            if key not in self._data:
                arr = _plain(np.asarray(host, dtype=self.dtype))
                check_finite_feeds({node: arr})   # once per training array, on entry
                self._data = {k: v for k, v in self._data.items() if k[0] is not node}   # its old copy goes
                self._data[key] = (host, self.cuda.to_device(arr.reshape(arr.shape[0], -1)))
            out[self._names[node]] = self._data[key][1]
        return out

    def _fixed_inputs(self, feeds, sizes):
        """Unbatched inputs (dropout's ``training``/``step`` flags …): fed or default values,
        copied once per epoch into each buffer set the epoch uses."""
        for buf in self.schedule.grad_step.args:
            node = buf.node
            if buf.role != "input" or (node.shape and node.shape[0] is None):
                continue
            value = feeds.get(node.name, feeds.get(node)) if hasattr(feeds, "get") else None
            if value is None:
                value = node.value
            if value is None:
                raise KeyError(f"train_epoch: missing feed for input {node.name!r}")
            for size in sizes:
                dst = getattr(self.buffers(size), _attr(buf.name))
                dst.copy_to_device(_plain(np.asarray(value, dtype=self.dtype)).reshape(dst.shape))

    # -- the backend protocol -------------------------------------------------------------
    def train_step(self, feeds) -> float:
        a, batch = self._upload(self.schedule.grad_step, feeds)
        loss = float(self.module.grad_step(a, batch).copy_to_host()[0])
        if not math.isfinite(loss):   # before the update: the reference names the node
            name_nonfinite(self, feeds, self.steps + 1)
        self._update(a)
        return loss

    def _update(self, a):
        self.steps += 1
        self.module.update(a, self.steps, self.optimizer.hyper_at(self.steps))

    def train_epoch(self, feeds, batches) -> float:
        """One epoch on the device: one copy of the order in, one copy of the loss out.

        NaN/inf: the total loss and the parameters are checked at the end; a bad epoch is
        replayed step by step from its start to name the node (codegen/finite.py)."""
        total = guarded_epoch(self, lambda: self._epoch(feeds, batches), feeds, batches, self._snapshot,
                              self._restore, self._params_finite)
        return total / max(sum(len(b) for b in batches), 1)

    def _epoch(self, feeds, batches) -> float:
        m = self.module
        data = self._device_data(feeds)
        order = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])
        d_order = self.cuda.to_device(order)
        self._fixed_inputs(feeds, {len(b) for b in batches})
        m.run_fill1d(self.epoch_total, self.dtype(0))
        start = 0
        for idx in batches:
            nb = len(idx)
            a = self.buffers(nb)
            for name, src in data.items():
                m.run_gather_rows(src, d_order, start, a._gather[name])
            loss = m.grad_step(a, nb)
            self._update(a)
            m.run_add_scaled(loss, self.dtype(nb), self.epoch_total)
            start += nb
        return float(self.epoch_total.copy_to_host()[0])

    def loss(self, feeds) -> float:
        a, batch = self._upload(self.schedule.loss, feeds)
        loss = float(self.module.loss(a, batch).copy_to_host()[0])
        check_result(self, "loss", feeds, loss)   # NaN/inf: the reference names the node
        return loss

    def predict(self, feeds):
        a, batch = self._upload(self.schedule.forward, feeds)
        self.module.forward(a, batch)
        out = getattr(a, _attr(self._names[self.model.output]))
        out = out.copy_to_host().reshape(tuple(batch if d is None else d for d in self.model.output.shape))
        check_result(self, "predict", feeds, out)
        return out

    # data-parallel pair (graphnn/distributed.py): gradients out, summed gradients in
    def gradients(self, feeds):
        a, batch = self._upload(self.schedule.grad_step, feeds)
        loss = float(self.module.grad_step(a, batch).copy_to_host()[0])
        grad = self.flat_grad.copy_to_host()
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            name_nonfinite(self, feeds, self.steps + 1)
        return loss, grad

    def apply_gradients(self, flat_grad) -> None:
        self.flat_grad.copy_to_device(_plain(np.asarray(flat_grad, dtype=self.dtype)))
        self._update(next(iter(self._sets.values())) if self._sets else self.buffers(1))


def _quiet_hash_wraparound():
    """The noise hash (splitmix64) multiplies modulo 2**64 by design. On a GPU that is plain
    uint64 arithmetic; the simulator runs it as NumPy scalars, which warn on every wrap.
    Silence exactly that warning, and only for code graphnn generated."""
    warnings.filterwarnings("ignore", r"overflow encountered in scalar (multiply|add)",
                            RuntimeWarning, r"graphnn_gen_")


def _largest_matmul_dim(programs) -> int:
    """The largest fixed dimension of any matmul, recurrence cells included."""
    from codegen.schedule import MatMul

    best, todo = 0, [p.steps for p in programs]
    while todo:
        for step in todo.pop():
            if isinstance(step, MatMul):
                best = max([best] + [d for d in step.shape if isinstance(d, int)])
            for call in getattr(step, "calls", {}).values():
                todo.append(call.program.steps)
    return best


def _attr(name):
    """The attribute a generated ``a.<name>`` refers to: Python NFKC-normalises identifiers
    in source ('Wᵀ' is read as 'WT'), so buffers are stored under the normalised name."""
    return unicodedata.normalize("NFKC", name)


def _shaped(flat_view, shape):
    """A flat device slice seen with a parameter's shape (0-d → 1-element)."""
    return flat_view.reshape(tuple(shape)) if shape else flat_view


def _as_1elem(arr):
    return arr.reshape(1) if arr.ndim == 0 else _plain(arr)


def _plain(arr):
    """A fresh C-ordered copy: views like ``x[:, None]`` have 0 strides on size-1 axes, which
    Numba's device copies treat as broadcast axes and drop."""
    return np.array(arr, order="C", copy=True)
