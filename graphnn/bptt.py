"""Backprop through time as data: the explicit and implicit terms of dL/dw, with numbers.

For a recurrence s_k = f(s_{k−1}, x_k; w) the total derivative splits per step k:

    dL/dw = Σ_k  dL/ds_k · ∂⁺s_k/∂w          (∂⁺: s_{k−1} held constant — the *immediate* partial)
    dL/ds_k = ∂L/∂s_k + dL/ds_{k+1} · ∂s_{k+1}/∂s_k

For a loss on the last state, dL/ds_k = ∂L/∂s_T · ∂s_T/∂s_k (a product of step Jacobians), so
term k is one *path* from L back to w through k's copy of the cell: k = T is the explicit
term, k < T the implicit ones. `bptt_terms` computes every factor from graph evaluation:
in the unrolled view each term is the autodiff record's contribution of copy k to dL/dw;
in the looped view it is what the reverse loop's body (the gradient cell) gives at step k.
Either way Σ terms = the autodiff gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autodiff import grad
from .errors import GradientError
from .evaluate import Evaluator
from .graph import Graph, Node
from .looped import Layout, run_forward
from .recurrent import scans_in
from .ops.base import describe


@dataclass
class PathTerm:
    """Step k's share of dL/dw: upstream · immediate, summed over the batch."""

    k: int
    kind: str                 # 'explicit' (k = T) or 'implicit' (through s_{k}, k < T)
    value: np.ndarray         # shaped like w: this term's contribution to dL/dw
    immediate: np.ndarray     # ∂⁺s_k/∂w[index], per example and state element: (B, n)
    step_jacobian: np.ndarray  # ∂s_k/∂s_{k−1}: (B, n, n)
    jacobian: np.ndarray      # ∂s_T/∂s_k (product of step Jacobians; identity at k = T): (B, n, n)
    upstream: np.ndarray      # dL/ds_k, the total derivative of the loss w.r.t. state k: (B, n)


@dataclass
class BPTTTerms:
    """Every step's term for dL/dw; ``total`` = Σ terms (= the autodiff gradient)."""

    wrt: Node
    index: tuple
    steps: int
    terms: list
    states: list              # s_0 … s_T, each (B, n) (carries flattened and joined)
    direct: list              # ∂L/∂s_k with later states held constant, k = 1 … T: (B, n)
    view: str                 # 'unrolled' or 'looped'
    autodiff: np.ndarray = field(default=None)
    output_terms: bool = False  # some y_t (not a carry) feeds the loss: terms include ∂⁺y_t/∂w

    @property
    def total(self) -> np.ndarray:
        return sum((t.value for t in self.terms), np.zeros(self.wrt.shape))

    def element(self, value):
        """A term's (or the total's) entry for the chosen element of w."""
        return float(np.asarray(value)[self.index])

    def truncated(self, k: int) -> np.ndarray:
        """The gradient if every cotangent travels back through at most k cells.

        A cotangent entering at step τ (∂L/∂s_τ) reaches step j ≤ τ through
        ∂s_τ/∂s_j; truncation keeps τ − j < k. For a loss on the last state this is the
        sum of the last k terms.
        """
        if k < 1:
            raise ValueError(f"truncation must be at least 1 step, not {k}")
        if self.output_terms:
            raise NotImplementedError("truncated(): the cell's per-step outputs feed the loss directly; "
                                      "use the looped view's truncate= instead")
        total = np.zeros(self.wrt.shape)
        for tau in range(1, self.steps + 1):
            g = self.direct[tau - 1]
            if not np.any(g):
                continue
            for j in range(tau, max(1, tau - k + 1) - 1, -1):
                total = total + self._contribution(j, g)
                g = np.einsum("bi,bij->bj", g, self.terms[j - 1].step_jacobian)
        return total

    def _contribution(self, j, upstream):
        """Σ_b upstream · ∂⁺s_j/∂w for the chosen element (w-shaped, zero elsewhere)."""
        out = np.zeros(self.wrt.shape)
        out[self.index] = float(np.sum(upstream * self.terms[j - 1].immediate))
        return out


def bptt_terms(loss: Node, wrt: Node, feeds=None, params=None, *, index=None, scan=None) -> BPTTTerms:
    """The BPTT terms of d(loss)/d(wrt) for the one recurrence in ``loss``'s graph.

    ``wrt`` is a parameter (or input) the cell uses; ``index`` picks the element whose
    immediate partials are listed (default: () for a scalar, else required for the
    per-element factors — the term values are always full arrays). ``scan`` is the
    `graphnn.recurrent.Scan` to explain if the graph has several recurrences.
    """
    graph = Graph([loss])
    if scan is None:
        found = scans_in(graph)
        if len(found) != 1:
            raise GradientError(f"bptt_terms needs exactly one recurrence in the graph of {describe(loss)}, "
                                f"found {len(found)}; pass scan=")
        scan = found[0]
    cell = scan.cell
    if wrt not in cell.free:
        raise GradientError(f"{describe(wrt)} is not used by the recurrence's cell "
                            f"(it uses {', '.join(describe(f) for f in cell.free) or 'nothing'})")
    if index is None:
        index = () if not wrt.shape else None
    index = tuple(index) if index is not None else (0,) * len(wrt.shape)

    # forward: the loss graph's values of the recurrence's inputs, then the states
    ev_values = Evaluator([loss] + list(scan.inits) + list(scan.xs)).run(feeds, params)
    inits = [ev_values[n] for n in scan.inits]
    xs = [ev_values[n] for n in scan.xs]
    free = [ev_values.get(f, _param_value(f, params)) for f in cell.free]
    fake = _FakeLoop(scan)
    _, _, history, dtype, B = run_forward(fake, inits, xs, free, keep_history=True)
    states = [_flat(c) for c in history]
    w_pos = cell.free.index(wrt)

    immediates, step_jacs = _local_factors(cell, history, xs, free, w_pos, index, dtype)
    direct, upstream, values, output_terms = _adjoints(scan, loss, graph, feeds, params, history, xs,
                                                       free, w_pos, dtype)
    T = scan.length
    jac_prod = [None] * (T + 1)
    n = states[0].shape[1]
    jac_prod[T] = np.broadcast_to(np.eye(n), (B, n, n)).copy()
    for k in range(T - 1, 0, -1):
        jac_prod[k] = np.einsum("bij,bjk->bik", jac_prod[k + 1], step_jacs[k + 1 - 1])
    terms = [PathTerm(k, "explicit" if k == T else "implicit", values[k - 1], immediates[k - 1],
                      step_jacs[k - 1], jac_prod[k], upstream[k - 1]) for k in range(1, T + 1)]
    autodiff = Evaluator(grad(loss, [wrt])[wrt])(feeds, params)
    return BPTTTerms(wrt, index, T, terms, states, direct, scan.mode, np.asarray(autodiff), output_terms)


class _FakeLoop:
    """Just enough of a loop node for `run_forward` (attrs and input batchedness)."""

    def __init__(self, scan):
        self.attrs = {"cell": scan.cell, "length": scan.length}
        self.inputs = list(scan.inits) + list(scan.xs) + list(scan.cell.free)   # run_forward's values, in order


def _param_value(node, params):
    params = params or {}
    return np.asarray(params.get(node, params.get(node.name, node.value)), dtype=float)


def _flat(carries):
    B = carries[0].shape[0]
    return np.concatenate([np.reshape(c, (B, -1)) for c in carries], axis=1)


def _split_flat(vec, shapes, B):
    out, off = [], 0
    for s in shapes:
        size = int(np.prod(s[1:], dtype=int))
        out.append(vec[:, off:off + size].reshape((B,) + tuple(s[1:])))
        off += size
    return out


def _local_factors(cell, history, xs, free, w_pos, index, dtype):
    """Per step k: ∂⁺s_k/∂w[index] (B, n) and ∂s_k/∂s_{k−1} (B, n, n), one example at a time
    (its rows of the carries, the sequences and any batched input the cell reads)."""
    gcell = cell.grad_cell
    shapes = cell.carry_shapes
    T, B = len(history) - 1, history[0][0].shape[0]
    n = _flat(history[0]).shape[1]
    batched = [bool(f.shape) and f.shape[0] is None for f in cell.free]
    imm, jac = [], []
    for k in range(1, T + 1):
        P, J = np.zeros((B, n)), np.zeros((B, n, n))
        for b in range(B):
            carries = [c[b:b + 1] for c in history[k - 1]]
            x_k = [x[b:b + 1, k - 1] for x in xs]
            free_b = [v[b:b + 1] if is_b else v for v, is_b in zip(free, batched)]
            gy = [np.zeros((1,) + tuple(s[1:]), dtype=dtype) for s in cell.y_shapes]
            for j in range(n):
                e = np.zeros((1, n), dtype=dtype)
                e[0, j] = 1.0
                dc, _, df = gcell.step(carries, x_k, free_b, _split_flat(e, shapes, 1), gy, dtype)
                J[b, j] = _flat(dc)[0]
                P[b, j] = np.asarray(df[w_pos])[index]
        imm.append(P)
        jac.append(J)
    return imm, jac


def _adjoints(scan, loss, graph, feeds, params, history, xs, free, w_pos, dtype):
    """Direct cotangents ∂L/∂s_k, totals dL/ds_k and each step's term value (w-shaped)."""
    cell, T = scan.cell, scan.length
    B = history[0][0].shape[0]
    gcell = cell.grad_cell
    nc = len(cell.carry_in)
    if scan.mode == "looped":
        g_packed = Evaluator(grad(loss, [scan.node])[scan.node])(feeds, params)
        parts = Layout(cell, T).unpack_values(g_packed)
        g_final, g_ys = parts[:nc], parts[nc:]
    else:
        g_final, g_ys = _unrolled_cotangents(scan, loss, feeds, params, B, dtype)
    alias = _aliases(cell)
    n = _flat(history[0]).shape[1]
    direct = []
    for k in range(1, T + 1):
        d = [np.array(g, dtype=float) if k == T else np.zeros_like(g, dtype=float) for g in g_final]
        for j, i in alias.items():
            d[i] = d[i] + g_ys[j][:, k - 1]
        direct.append(_flat(d))
    upstream, values = [None] * T, [None] * T
    gc = list(g_final)
    for k in range(T, 0, -1):
        gy = [v[:, k - 1] for v in g_ys]
        upstream[k - 1] = _flat(gc) + sum((_flat([gy[j] if m == i else np.zeros_like(gc[m])
                                                  for m in range(nc)]) for j, i in alias.items()),
                                          np.zeros((B, n)))
        dc, _, df = gcell.step(history[k - 1], [x[:, k - 1] for x in xs], free, gc, gy, dtype)
        values[k - 1] = np.asarray(df[w_pos], dtype=float)
        gc = dc
    if scan.mode == "unrolled":
        _check_against_record(scan, loss, values, feeds, params, w_pos)
    free_y = [j for j in range(len(g_ys)) if j not in alias and np.any(g_ys[j])]
    return direct, upstream, values, bool(free_y)


def _unrolled_cotangents(scan, loss, feeds, params, B, dtype):
    """∂L/∂(final carry) and ∂L/∂y_t read off the unrolled graph's autodiff record."""
    cell = scan.cell
    final = list(scan.states[-1])
    ys = [y for out in scan.outputs for y in out]
    targets = [n for n in final + ys]
    gr = grad(loss, targets, disconnected="zero")
    record = gr.record
    built = set().union(*scan.steps) if scan.steps else set()

    def direct(node):
        # only the terms from consumers outside the recurrence: the loss's direct use
        terms = [t.contribution for t in record.terms_into(node) if t.consumer not in built]
        if not terms:
            return np.zeros((B,) + tuple(node.shape[1:]), dtype=dtype)
        vals = Evaluator(terms)(feeds, params)
        return np.broadcast_to(sum(vals), (B,) + tuple(node.shape[1:]))

    alias = _aliases(cell)
    g_final = [np.zeros((B,) + tuple(n.shape[1:])) if i in alias.values() else direct(n)
               for i, n in enumerate(final)]
    T = scan.length
    g_ys = [np.stack([direct(scan.outputs[t][j]) for t in range(T)], axis=1)
            for j in range(len(cell.y_out))]
    return g_final, g_ys


def _aliases(cell):
    """Per-step outputs that *are* a new carry (y_t = s_t): output j → carry i."""
    return {j: cell.carry_out.index(y) for j, y in enumerate(cell.y_out) if y in cell.carry_out}


def _check_against_record(scan, loss, values, feeds, params, w_pos):
    """In the unrolled view each term is also copy k's contribution in the autodiff record."""
    w = scan.cell.free[w_pos]
    record = grad(loss, [w]).record
    for k, built in enumerate(scan.steps, 1):
        contribs = [t.contribution for t in record.terms_into(w) if t.consumer in built]
        if not contribs:
            continue
        got = sum(Evaluator(contribs)(feeds, params))
        if not np.allclose(got, values[k - 1], rtol=1e-8, atol=1e-12):
            raise AssertionError(f"BPTT term {k} disagrees with the unrolled graph's autodiff record")
