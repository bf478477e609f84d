"""Gradient checking: autodiff against central finite differences, in float64."""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .autodiff import grad
from .errors import GradientError
from .evaluate import Evaluator, bind
from .graph import Graph, Node
from .ops import Input, sum as sum_
from .ops.base import describe


@dataclass(repr=False)
class GradCheckResult:
    """What `check_grad` found: the largest relative error per checked node, and the first
    element outside the tolerance (None when all agree)."""

    errors: dict          # wrt node -> max relative error
    worst: tuple          # (node, index, autodiff value, numeric value)

    @property
    def ok(self):
        return self.worst is None

    @property
    def max_error(self):
        return max(self.errors.values(), default=0.0)

    def _rows(self):
        return [(_name(n), "×".join(str(d) for d in n.shape) or "scalar", f"{float(e):.2g}")
                for n, e in self.errors.items()]

    def __repr__(self):
        per = ", ".join(f"{name} {err}" for name, _, err in self._rows())
        if self.ok:
            return f"<gradient check passed: max relative error {float(self.max_error):.2g} ({per})>"
        node, idx, a, n = self.worst
        return (f"<gradient check FAILED at {_name(node)}{list(idx)}: autodiff {a:.10g}, finite differences "
                f"{n:.10g} ({per})>")

    def _repr_html_(self):
        head = "passed" if self.ok else "FAILED"
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{shape}</td><td>{err}</td></tr>"
                       for name, shape, err in self._rows())
        return (f"<p>gradient check {head} (central differences, float64)</p><table><tr><th>node</th>"
                f"<th>shape</th><th>max relative error</th></tr>{rows}</table>")


def _name(node) -> str:
    return node.name or describe(node)


def check_grad(output: Node, wrt, feeds=None, params=None, *, eps=1e-6, rtol=1e-5, atol=1e-8,
               seed=0, raise_on_failure=True) -> GradCheckResult:
    """Compare ``grad`` with central differences for every element of every ``wrt``.

    A non-scalar ``output`` is checked through a random projection Σ output·r, so any
    op can be checked on its own. ``wrt`` may hold inputs and parameters.
    """
    wrt = [wrt] if isinstance(wrt, Node) else list(wrt)
    feeds, params = dict(feeds or {}), dict(params or {})
    loss, proj = output, None
    if output.shape != ():
        # built directly: a projection may carry the batch axis anywhere (e.g. xᵀ)
        proj = Node(Input.instance(), (), {}, output.shape, name="__projection")
        loss = sum_(output * proj)
    base = bind(Graph([loss]), {**feeds, **({proj: _projection(output, feeds, params, seed)} if proj is not None else {})},
                params, np.float64)
    leaves = {n: v.copy() for n, v in base.items() if n.kind in ("input", "parameter")}
    grads = grad(loss, wrt)
    ev = Evaluator([loss] + [grads[w] for w in wrt])
    analytic = dict(zip(wrt, ev(_split(leaves, "input"), _split(leaves, "parameter"))[1:]))
    f = Evaluator(loss)
    errors, worst = {}, None
    for w in wrt:
        errs = []
        for idx in np.ndindex(*leaves[w].shape):
            numeric = _central(f, leaves, w, idx, eps)
            a = analytic[w][idx]
            err = abs(a - numeric) / max(abs(numeric), abs(a), 1e-12)
            errs.append(err)
            if abs(a - numeric) > atol + rtol * abs(numeric) and worst is None:
                worst = (w, idx, float(a), float(numeric))
        errors[w] = max(errs, default=0.0)
    result = GradCheckResult(errors, worst)
    if worst is not None and raise_on_failure:
        node, idx, a, n = worst
        raise GradientError(f"gradient check failed for {describe(node)} at {idx}: autodiff {a:.10g}, "
                            f"finite differences {n:.10g} (output {describe(output)})")
    return result


def _projection(output, feeds, params, seed):
    value = Evaluator(output)(feeds, params)
    return np.random.default_rng(seed).uniform(0.5, 1.5, value.shape)


def _split(leaves, kind):
    return {n: v for n, v in leaves.items() if n.kind == kind}


def _central(f, leaves, w, idx, eps):
    def at(delta):
        arr = leaves[w].copy()
        arr[idx] += delta
        vals = {**leaves, w: arr}
        return float(f(_split(vals, "input"), _split(vals, "parameter")))
    return (at(eps) - at(-eps)) / (2 * eps)
