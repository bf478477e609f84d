"""Random graphs for the differential tests: each built twice, as graphnn nodes and as a PyTorch function.

A graph is a sum of *terms*; a term is a recipe — a list of steps applied to the batched
input x (B, 4) — ending in a reduction to a scalar. Recipes are plain tuples, so hypothesis
draws and shrinks them. Each step builds the graphnn node and, beside it, the same thing as
a function of torch tensors: PyTorch's autograd in float64 is then an oracle independent of
graphnn's own autodiff (tests/test_differential.py). The steps cover what the fuzzing of
issue 17 found the compiler refusing: gradients that end in views (x @ Wᵀ, a (1, n) bias, a
reshaped vector), |exp(tanh z)|, a reshaped scalar concatenated, the batch axis moved off
the front, slices of every step sign, and a 0-d output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import graphnn as gn

N_IN = 4          # features of the input x
BATCH = 3         # rows fed
MAX_WIDTH = 8


@dataclass
class Built:
    """A graph under construction: parameters (graphnn node, initial value) in creation order."""

    rng: np.random.Generator
    params: list = field(default_factory=list)

    def param(self, shape, scale=0.5):
        value = self.rng.uniform(-scale, scale, shape)
        node = gn.parameter(f"p{len(self.params)}", value)
        self.params.append((node, value))
        return node, len(self.params) - 1


ACTIVATIONS = {
    "tanh": (gn.tanh, lambda t, T: T.tanh(t)),
    "sigmoid": (gn.sigmoid, lambda t, T: T.sigmoid(t)),
    "softplus": (gn.softplus, lambda t, T: T.nn.functional.softplus(t)),
    "silu": (gn.silu, lambda t, T: T.nn.functional.silu(t)),
    "abs_exp_tanh": (lambda h: gn.absolute(gn.exp(gn.tanh(h))), lambda t, T: T.abs(T.exp(T.tanh(t)))),
    "square": (lambda h: h * h, lambda t, T: t * t),
    "neg_half": (lambda h: -0.5 * h, lambda t, T: -0.5 * t),
    "times_zero_plus": (lambda h: gn.mul(h, 0.0) + h, lambda t, T: t * 0.0 + t),
}


# -- steps: (node, torch fn, width) -> (node, torch fn, width); P(i) is the i-th torch parameter --------

def _step(kind, arg, b: Built, h, f, n):
    if kind == "act":
        gfn, tfn = ACTIVATIONS[arg]
        return gfn(h), (lambda P, x, f=f: tfn(f(P, x), _T())), n
    if kind == "matmul":
        W, i = b.param((n, arg))
        return h @ W, (lambda P, x, f=f: f(P, x) @ P[i]), arg
    if kind == "matmul_T":                       # x @ Wᵀ: W's gradient is a transpose (a view)
        W, i = b.param((arg, n))
        return h @ W.T, (lambda P, x, f=f: f(P, x) @ P[i].T), arg
    if kind == "linear":
        m, row = arg
        W, i = b.param((n, m))
        B_, j = b.param((1, m) if row else (m,))
        return gn.linear(h, W, B_), (lambda P, x, f=f: f(P, x) @ P[i] + P[j]), m
    if kind == "bias_row":                       # a (1, n) bias: its gradient is a reshape (a view)
        B_, i = b.param((1, n))
        return h + B_, (lambda P, x, f=f: f(P, x) + P[i]), n
    if kind == "bias_reshaped":                  # a vector reshaped to a row
        v, i = b.param((n,))
        return h + gn.reshape(v, (1, n)), (lambda P, x, f=f: f(P, x) + P[i].reshape(1, n)), n
    if kind == "column":                         # an (n, 1) column
        W, i = b.param((n, 1))
        return h @ W, (lambda P, x, f=f: f(P, x) @ P[i]), 1
    if kind == "slice":
        start, stop, step = arg
        sl = slice(start, stop, step)
        width = len(range(*sl.indices(n)))
        return h[:, sl], (lambda P, x, f=f: _slice(f(P, x), sl, n)), width
    if kind == "concat_self":
        return gn.concat([h, gn.tanh(h)], axis=1), (lambda P, x, f=f: _T().cat([f(P, x), f(P, x).tanh()], 1)), 2 * n
    if kind == "concat_scalar":                  # a reshaped scalar concatenated with a vector
        v, i = b.param((n - 1,))
        w, j = b.param((3,))
        s = gn.reshape(gn.sum(w) * 0.5, (1,))
        return h + gn.concat([s, v], axis=0), \
            (lambda P, x, f=f: f(P, x) + _T().cat([(P[j].sum() * 0.5).reshape(1), P[i]])), n
    if kind == "row_sum":
        return h + gn.sum(h, axis=1, keepdims=True), (lambda P, x, f=f: f(P, x) + f(P, x).sum(1, keepdim=True)), n
    if kind == "row_max":
        return h - gn.max(h, axis=1, keepdims=True), \
            (lambda P, x, f=f: f(P, x) - f(P, x).max(1, keepdim=True).values), n
    if kind == "batch_mean":                     # a reduction over the batch axis, broadcast back
        return h - gn.mean(h, axis=0), (lambda P, x, f=f: f(P, x) - f(P, x).mean(0)), n
    if kind == "softmax":
        return gn.softmax(h), (lambda P, x, f=f: _T().softmax(f(P, x), 1)), n
    if kind == "log_softmax":
        return gn.log_softmax(h), (lambda P, x, f=f: _T().log_softmax(f(P, x), 1)), n
    if kind == "batch_second":                   # elementwise work on a (n, B) layout
        return gn.transpose(gn.tanh(gn.transpose(h))), (lambda P, x, f=f: f(P, x).T.tanh().T), n
    raise ValueError(kind)


def _slice(t, sl, n):
    idx = list(range(*sl.indices(n)))
    return t[:, idx]


def _T():
    import torch
    return torch


def _terminal(kind, b: Built, h, f, n):
    """Reduce a term to a scalar."""
    if kind == "sumsq":
        return gn.sum(h * h) * 0.5, lambda P, x: (f(P, x) ** 2).sum() * 0.5
    if kind == "mean":
        return gn.mean(h), lambda P, x: f(P, x).mean()
    if kind == "weighted":
        r = np.linspace(-1, 1, n)
        return gn.sum(h * gn.constant(r)), lambda P, x: (f(P, x) * _T().tensor(r)).sum()
    if kind == "gram":                           # hᵀ h: the batch axis contracted away
        return gn.sum(gn.tanh(gn.transpose(h) @ h * 0.1)), lambda P, x: ((f(P, x).T @ f(P, x)) * 0.1).tanh().sum()
    raise ValueError(kind)


# -- hypothesis strategies -------------------------------------------------------------------------

@st.composite
def steps(draw, width):
    kind = draw(st.sampled_from(["act", "act", "matmul", "matmul_T", "linear", "bias_row", "bias_reshaped",
                                 "column", "slice", "slice", "concat_self", "concat_scalar", "row_sum",
                                 "row_max", "batch_mean", "softmax", "log_softmax", "batch_second"]))
    if kind == "act":
        return kind, draw(st.sampled_from(sorted(ACTIVATIONS)))
    if kind in ("matmul", "matmul_T"):
        return kind, draw(st.integers(1, 5))
    if kind == "linear":
        return kind, (draw(st.integers(1, 5)), draw(st.booleans()))
    if kind == "slice":
        step = draw(st.sampled_from([1, 2, -1, -2, 3, -3]))
        bound = st.one_of(st.none(), st.integers(-width - 1, width + 1))
        start, stop = draw(bound), draw(bound)
        if not len(range(*slice(start, stop, step).indices(width))):
            return "slice", (None, None, step)
        return kind, (start, stop, step)
    if kind == "concat_self" and 2 * width > MAX_WIDTH:
        return "act", "tanh"
    if kind == "concat_scalar" and width < 2:
        return "act", "sigmoid"
    return kind, None


@st.composite
def terms(draw, max_steps=4):
    """One term: a recipe of steps and its terminal reduction."""
    recipe, width = [], N_IN
    for _ in range(draw(st.integers(1, max_steps))):
        kind, arg = draw(steps(width))
        recipe.append((kind, arg))
        width = _width_after(kind, arg, width)
    return tuple(recipe), draw(st.sampled_from(["sumsq", "mean", "weighted", "gram"]))


def _width_after(kind, arg, n):
    if kind in ("matmul", "matmul_T"):
        return arg
    if kind == "linear":
        return arg[0]
    if kind == "column":
        return 1
    if kind == "slice":
        return len(range(*slice(*arg).indices(n)))
    if kind == "concat_self":
        return 2 * n
    return n


def graphs(max_terms=3, max_steps=4):
    """(terms, seed, output choice): a whole graph's recipe."""
    return st.tuples(st.lists(terms(max_steps), min_size=1, max_size=max_terms), st.integers(0, 2 ** 16),
                     st.sampled_from(["loss", "first term"]))


# -- building ----------------------------------------------------------------------------------------

@dataclass
class FuzzGraph:
    model: object               # graphnn Model (loss = sum of the terms)
    params: list                # [(node, initial value)], the torch function's P order
    torch_loss: object          # fn(P, x) -> scalar torch tensor
    feeds: dict


def build(recipe) -> FuzzGraph:
    term_recipes, seed, output = recipe
    rng = np.random.default_rng(seed)
    b = Built(rng)
    x = gn.input("x", (None, N_IN))
    total, torch_terms, first = None, [], None
    for steps_, terminal in term_recipes:
        h, f, n = x, (lambda P, xx: xx), N_IN
        for kind, arg in steps_:
            h, f, n = _step(kind, arg, b, h, f, n)
        first = h if first is None else first
        value, tf = _terminal(terminal, b, h, f, n)
        total = value if total is None else total + value
        torch_terms.append(tf)
    if not b.params:   # a graph needs something to train
        W, i = b.param(())
        total = total + W * W
        torch_terms.append(lambda P, xx, i=i: P[i] * P[i])
    X = rng.standard_normal((BATCH, N_IN))
    model = gn.Model("fuzz", total, total if output == "loss" else first, (x,), gn.Dataset({"x": X}))
    return FuzzGraph(model, b.params, lambda P, xx: sum(t(P, xx) for t in torch_terms), {"x": X})
