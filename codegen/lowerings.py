"""The built-in lowerings: one function per op of graphnn's core catalog.

Each is ``fn(node, ctx) -> Lowered`` (see lower.py). Elementwise ops give an element
formula (fused and inlined by the scheduler); matmul, softmax and friends give steps.
"""
from __future__ import annotations

import functools
import math
from collections import Counter

import sympy

from graphnn import ops
from graphnn.ops.elementwise import V

from .lower import CodegenError, Lowered, broadcast_read, register_lowering
from .schedule import BATCH, BATCH_F, Accumulate, Concat, Copy, Kept, Loop, MatMul, RowSoftmax, Scatter, SoftmaxCE, \
    View

#: matmuls whose fixed dimensions are all at most this are written as loops (BLAS call
#: overhead dominates a 2×2 product)
TINY = 16


def _map(node, ctx):
    written = ctx.shared.get(("written by", node))
    if written is not None:   # a BPTT total the reverse sweep writes itself (lower_loop.py)
        return written
    if _copy_of_an_array(node, ctx):
        return Lowered(view=("alias", ()))
    expr = node.attrs.get("compute", node.attrs["expr"])

    def element(index, read):
        subs = {V[pos]: broadcast_read(read, pos, node, index) for pos in range(len(node.inputs))}
        return keep_restricted_steps(expr, subs)
    return Lowered(element=element)


#: functions defined on part of the real line only: NaN outside it in the reference
RESTRICTED = (sympy.log, sympy.asin, sympy.acos, sympy.atanh, sympy.acosh, sympy.acoth, sympy.asec,
              sympy.acsc)


def restricted_steps(expr) -> Counter:
    """How many restricted steps ``expr`` takes, by kind: logs and inverse functions defined on
    part of the line, roots and other non-integer powers, reciprocals (x⁻ⁿ: inf at 0)."""
    return Counter(dict(_restricted_steps(expr)))


@functools.lru_cache(maxsize=8192)   # an element is the operand of the next: counted once
def _restricted_steps(expr) -> tuple:
    return tuple(sorted(_own_steps(expr, {}).items()))


def _own_steps(expr, subs) -> Counter:
    """`restricted_steps` of ``expr`` itself, a power's exponent read with ``subs`` put in."""
    out = Counter()
    for e in sympy.preorder_traversal(expr):
        if isinstance(e, RESTRICTED):
            out[type(e).__name__] += 1
        elif isinstance(e, sympy.Pow):
            exp = e.exp.xreplace(subs) if subs else e.exp
            if not (exp.is_integer and exp.is_nonnegative):
                out["power"] += 1
    return out


def keep_restricted_steps(expr, subs):
    """``expr`` with ``subs`` put in, as sympy simplifies it — unless that simplification drops a
    restricted step of the operands or of ``expr`` (exp(log z) → z): then each operand is
    `Kept`, so the fused code computes node by node, as the reference does (NaN where it does).

    The steps the unsimplified expression takes are counted without building it: ``expr``'s
    own, and each operand's as often as ``expr`` reads it."""
    folded = expr.xreplace(subs)
    spelled = _own_steps(expr, subs)
    for v, e in subs.items():
        uses = expr.count(v)
        for kind, n in _restricted_steps(e):
            spelled[kind] += uses * n
    if (spelled and spelled - restricted_steps(folded)) or _made_complex(folded, expr, subs):
        return expr.xreplace({v: Kept(e, k) for k, (v, e) in enumerate(subs.items())})
    return folded


def _made_complex(folded, expr, subs) -> bool:
    """Whether building the expression brought in the imaginary unit: sympy writes the root of
    an operand it knows is negative as i·√|…| (√(−|x|) → i·√|x|), where the reference computes
    NaN — and Numba would type the element complex."""
    return folded.has(sympy.I) and not expr.has(sympy.I) and not any(e.has(sympy.I) for e in subs.values())


def _expand(node, ctx):
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]

    def element(index, read):
        src = [(0 if keep else None) if a in axes else s for a, s in enumerate(index)]
        return read(0, tuple(s for s in src if s is not None))
    return Lowered(element=element, cheap=True, shape_only=(1,))


def _count(node, ctx):
    x, axes = node.inputs[0], node.attrs["axes"]
    fixed = math.prod(x.shape[a] for a in axes if x.shape[a] is not None)
    batched = any(x.shape[a] is None for a in axes)
    value = sympy.Integer(fixed) * (BATCH_F if batched else 1)
    return Lowered(element=lambda index, read: value, cheap=True, shape_only=(0,))


def _reduction(op):
    def lower(node, ctx):
        return Lowered(reduction=(op, tuple(node.attrs["axes"]), bool(node.attrs["keepdims"])))
    return lower


def _operand(node, ctx):
    """A matmul operand as (array name, transposed?): a 2-d transpose is read through."""
    if isinstance(node.op, ops.Transpose) and node.ndim == 2 and tuple(node.attrs["axes"]) == (1, 0):
        return ctx.array(node.inputs[0]), True
    return ctx.array(node), False


def _blas_ready(x):
    """Operands BLAS takes (codegen/gemm.py): whole buffers, and 2-d transposes of them (not strided slices)."""
    if isinstance(x.op, ops.Transpose):
        return x.ndim == 2 and tuple(x.attrs["axes"]) == (1, 0) and _blas_ready(x.inputs[0])
    if isinstance(x.op, ops.Index) and selects_all(x):
        return _blas_ready(x.inputs[0])
    return not isinstance(x.op, (ops.Index, ops.StopGradient))


# -- copies that are the array itself: bound to it, not copied ----------------------------------
# (a recurrence's carry unpacked from its packed row, s_T = copy(row), and their gradients:
# each copy a helper call, ~40 ms of compile)

def selects_all(x) -> bool:
    """Whether the Index node ``x`` selects its whole operand as is (every axis a full slice, step 1)."""
    return _whole(tuple(x.attrs["spec"]), x.inputs[0].shape)


def _whole(spec, shape) -> bool:
    if len(spec) > len(shape) or any(k[0] != "s" for k in spec):
        return False
    return all(k[1] in (None, 0) and k[3] in (None, 1) and (k[2] is None or (d is not None and k[2] >= d))
               for k, d in zip(spec, shape))


def identity_map(node) -> bool:
    """Whether ``node`` is a map that is its one operand unchanged (a copy node, ∂copy/∂x, x * 1)."""
    return isinstance(node.op, ops.Map) and len(node.inputs) == 1 \
        and node.attrs.get("compute", node.attrs["expr"]) == V[0]


def _copy_of_an_array(node, ctx) -> bool:
    """An identity map (a copy node) of an array the program computes anyway, contiguous and
    not a parameter's or an input's memory, the copy not an output and read as a whole array
    only (an elementwise reader inlines the copy instead, fused into its loop): a name for
    that array."""
    if not identity_map(node) or node in ctx.outputs:
        return False
    if any(isinstance(c.op, _ELEMENTWISE_READERS) for c, _ in ctx.consumers(node)):
        return False
    x = node.inputs[0]
    if tuple(x.shape) != tuple(node.shape) or not (_contiguous(x) and _blas_ready(x) and _computed(x)):
        return False
    low = ctx.lowered.get(x)
    return low is not None and (low.view is not None or (low.element is None and low.reduction is None))


#: ops that read an operand element by element (inlined into their loop, not as an array)
_ELEMENTWISE_READERS = (ops.Map, ops.Expand, ops.Sum, ops.Max, ops.Count)


def _computed(x) -> bool:
    """Whether x's array is one the program computes (through views), not a leaf's memory."""
    while x.kind == "op" and isinstance(x.op, (ops.Index, ops.Reshape, ops.Transpose, ops.StopGradient)):
        x = x.inputs[0]
    return x.kind == "op"


def _matmul_steps(node, ctx, a, b, out) -> list:
    """The steps of ``out = a @ b``: one BLAS call where the operands allow it, else loops."""
    flat = _rows_matmul(node, ctx, a, b, out)
    if flat is not None:
        return flat
    if a.ndim != 2 or b.ndim != 2 or not (_blas_ready(a) and _blas_ready(b)):
        return [_matmul_loops(node, ctx, a, b, out)]
    return [_matmul_step(node, ctx, a, b, out)]


def _rows_matmul(node, ctx, a, b, out):
    """(…, m, k) @ (k, n), a a whole buffer: one GEMM on its (… · m, k) view.

    A transformer's projections and feed-forward layers (and their input gradients, δ Wᵀ)
    are (B, T, d) @ (d, k): as loops they ran at a fraction of BLAS speed. Only computed
    buffers (C-contiguous by construction) and inputs (the backends pass them C-contiguous)
    are viewed so; tiny products keep their loops."""
    if a.ndim < 3 or b.ndim != 2 or a.kind not in ("op", "input") or isinstance(a.op, ops.Transpose) \
            or not (_blas_ready(a) and _contiguous(a) and _blas_ready(b)):
        return None
    k, n = a.shape[-1], b.shape[-1]
    if k is None or n is None or (k <= TINY and n <= TINY):
        return None
    an, (bn, tb) = ctx.array(a), _operand(b, ctx)
    a_rows, out_rows = ctx.fresh(f"{an}_rows"), ctx.fresh(f"{out}_rows")
    rows = " × ".join(["B", *map(str, a.shape[1:-1])])
    what = f"{out} = {an} @ {bn}{'.T' if tb else ''}: one GEMM over all {rows} rows"
    return [View(a_rows, an, "reshape", (-1, k)), View(out_rows, out, "reshape", (-1, n)),
            MatMul(out_rows, a_rows, bn, False, tb, False, (BATCH, k, n), comment=what)]


def _matmul_step(node, ctx, a, b, out):
    (an, ta), (bn, tb) = _operand(a, ctx), _operand(b, ctx)
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    fixed = [d for d in (m, k, n) if d is not None]
    tiny = all(d <= TINY for d in fixed)
    shape = tuple("B" if d is None else d for d in (m, k, n))
    text = f"{an}{'.T' if ta else ''} @ {bn}{'.T' if tb else ''}"
    what = f"{out} = {text}" + ("" if out == ctx.name(node) else f"  ({ctx.name(node)} adds the bias in the loop below)")
    return MatMul(out, an, bn, ta, tb, tiny, shape, comment=what)


def _matmul_loops(node, ctx, a, b, out):
    """Batched (N-d, broadcasting) matmul as one loop nest accumulating over k (j innermost)."""
    an, bn = ctx.array(a), ctx.array(b)
    lead_shape = tuple(node.shape[:-2])
    lead = tuple(sympy.Symbol(f"n{d}") for d in range(len(lead_shape)))
    i, k, j = sympy.symbols("i k j")

    def operand(name, x, last_two):
        offset = len(lead) - (x.ndim - 2)
        idx = tuple(0 if d == 1 else lead[offset + n] for n, d in enumerate(x.shape[:-2]))
        return sympy.Indexed(sympy.IndexedBase(name), *idx, *last_two)
    extents = tuple(BATCH if d is None else sympy.Integer(d) for d in lead_shape + (a.shape[-2], a.shape[-1],
                                                                                  b.shape[-1]))
    body = [Accumulate(sympy.Indexed(sympy.IndexedBase(out), *lead, i, j),
                       operand(an, a, (i, k)) * operand(bn, b, (k, j)))]
    return Loop(lead + (i, k, j), extents, body, comment=f"{out} = {an} @ {bn} (batched, as loops)")


def _matmul(node, ctx):
    a, b = node.inputs
    consumers = ctx.consumers(node)
    if len(consumers) == 1 and node not in ctx.outputs and _batch_contraction(consumers[0][0]):
        return Lowered(element=_absorbed, cheap=True)   # its Σ over the batch computes both (below)
    return Lowered(steps=_matmul_steps(node, ctx, a, b, ctx.name(node)))


def _absorbed(index, read):
    raise AssertionError("codegen: a batched product folded into its sum over the batch was read")


def _batch_contraction(node):
    """(x, g) when ``node`` is Σ_b x_bᵀ g_b — a sum over axis 0 of (B, T, d)ᵀ @ (B, T, k), the weight
    gradient of a (B, T, d) @ (d, k) product — with x and g whole contiguous buffers, else None."""
    if not isinstance(node.op, ops.Sum) or tuple(node.attrs["axes"]) != (0,) or node.attrs["keepdims"]:
        return None
    (prod,) = node.inputs
    if not isinstance(prod.op, ops.MatMul) or prod.ndim != 3 or prod.shape[0] is not None:
        return None
    xt, g = prod.inputs
    if not isinstance(xt.op, ops.Transpose) or tuple(xt.attrs["axes"]) != (0, 2, 1):
        return None
    (x,) = xt.inputs
    if x.ndim != 3 or g.ndim != 3 or x.shape[0] is not None or g.shape[0] is not None or None in x.shape[1:] \
            or None in g.shape[1:]:
        return None
    if not all(_blas_ready(v) and _contiguous(v) and v.kind in ("op", "input") for v in (x, g)):
        return None
    return x, g


def _sum(node, ctx):
    pair = _batch_contraction(node)
    if pair is None:
        return Lowered(reduction=("sum", tuple(node.attrs["axes"]), bool(node.attrs["keepdims"])))
    x, g = pair
    (d, k), out = (x.shape[2], g.shape[2]), ctx.name(node)
    xn, gn = ctx.array(x), ctx.array(g)
    x_rows, g_rows = ctx.fresh(f"{xn}_rows"), ctx.fresh(f"{gn}_rows")
    rows = " × ".join(["B", *map(str, x.shape[1:-1])])
    what = f"{out} = Σ_b {xn}_bᵀ @ {gn}_b: one GEMM over all {rows} rows"
    return Lowered(steps=[View(x_rows, xn, "reshape", (-1, d)), View(g_rows, gn, "reshape", (-1, k)),
                          MatMul(out, x_rows, g_rows, True, False, False, (d, BATCH, k), comment=what)])


def _linear(node, ctx):
    """x @ W into a scratch buffer (BLAS); the bias add is fused into the consumer's loop."""
    x, w, _ = node.inputs
    temp = ctx.temp(f"{ctx.name(node)}_xW", node.shape)
    steps = _matmul_steps(node, ctx, x, w, temp)

    def element(index, read):
        return ctx.load(temp, index) + broadcast_read(read, 2, node, index)
    return Lowered(steps=steps, element=element)


def _view(kind, key=None):
    def lower(node, ctx):
        args = tuple(node.attrs[key]) if key else ()
        if kind == "index" and selects_all(node):
            return Lowered(view=("alias", ()))
        if kind == "reshape":
            x = node.inputs[0]
            if not _contiguous(x) or (isinstance(x.op, ops.Index) and not node.shape):
                # a copy: e.g. attention heads transposed then merged; a 0-d element of a
                # slice goes to its one-element buffer, which the code reads as out[0]
                return Lowered(steps=[Copy(ctx.name(node), ctx.array(node.inputs[0]))])
            args = tuple(node.shape)
        return Lowered(view=(kind, args))
    return lower


def _contiguous(x):
    """Whether x's array is C-contiguous, as Numba types it (views of transposes and of most
    slices are not)."""
    if isinstance(x.op, ops.Index):
        return (selects_all(x) or contiguous_index(x.attrs["spec"])) and _contiguous(x.inputs[0])
    if isinstance(x.op, ops.Transpose):
        return False
    if isinstance(x.op, ops.Reshape):
        return True   # a view of a contiguous array, else a contiguous copy (_view below)
    if isinstance(x.op, ops.StopGradient):
        return _contiguous(x.inputs[0])
    return True


def contiguous_index(spec) -> bool:
    """Whether indexing a C-contiguous array by ``spec`` gives an array Numba types C-contiguous:
    integers, then at most one slice of step 1 as the last index (``a[3]``, ``a[2, 0:16]``,
    ``flat[256:272]``); Numba types ``a[:, 0:16]`` (a slice before the last index) as strided,
    so such an index stays a copy before a reshape."""
    *outer, last = spec
    if any(k[0] != "i" for k in outer):
        return False
    return last[0] == "s" and (last[1] is None or last[3] == 1)   # all integers: a scalar


def _softmax(node, ctx):
    (x,) = node.inputs
    fused = _fused_sce(x, ctx)
    if fused is not None and node in fused.produces:
        return fused
    return Lowered(steps=[RowSoftmax(ctx.name(node), ctx.array(x), comment=f"{ctx.name(node)} = softmax({ctx.name(x)})",
                                     ndim=x.ndim)])


def _log_softmax(node, ctx):
    (x,) = node.inputs
    return Lowered(steps=[RowSoftmax(ctx.name(node), ctx.array(x), log=True,
                                     comment=f"{ctx.name(node)} = log_softmax({ctx.name(x)})", ndim=x.ndim)])


def _softmax_cross_entropy(node, ctx):
    z, t = node.inputs
    if tuple(z.shape) != tuple(t.shape):
        raise CodegenError(f"codegen: softmax cross-entropy {node.label()!r} needs logits and targets of "
                           f"one shape, got {z.shape} and {t.shape}")
    return _fused_sce(z, ctx, node)


def _fused_sce(z, ctx, sce=None):
    """One row pass computes the loss and, if the gradient needs it, softmax(z) (p − t)."""
    if sce is None:
        sce = next((c for c, pos in ctx.consumers(z) if isinstance(c.op, ops.SoftmaxCrossEntropy) and pos == 0), None)
        if sce is None:
            return None
    key = ("sce", sce)
    if key not in ctx.shared:
        sm = ctx.sibling(z, ops.Softmax)
        t = sce.inputs[1]
        if sm is not None and ctx.graph.index[t] > ctx.graph.index[sm]:
            sm = None  # targets computed after the softmax: keep them apart
        step = SoftmaxCE(ctx.name(sce), ctx.array(z), ctx.array(t), ctx.name(sm) if sm is not None else None,
                         comment=f"{ctx.name(sce)} = softmax cross-entropy of {ctx.name(z)} against {ctx.name(t)}"
                         + (f", and {ctx.name(sm)} = softmax({ctx.name(z)}) for the gradient p − t"
                            if sm is not None else ""), ndim=z.ndim)
        ctx.shared[key] = Lowered(steps=[step], produces=(sm,) if sm is not None else ())
    return ctx.shared[key]


def _index_grad(node, ctx):
    g, like = node.inputs
    if tuple(g.shape) == tuple(like.shape) and _whole(node.attrs["spec"], like.shape) and _contiguous(g) \
            and _blas_ready(g):
        return Lowered(view=("alias", ()), shape_only=(1,))   # the whole array scattered: the array
    return Lowered(steps=[Scatter(ctx.name(node), ctx.array(g), tuple(node.attrs["spec"]))], shape_only=(1,))


def _concat(node, ctx):
    return Lowered(steps=[Concat(ctx.name(node), tuple(ctx.array(x) for x in node.inputs), node.attrs["axis"])])


for _op, _fn in {
    ops.Map: _map, ops.Expand: _expand, ops.Count: _count, ops.Sum: _sum,
    ops.Max: _reduction("max"), ops.MatMul: _matmul, ops.Linear: _linear, ops.Transpose: _view("transpose", "axes"),
    ops.Reshape: _view("reshape"), ops.Index: _view("index", "spec"), ops.StopGradient: _view("alias"),
    ops.Softmax: _softmax, ops.LogSoftmax: _log_softmax, ops.SoftmaxCrossEntropy: _softmax_cross_entropy,
    ops.IndexGrad: _index_grad, ops.Concat: _concat,
}.items():
    register_lowering(_op, _fn)
