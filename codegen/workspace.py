"""The workspace: a generated function called from Python takes its temporaries as one array.

Numba unboxes every array argument of a function called from Python in a wrapper of its own,
and the function carries each argument's header through LLVM's passes, some of which grow
faster than the function (constraint elimination, value propagation, instruction selection of
the entry block). The transformer's ``train_epoch`` took 174 arrays, 101 of them
temporaries. Each buffer's place in the workspace is a polynomial in the batch size
printed into the code (``carve(work, 24 * B + 64, (B, 16))``): offsets read from an array
instead cost more compile than they saved (LLVM can tell constant-offset buffers apart).

The contract both sides read from here:

- `workspace_buffers(sched)`: (name, shape) of every buffer the workspace holds, ``None`` for
  a batch axis, in the workspace's order: the programs' temporaries and outputs (in order of
  first use), then the batch buffers ``train_epoch`` gathers a batch's inputs into (named like
  the input).
- `workspace_layout(buffers, dtype)`: where each starts, as coefficients of the batch size's
  powers; every coefficient is a whole number of cache lines, so every buffer starts on one
  for any batch size (as each separate buffer did: `aligned_zeros`).
- `Carving.of(sched)`: what a function printed for a program carves rather than takes. Its
  temporaries come as ``work`` (1-D, the float dtype) and start with
  ``h = carve(work, <start>, <shape>)`` (codegen/intrinsics.py: ``carve`` raises if a part
  lies outside); its trainable parameters and their gradients, which live in the flat vectors
  anyway, as ``flat_params`` and ``flat_grad``, carved at their constant offsets
  (``W = carve(flat_params, 64, (4, 16))``). `Carving.args` are the printed parameters.
- `Workspace(buffers, batch, dtype)`: the caller's side, one allocation per batch size.
"""
from __future__ import annotations

import math

import numpy as np

#: the program arguments carved from the workspace (the caller owns no other copy of them)
CARVED_ROLES = ("temp", "output")
WORK, FLAT_PARAMS, FLAT_GRAD = "work", "flat_params", "flat_grad"
CACHE_LINE = 64   # bytes; also the width of an AVX-512 register


def batched_inputs(sched) -> list:
    """grad_step's inputs with a batch axis: train_epoch gathers each batch of them."""
    return [a for a in sched.grad_step.args if a.role == "input" and a.batched]


def workspace_buffers(sched) -> list:
    """[(name, shape)] of the workspace's buffers in its order (see the module docstring)."""
    shapes: dict = {}
    for prog in sched.programs + [sched.evaluate]:
        for a in prog.args:
            if a.role in CARVED_ROLES:
                shapes.setdefault(a.name, tuple(a.shape))
    for a in batched_inputs(sched):
        shapes.setdefault(a.name, (None,) + tuple(a.shape[1:]))
    return list(shapes.items())


class Carving:
    """Where each carved argument of the printed functions lives (see the module docstring):
    ``starts``/``shapes`` of the workspace's buffers and ``places`` {name: (flat vector,
    offset, shape)} of the trainable parameters and their gradients, by generated name."""

    def __init__(self, starts: dict, shapes: dict, places: dict):
        self.starts, self.shapes, self.places = starts, shapes, places

    @classmethod
    def of(cls, sched) -> "Carving":
        buffers = workspace_buffers(sched)
        places = {}
        for p, offset, _, shape in sched.flat_layout:
            places[sched.names[p]] = (FLAT_PARAMS, offset, tuple(shape))
            places[sched.names[sched.gradients[p]]] = (FLAT_GRAD, offset, tuple(shape))
        return cls(workspace_layout(buffers, sched.dtype)[0], dict(buffers), places)

    def carves(self, arg) -> bool:
        """Whether the printed function carves this program argument."""
        return arg.role in CARVED_ROLES or (arg.role in ("param", "grad") and arg.name in self.places)

    def args(self, prog) -> list:
        """The printed function's parameters: ``prog``'s arguments but the carved ones, then
        the arrays they are carved from."""
        kept = [a.name for a in prog.args if not self.carves(a)]
        sources = {WORK if a.role in CARVED_ROLES else self.places[a.name][0] for a in prog.args if self.carves(a)}
        return kept + [s for s in (FLAT_PARAMS, FLAT_GRAD, WORK) if s in sources]

    def lines(self, names, batch: str, local=None) -> list:
        """``local(name) = carve(...)`` for each carved name (``batch``: the text of the batch
        size; ``local``: the name the function uses, default the argument's)."""
        local = local or (lambda n: n)
        out = []
        for n in names:
            if n in self.places:
                source, offset, shape = self.places[n]
                out.append(f"{local(n)} = carve({source}, {offset}, {shape_text(shape, batch)})")
            else:
                out.append(f"{local(n)} = carve({WORK}, {polynomial_text(self.starts[n], batch)}, "
                           f"{shape_text(self.shapes[n], batch)})")
        return out


def workspace_layout(buffers, dtype) -> tuple:
    """({name: start}, end) of ``buffers`` laid out in order; a start is a tuple of
    coefficients (c0, c1, c2…) of 1, B, B²… in elements, each a multiple of a cache line."""
    line = max(1, CACHE_LINE // np.dtype(dtype).itemsize)   # elements per cache line
    starts, at = {}, (0,)
    for name, shape in buffers:
        starts[name] = at
        power = sum(d is None for d in shape)
        size = -(-math.prod(d for d in shape if d is not None) // line) * line   # × B**power
        at = tuple(c + (size if k == power else 0) for k, c in enumerate(at + (0,) * (power + 1 - len(at))))
    return starts, at


def polynomial_text(coefficients, batch: str) -> str:
    """c0 + c1·B + c2·B² as generated code reads it (``24 * B + 64``)."""
    terms = [" * ".join([str(c)] * (c != 1) + [batch] * k) or "1"
             for k, c in reversed(list(enumerate(coefficients))) if c]
    return " + ".join(terms) or "0"


def polynomial_value(coefficients, batch: int) -> int:
    return sum(c * batch ** k for k, c in enumerate(coefficients))


def shape_text(shape, batch: str) -> str:
    """A buffer's shape as generated code reads it (a scalar is stored as one element)."""
    dims = [batch if d is None else str(d) for d in shape] or ["1"]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Workspace:
    """The buffers of `workspace_buffers` for one batch size in one aligned allocation:
    ``work`` (what the printed functions take) and ``views`` by name."""

    def __init__(self, buffers, batch: int, dtype):
        starts, end = workspace_layout(buffers, dtype)
        self.work = aligned_zeros(polynomial_value(end, batch), dtype)
        self.views = {}
        for name, shape in buffers:
            dims = tuple(batch if d is None else d for d in shape) or (1,)
            at = polynomial_value(starts[name], batch)
            self.views[name] = self.work[at:at + math.prod(dims)].reshape(dims)


def aligned_zeros(shape, dtype) -> np.ndarray:
    """Zeros whose data starts on a cache-line boundary (an empty array has no data: NumPy gives
    it an address of its own, not ours). NumPy only promises 16 bytes, so a
    compiled loop's vector loads and stores could straddle two lines — at random, per process:
    W1 float64 took 1.80–1.87 ms an epoch with NumPy's buffers, 1.58–1.64 with these."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.zeros(nbytes + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(value, dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` in an `aligned_zeros` buffer."""
    value = np.asarray(value, dtype=dtype)
    out = aligned_zeros(value.shape, dtype)
    out[...] = value
    return out
