"""CUDA printers for the convolution, pooling and noise steps of codegen/lower_conv.py.

The CPU prints these steps as serial loop nests; here each becomes a kernel with one
thread per element of what it writes. Gradients that the CPU scatters (conv's input
gradient, pooling's gradients) are written in gather form instead — each thread sums what
lands on its own element — so no two threads write one address: no atomics, and the
result does not depend on thread order.
"""
from __future__ import annotations

from codegen.lower_conv import BiasGradLoop, ConvLoop, NoiseLoop, PoolLoop
from graphnn.ops.dropout import GOLDEN

from . import kernels
from .emit import register_cuda_printer


def _unravel(names, dims):
    """Lines splitting ``flat`` into per-axis indices ``names`` over ``dims`` (C order)."""
    return kernels.unravel(names, [str(d) for d in dims], "flat")


def _kernel(name, args, total, index_lines, body, doc):
    lines = [f"@cuda.jit(cache=CACHE)", f"def {name}({', '.join(args)}):", f'    """{doc}"""',
             f"    for flat in range(cuda.grid(1), {total}, cuda.gridsize(1)):"]
    lines += ["        " + line for line in index_lines + body]
    return "\n".join(lines) + "\n"


def _launch(k, total, args):
    return f"{k}[blocks_for({total}), THREADS]({', '.join(args)})"


def _tap_range(pos, stride, pad_before, pad_after, size, k):
    if not pad_before and not pad_after:
        return f"range({k})"
    lo = f"max(0, {pad_before} - {pos} * {stride})" if pad_before else "0"
    return f"range({lo}, min({k}, {size} + {pad_before} - {pos} * {stride}))"


def _conv(step: ConvLoop, em):
    c, h, wd, f, kh, kw, ho, wo = step.dims
    (sh, sw), (pt, pb, pl, pr) = step.stride, step.pad
    head = [f"# {step.comment}"] if step.comment else []
    if step.kind == "forward":
        idx = _unravel(["bb", "ff", "ii", "jj"], ["B", f, ho, wo])
        body = [f"acc = {'bias[ff]' if step.bias else 'F(0)'}",
                f"for cc in range({c}):",
                f"    for mm in {_tap_range('ii', sh, pt, pb, h, kh)}:",
                f"        for nn in {_tap_range('jj', sw, pl, pr, wd, kw)}:",
                f"            acc += x[bb, cc, ii * {sh} + mm - {pt}, jj * {sw} + nn - {pl}] * w[ff, cc, mm, nn]",
                "out[bb, ff, ii, jj] = acc"]
        args = ["x", "w"] + (["bias"] if step.bias else []) + ["out", "B"]
        total = f"B * {f * ho * wo}"
        k = em.kernel("conv2d", lambda n: _kernel(n, args, total, idx, body,
                                                    "conv2d forward: one output element per thread"))
        call = [f"a.{step.a}", f"a.{step.b}"] + ([f"a.{step.bias}"] if step.bias else []) + \
            [f"a.{step.out}", f"a.{step.a}.shape[0]"]
        return head + [_launch(k, f"a.{step.out}.size", call)]
    if step.kind == "grad_filter":
        idx = _unravel(["ff", "cc", "mm", "nn"], [f, c, kh, kw])
        body = ["acc = F(0)",
                "for bb in range(x.shape[0]):",
                f"    for ii in range({ho}):",
                f"        r = ii * {sh} + mm - {pt}",
                f"        if r >= 0 and r < {h}:",
                f"            for jj in range({wo}):",
                f"                s = jj * {sw} + nn - {pl}",
                f"                if s >= 0 and s < {wd}:",
                "                    acc += g[bb, ff, ii, jj] * x[bb, cc, r, s]",
                "out[ff, cc, mm, nn] = acc"]
        k = em.kernel("conv2d_grad_filter", lambda n: _kernel(
            n, ["x", "g", "out"], f"{f * c * kh * kw}", idx, body,
            "conv2d filter gradient: one filter tap per thread, summed over batch and positions"))
        return head + [_launch(k, f * c * kh * kw, [f"a.{step.a}", f"a.{step.b}", f"a.{step.out}"])]
    # grad_input, gathered: dx[b,c,y,x] = Σ g[b,f,i,j] w[f,c,m,n] over y = i·s + m − p
    idx = _unravel(["bb", "cc", "yy", "xx"], ["B", c, h, wd])
    body = ["acc = F(0)",
            f"for ff in range({f}):",
            f"    for mm in range({kh}):",
            f"        r = yy + {pt} - mm",
            f"        if r >= 0 and r % {sh} == 0 and r // {sh} < {ho}:",
            f"            for nn in range({kw}):",
            f"                s = xx + {pl} - nn",
            f"                if s >= 0 and s % {sw} == 0 and s // {sw} < {wo}:",
            f"                    acc += g[bb, ff, r // {sh}, s // {sw}] * w[ff, cc, mm, nn]",
            "out[bb, cc, yy, xx] = acc"]
    k = em.kernel("conv2d_grad_input", lambda n: _kernel(
        n, ["g", "w", "out", "B"], f"B * {c * h * wd}", idx, body,
        "conv2d input gradient, gathered: one input element per thread"))
    return head + [_launch(k, f"a.{step.out}.size",
                           [f"a.{step.a}", f"a.{step.b}", f"a.{step.out}", f"a.{step.a}.shape[0]"])]


def _bias_grad(step: BiasGradLoop, em):
    """out[f] = Σ_{b,i,j} g[b, f, i, j]: one block per filter, its threads striding over the
    batch and positions, then a shared-memory tree (deterministic, no atomics)."""
    f, ho, wo = step.dims
    n = ho * wo
    body = f'''@cuda.jit(cache=CACHE)
def {{name}}(g, out):
    """conv2d bias gradient: one block per filter, a tree over its threads."""
    part = cuda.shared.array(THREADS, dtype=F)
    t = cuda.threadIdx.x
    for ff in range(cuda.blockIdx.x, {f}, cuda.gridDim.x):
        acc = F(0)
        for q in range(t, g.shape[0] * {n}, THREADS):
            bb = q // {n}
            ii = (q % {n}) // {wo}
            acc += g[bb, ff, ii, q % {wo}]
        part[t] = acc
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                part[t] += part[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            out[ff] = part[0]
        cuda.syncthreads()
'''
    k = em.kernel("conv2d_grad_bias", lambda name: body.replace("{name}", name))
    head = [f"# {step.comment}"] if step.comment else []
    return head + [f"{k}[min({f}, MAX_BLOCKS), THREADS](a.{step.g}, a.{step.out})"]


def _first_max(src, sh, sw, ph, pw):
    """Lines finding the window's first maximum (strict >), or its first NaN: np.argmax's choice,
    the reference's."""
    return [f"rb = ii * {sh}", f"sb = jj * {sw}", f"best = {src}[bb, cc, rb, sb]",
            f"for mm in range({ph}):",
            f"    for nn in range({pw}):",
            f"        v = {src}[bb, cc, ii * {sh} + mm, jj * {sw} + nn]",
            "        if v > best or (v != v and best == best):",
            "            best = v",
            f"            rb = ii * {sh} + mm",
            f"            sb = jj * {sw} + nn"]


def _pool(step: PoolLoop, em):
    c, h, wd, ho, wo = step.dims
    (ph, pw), (sh, sw) = step.size, step.stride
    head = [f"# {step.comment}"] if step.comment else []
    if step.kind in ("max", "avg", "max_gather"):
        idx = _unravel(["bb", "cc", "ii", "jj"], ["B", c, ho, wo])
        if step.kind == "avg":
            body = ["acc = F(0)", f"for mm in range({ph}):", f"    for nn in range({pw}):",
                    f"        acc += a[bb, cc, ii * {sh} + mm, jj * {sw} + nn]",
                    f"out[bb, cc, ii, jj] = acc * F({1.0 / (ph * pw)!r})"]
            args, call = ["a", "out", "B"], [f"a.{step.a}", f"a.{step.out}"]
        elif step.kind == "max":
            body = _first_max("a", sh, sw, ph, pw) + ["out[bb, cc, ii, jj] = best"]
            args, call = ["a", "out", "B"], [f"a.{step.a}", f"a.{step.out}"]
        else:  # out[b,c,i,j] = a at the window's first max of b
            body = _first_max("b", sh, sw, ph, pw) + ["out[bb, cc, ii, jj] = a[bb, cc, rb, sb]"]
            args, call = ["a", "b", "out", "B"], [f"a.{step.a}", f"a.{step.b}", f"a.{step.out}"]
        k = em.kernel(f"pool_{step.kind}", lambda n: _kernel(
            n, args, f"B * {c * ho * wo}", idx, body, f"{step.kind} pooling: one window per thread"))
        return head + [_launch(k, f"a.{step.out}.size", call + [f"a.{step.out}.shape[0]"])]
    # gradients, gathered: each input element sums the windows that contain it
    idx = _unravel(["bb", "cc", "yy", "xx"], ["B", c, h, wd])
    body = ["acc = F(0)",
            f"for ii in range(min({ho}, yy // {sh} + 1)):",
            f"    if yy < ii * {sh} + {ph}:",
            f"        for jj in range(min({wo}, xx // {sw} + 1)):",
            f"            if xx < jj * {sw} + {pw}:"]
    if step.kind == "avg_grad":
        body.append(f"                acc += a[bb, cc, ii, jj] * F({1.0 / (ph * pw)!r})")
        args, call = ["a", "out", "B"], [f"a.{step.a}", f"a.{step.out}"]
    else:  # max_grad: the window's gradient goes to its first maximum only
        body += ["                " + line for line in _first_max("b", sh, sw, ph, pw)]
        body.append("                if rb == yy and sb == xx:")
        body.append("                    acc += a[bb, cc, ii, jj]")
        args, call = ["a", "b", "out", "B"], [f"a.{step.a}", f"a.{step.b}", f"a.{step.out}"]
    body.append("out[bb, cc, yy, xx] = acc")
    k = em.kernel(f"pool_{step.kind}", lambda n: _kernel(
        n, args, f"B * {c * h * wd}", idx, body, f"{step.kind}, gathered: one input element per thread"))
    return head + [_launch(k, f"a.{step.out}.size", call + [f"a.{step.out}.shape[0]"])]


def _noise(step: NoiseLoop, em):
    """Dropout / masking / Gaussian noise: the reference's counter hash, one element per thread."""
    em.helpers.add("mix64")
    fixed = tuple(step.shape)
    names = [f"a{k}" for k in range(len(fixed) + 1)]
    idx = _unravel(names, ["B", *fixed])
    at = ", ".join(names)
    golden = int(GOLDEN)
    key = [f"key = mix64(np.uint64({step.seed}) * np.uint64({golden}) + np.uint64(int(stepv[0])))",
           f"whole = int(rowv[0]) * {_prod(fixed)} + flat"]   # the index in the whole batch (a shard starts at rowv)
    if step.kind == "mask":
        keep = repr(1.0 / (1.0 - step.rate)) if step.scale else "1.0"
        noisy = [f"u = float(mix64(key + (np.uint64(whole) + np.uint64(1)) * np.uint64({golden})) "
                 f">> np.uint64(11)) * {2.0 ** -53!r}",
                 f"out[{at}] = x[{at}] * F({keep}) if u >= {step.rate!r} else F(0)"]
    else:
        noisy = [f"e = np.uint64(2 * whole)",
                 f"u1 = float(mix64(key + (e + np.uint64(1)) * np.uint64({golden})) >> np.uint64(11)) * {2.0 ** -53!r}",
                 f"u2 = float(mix64(key + (e + np.uint64(2)) * np.uint64({golden})) >> np.uint64(11)) * {2.0 ** -53!r}",
                 f"out[{at}] = x[{at}] + F({step.sigma!r} * math.sqrt(-2.0 * math.log1p(-u1)) "
                 f"* math.cos(2.0 * math.pi * u2))"]
    body = ["if training[0] != 0:"] + ["    " + line for line in key + noisy] + \
        ["else:", f"    out[{at}] = x[{at}]"]
    total = f"B * {_prod(fixed)}"
    k = em.kernel(f"noise_{step.kind}", lambda n: _kernel(
        n, ["x", "training", "stepv", "rowv", "out", "B"], total, idx, body,
        f"{step.kind} noise (training mode only): the reference's splitmix64 counter hash"))
    head = [f"# {step.comment}"] if step.comment else []
    return head + [_launch(k, f"a.{step.out}.size", [f"a.{step.a}", f"a.{step.training}", f"a.{step.step}",
                                                     f"a.{step.first_row}", f"a.{step.out}", f"a.{step.a}.shape[0]"])]


def _prod(dims):
    out = 1
    for d in dims:
        out *= d
    return out


register_cuda_printer(ConvLoop, _conv)
register_cuda_printer(BiasGradLoop, _bias_grad)
register_cuda_printer(PoolLoop, _pool)
register_cuda_printer(NoiseLoop, _noise)
