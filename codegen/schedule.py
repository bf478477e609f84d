"""The schedule: *what* a compiled program computes, independent of how it is printed.

`lower` turns graph nodes into a `Program`: its arguments (`Buffer`s) and a list of plain
dataclass steps. An emitter (emit_cpu for Numba on the CPU; a CUDA emitter can reuse the
same schedule) prints each step type. Expressions are sympy: array elements are
``sympy.Indexed`` reads (``h[i, j]``), scalars are ``sympy.Symbol`` locals, and the
batch size is the symbol ``B`` (``nB`` is B as a float in the kernel's dtype). `Kept(e, k)`
is ``e`` itself, shielded from sympy's automatic simplification (see `Kept`).

Step types:
    Loop        a fused elementwise loop nest: lets (scalar temporaries), stores, and
                reductions accumulated inside the same loop
    Scalar      one scalar local: ``name = expr``
    MatMul      out = op(a) @ op(b) (BLAS, or explicit loops when tiny)
    View        a no-copy view of another array (transpose, reshape, basic index, alias)
    RowSoftmax  softmax / log-softmax over the last axis, row by row
    SoftmaxCE   softmax cross-entropy per row, optionally writing the probabilities too
    Fill        out[...] = value
    Scatter     out = zeros; out[spec] = g   (the gradient of basic indexing)
    Concat      out = concatenate(inputs, axis)
    Copy        out[...] = src
    Update      the optimizer's rules over flat parameter/gradient/state arrays
Other helpers add step types together with an emitter for them (emit_cpu.register_emitter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

BATCH = sympy.Symbol("B")      # batch size (an int in the kernel)
BATCH_F = sympy.Symbol("nB")   # batch size as a float of the kernel's dtype


class Kept(sympy.Function):
    """``Kept(e, k)`` is the value ``e``, opaque to sympy: printed as ``(e)``; ``k`` (an integer)
    only keeps two copies of one operand apart.

    sympy simplifies as it builds: exp(log z) → z, (√z)² → z. Where the graph spells such a
    composition as two nodes, the reference computes the inner node first — NaN for z < 0,
    which stops training and names the node — while the fused loop would compute z and go
    on, silently. The lowering wraps the operands in `Kept` where building the expression
    would drop such a restricted step (a log, a root, a reciprocal), so the compiled code
    computes what the reference does (codegen/lowerings.py)."""
    nargs = 2

    def _eval_derivative(self, s):
        raise TypeError("Kept: a fused expression is printed, never differentiated")


@dataclass
class Buffer:
    """An array (or scalar) a program reads or writes.

    role: 'input' (fed data), 'param', 'const', 'grad' (a gradient output), 'output',
    'temp' (preallocated per batch size by the caller), 'state' (optimizer state).
    shape uses None for the batch axis (always the first axis).
    """

    name: str
    shape: tuple
    role: str
    node: object = None        # the graph node it holds, if any

    @property
    def batched(self) -> bool:
        return bool(self.shape) and self.shape[0] is None


@dataclass
class Let:
    """A scalar temporary inside a loop body: ``name = expr``."""
    name: sympy.Symbol
    expr: sympy.Expr


@dataclass
class Store:
    """``target = expr`` for one array element (target is an Indexed)."""
    target: sympy.Indexed
    expr: sympy.Expr


@dataclass
class Accumulate:
    """``target op= expr``: a reduction carried by the loop (op 'sum' or 'max').

    target is an Indexed (a reduced array, initialised before the loop) or a Symbol
    (a scalar accumulator).
    """
    target: object
    expr: sympy.Expr
    op: str = "sum"


@dataclass
class Loop:
    """A fused elementwise loop nest over ``extents`` with index symbols ``indices``."""
    indices: tuple
    extents: tuple
    body: list = field(default_factory=list)
    comment: str = ""

    def accumulators(self):
        return [s for s in self.body if isinstance(s, Accumulate)]


@dataclass
class Scalar:
    name: sympy.Symbol
    expr: sympy.Expr
    comment: str = ""


@dataclass
class MatMul:
    """out = a' @ b' with a' = a.T if trans_a (likewise b); tiny: explicit loops."""
    out: str
    a: str
    b: str
    trans_a: bool = False
    trans_b: bool = False
    tiny: bool = False
    shape: tuple = ()       # (m, k, n), entries int or the batch symbol
    comment: str = ""


@dataclass
class View:
    """``name = <view of source>``: kind 'transpose' (args: axes), 'reshape' (args: shape),
    'index' (args: basic index spec), 'alias'."""
    name: str
    source: str
    kind: str
    args: tuple = ()
    comment: str = ""


@dataclass
class RowSoftmax:
    out: str
    x: str
    log: bool = False
    comment: str = ""
    ndim: int = 2           # > 2: rows of the last axis of a (…, n) array


@dataclass
class SoftmaxCE:
    """loss[r] = −Σ_k t[r,k]·log softmax(z[r])_k; probs (if set) = softmax(z)."""
    loss: str
    logits: str
    targets: str
    probs: str | None = None
    comment: str = ""
    ndim: int = 2


@dataclass
class Fill:
    out: str
    value: float = 0.0


@dataclass
class Scatter:
    out: str
    g: str
    spec: tuple
    comment: str = ""


@dataclass
class Concat:
    out: str
    inputs: tuple
    axis: int
    comment: str = ""


@dataclass
class Copy:
    out: str
    src: str


@dataclass
class Update:
    """The optimizer's rules, one loop over the flat trainable parameters.

    rules: [(assigned symbol, expr)] in w, g, the state names, the hyperparameters and t;
    hoisted: [(symbol, expr)] of per-step scalars (no per-element symbol) computed once.
    """
    rules: list
    hoisted: list
    state: tuple
    hyper: tuple


@dataclass
class Program:
    """One compiled function: its name, arguments in order, steps and returned scalar."""
    name: str
    args: list
    steps: list
    returns: sympy.Symbol | None = None
    doc: str = ""

    def arg(self, name):
        return next(a for a in self.args if a.name == name)

    def temps(self):
        return [a for a in self.args if a.role == "temp"]
