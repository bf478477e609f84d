"""CPU printers of lower_modern.py's row steps: each a call to a helper shared by every step of
its kind and rank (codegen.printer.HELPERS), so a Transformer's layer norms compile once.

The helpers take any strides (rows are views ``x[i0, i1]``), accumulate in float64 and write
in the arrays' dtype; eps is an argument, not a constant in the code.
"""
from __future__ import annotations

from .emit_cpu import register_emitter
from .lower_modern import RowNorm, RowNormGrad, ScatterAddRows, SparseCE
from .printer import HELPERS


def _lead(rank, array):
    """Loops over the leading axes of ``array`` (all but the last): (loop lines, index text)."""
    idx = [f"i{d}" for d in range(rank - 1)]
    lines = [f"{'    ' * (d + 1)}for {i} in range({array}.shape[{d}]):" for d, i in enumerate(idx)]
    return lines, ", ".join(idx)


def _helper(name, args, doc, rank, over, body, pre=()):
    """Register ``name``: ``pre`` (lines) once, then ``body`` (lines, ``{at}`` the row's index)
    once per row of ``over``."""
    if name not in HELPERS:
        loops, at = _lead(rank, over)
        pad = "    " * rank
        lines = ["    " + line for line in pre] + loops + [f"{pad}{line.format(at=at)}" for line in body]
        HELPERS[name] = f'\n@njit(**JIT)\ndef {name}({args}):\n    """{doc}"""\n' + "\n".join(lines) + "\n"
    return name


def _call(w, name, step, args):
    w.printer.helpers.add(name)
    w(f"# {step.comment}")
    w(f"{name}({', '.join(args)})")


_NORM_STATS = ["x_ = x[{at}]", "n_ = x_.shape[0]", "mu = 0.0", "for k in range(n_):", "    mu += x_[k]",
               "mu /= n_", "var = 0.0", "for k in range(n_):", "    var += (x_[k] - mu) * (x_[k] - mu)",
               "inv = 1.0 / math.sqrt(var / n_ + eps)"]


def _row_norm(step: RowNorm, w):
    name = _helper(f"layer_norm_{step.rank}d", "x, out, eps", "out = (x − μ)/√(σ² + eps) row by row.",
                   step.rank, "x", _NORM_STATS + ["o_ = out[{at}]", "for k in range(n_):",
                                                  "    o_[k] = (x_[k] - mu) * inv"])
    _call(w, name, step, [step.x, step.out, repr(step.eps)])


def _row_norm_grad(step: RowNormGrad, w):
    body = _NORM_STATS + ["g_ = g[{at}]", "mg = 0.0", "mgx = 0.0", "for k in range(n_):",
                          "    mg += g_[k]", "    mgx += g_[k] * (x_[k] - mu) * inv",
                          "mg /= n_", "mgx /= n_", "o_ = out[{at}]", "for k in range(n_):",
                          "    o_[k] = inv * (g_[k] - mg - (x_[k] - mu) * inv * mgx)"]
    name = _helper(f"layer_norm_grad_{step.rank}d", "g, x, out, eps",
                   "out = (1/σ)(g − mean g − x̂ mean(g x̂)) row by row: layer norm's compact gradient.",
                   step.rank, "x", body)
    _call(w, name, step, [step.g, step.x, step.out, repr(step.eps)])


def _sparse_ce(step: SparseCE, w):
    head = ["z_ = z[{at}]", "m = z_[0]", "for k in range(1, z_.shape[0]):", "    m = max(m, z_[k])",
            "s = 0.0", "for k in range(z_.shape[0]):", "    s += math.exp(z_[k] - m)"]
    if step.grad is None:
        name = _helper(f"sparse_ce_{step.rank}d", "z, labels, loss",
                       "loss[…] = logsumexp(z[…]) − z[…, label]: softmax cross-entropy on class indices.",
                       step.rank, "z", head + ["loss[{at}] = math.log(s) + m - z_[int(labels[{at}])]"])
        return _call(w, name, step, [step.logits, step.labels, step.out])
    body = head + ["gs = g[{at}] / s", "c_ = int(labels[{at}])", "o_ = out[{at}]", "for k in range(z_.shape[0]):",
                   "    o_[k] = gs * math.exp(z_[k] - m)", "o_[c_] -= g[{at}]"]
    name = _helper(f"sparse_ce_grad_{step.rank}d", "g, z, labels, out",
                   "out[…, c] = g[…]·(softmax(z[…])_c − [c = label]): the fused cross-entropy's gradient.",
                   step.rank, "z", body)
    _call(w, name, step, [step.grad, step.logits, step.labels, step.out])


def _scatter_add(step: ScatterAddRows, w):
    rank = step.rank + 1   # g's rank: the ids' and the feature axis
    body = ["v = int(ids[{at}])", "g_ = g[{at}]", "for k in range(g_.shape[0]):", "    out[v, k] += g_[k]"]
    name = _helper(f"scatter_add_{rank}d", "g, ids, out",
                   "out = 0; out[ids[p]] += g[p] for every position p (∂ of an embedding).", rank, "g", body,
                   pre=["for v in range(out.shape[0]):", "    for k in range(out.shape[1]):",
                        "        out[v, k] = 0.0"])
    _call(w, name, step, [step.g, step.ids, step.out])


for _type, _fn in {RowNorm: _row_norm, RowNormGrad: _row_norm_grad, SparseCE: _sparse_ce,
                   ScatterAddRows: _scatter_add}.items():
    register_emitter(_type, _fn)
