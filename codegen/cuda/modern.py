"""CUDA printers of codegen/lower_modern.py's steps: layer norm and its gradient, the fused
cross-entropy on class indices and its gradient (one thread per row), and the embedding's
scatter-add, written in gather form — one thread per table element sums the positions whose
id picks its row — so no two threads write one address: no atomics, the CPU's order of sums.
"""
from __future__ import annotations

from codegen.lower_modern import RowNorm, RowNormGrad, ScatterAddRows, SparseCE

from . import kernels
from .emit import register_cuda_printer


def _row_kernel(name, args, over, rank, body, doc):
    """A grid-stride kernel with one thread per row of ``over`` (all axes but the last). In
    ``body``, ``{at}`` is the row's leading indices before an element's (``x[{at}k]``) and
    ``{row}`` the row's own index (``labels[{row}]``; a 0-d value is a 1-element array)."""
    lead = [f"i{d}" for d in range(rank - 1)]
    at, row = "".join(f"{i}, " for i in lead), ", ".join(lead) or "0"
    body = [line.replace("shape[-1]", f"shape[{rank - 1}]") for line in body]   # the simulator: no negative axes
    index = kernels.unravel(lead, [f"{over}.shape[{d}]" for d in range(rank - 1)], "r") if lead else []
    lines = ["@cuda.jit(cache=CACHE)", f"def {name}({', '.join(args)}, rows_):", f'    """{doc}"""',
             "    for r in range(cuda.grid(1), rows_, cuda.gridsize(1)):"]
    lines += ["        " + line for line in index]
    lines += ["        " + line.format(at=at, row=row) for line in body]
    return "\n".join(lines) + "\n"


def _launch(kernel, over, rank, args):
    rows = f"a.{over}.size // a.{over}.shape[{rank - 1}]"
    return [f"{kernel}[blocks_for({rows}), THREADS]({', '.join(args)}, {rows})"]


_STATS = ["n = x.shape[-1]", "mu = F(0)", "for k in range(n):", "    mu += x[{at}k]", "mu /= n", "var = F(0)",
          "for k in range(n):", "    var += (x[{at}k] - mu) * (x[{at}k] - mu)", "inv = F(1) / math.sqrt(var / n + eps)"]


def _row_norm(step: RowNorm, em):
    body = _STATS + ["for k in range(n):", "    out[{at}k] = (x[{at}k] - mu) * inv"]
    k = em.kernel(f"layer_norm{step.rank}d", lambda n: _row_kernel(
        n, ["x", "out", "eps"], "x", step.rank, body, "layer norm (x − μ)/σ, one row per thread"))
    return [f"# {step.comment}"] + _launch(k, step.x, step.rank, [f"a.{step.x}", f"a.{step.out}", f"F({step.eps!r})"])


def _row_norm_grad(step: RowNormGrad, em):
    body = _STATS + ["mg = F(0)", "mgx = F(0)", "for k in range(n):", "    mg += g[{at}k]",
                     "    mgx += g[{at}k] * (x[{at}k] - mu) * inv", "mg /= n", "mgx /= n", "for k in range(n):",
                     "    out[{at}k] = inv * (g[{at}k] - mg - (x[{at}k] - mu) * inv * mgx)"]
    k = em.kernel(f"layer_norm_grad{step.rank}d", lambda n: _row_kernel(
        n, ["g", "x", "out", "eps"], "x", step.rank, body, "layer norm's compact gradient, one row per thread"))
    return [f"# {step.comment}"] + _launch(k, step.x, step.rank, [f"a.{step.g}", f"a.{step.x}", f"a.{step.out}",
                                                      f"F({step.eps!r})"])


def _sparse_ce(step: SparseCE, em):
    head = ["m = z[{at}0]", "for k in range(1, z.shape[-1]):", "    m = max(m, z[{at}k])", "s = F(0)",
            "for k in range(z.shape[-1]):", "    s += math.exp(z[{at}k] - m)", "c = int(labels[{row}])"]
    if step.grad is None:
        body = head + ["out[{row}] = math.log(s) + m - z[{at}c]"]
        args, names = ["z", "labels", "out"], [step.logits, step.labels, step.out]
    else:
        body = head + ["gs = g[{row}] / s", "for k in range(z.shape[-1]):", "    out[{at}k] = gs * math.exp(z[{at}k] - m)",
                       "out[{at}c] -= g[{row}]"]
        args, names = ["g", "z", "labels", "out"], [step.grad, step.logits, step.labels, step.out]
    k = em.kernel(f"sparse_ce{'_grad' if step.grad else ''}{step.rank}d", lambda n: _row_kernel(
        n, args, "z", step.rank, body, "softmax cross-entropy on class indices (or its gradient), one row per thread"))
    return [f"# {step.comment}"] + _launch(k, step.logits, step.rank, [f"a.{x}" for x in names])


def _scatter_add(step: ScatterAddRows, em):
    lead = [f"i{d}" for d in range(step.rank)]
    loops = [f"{'    ' * d}for {i} in range(ids.shape[{d}]):" for d, i in enumerate(lead)]
    pad = "    " * step.rank
    body = (["v = flat // out.shape[1]", "k = flat % out.shape[1]", "acc = F(0)"] + loops
            + [f"{pad}if int(ids[{', '.join(lead)}]) == v:", f"{pad}    acc += g[{', '.join(lead)}, k]", "out[v, k] = acc"])
    src = (lambda n: f"@cuda.jit(cache=CACHE)\ndef {n}(g, ids, out):\n"
           f'    """∂ of an embedding, gathered: one table element per thread sums its rows\' positions."""\n'
           "    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):\n"
           + "\n".join("        " + line for line in body) + "\n")
    k = em.kernel(f"scatter_add{step.rank}d", src)
    return [f"# {step.comment}", f"{k}[blocks_for(a.{step.out}.size), THREADS](a.{step.g}, a.{step.ids}, a.{step.out})"]


for _type, _fn in {RowNorm: _row_norm, RowNormGrad: _row_norm_grad, SparseCE: _sparse_ce,
                   ScatterAddRows: _scatter_add}.items():
    register_cuda_printer(_type, _fn)
