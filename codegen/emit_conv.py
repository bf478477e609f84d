"""CPU printers of the conv, pooling and noise steps (lower_conv.py): explicit loops.

The loops' locals start with an underscore, which no generated buffer name does; shapes,
strides and padding are literals (at 8×8 images a loop nest beats an im2col copy plus a
BLAS call). Max pooling's gradient goes to the FIRST maximum of each window (strict
``>``), exactly like the NumPy reference's argmax. Dropout's mask is the same splitmix64
counter hash as the reference (graphnn.ops.dropout), in uint64 arithmetic: compiled masks
equal the reference's bit for bit.
"""
from __future__ import annotations

from graphnn.ops.dropout import GOLDEN, MIX1, MIX2

from .emit_cpu import register_emitter
from .step_helpers import as_helper
from .lower_conv import BiasGradLoop, ConvLoop, NoiseLoop, PoolLoop
from .printer import HELPERS, reshaped


def _zero(w, name):
    """name[...] = 0 as one flat loop (slice assignment of an n-d array costs Numba compile time)."""
    w(f"_flat_{name} = {reshaped(name, '-1')}")
    w(f"for _q in range(_flat_{name}.shape[0]):")
    w(f"    _flat_{name}[_q] = {w.num(0.0)}")


def _tap_range(var, pos, stride, pad, size, k, pad_after=0):
    """The taps ``var`` of a window at output position ``pos`` that land inside the image
    (no bounds test inside the loop): 0 <= pos·stride + var − pad < size."""
    if not pad and not pad_after:
        return f"range({k})"  # every window lies inside the image: a constant trip count
    lo = f"max(0, {pad} - {pos} * {stride})" if pad else "0"
    hi = f"min({k}, {size} + {pad} - {pos} * {stride})"
    return f"range({lo}, {hi})"


def _out_range(var, tap, stride, pad, size, out, pad_after=0):
    """Output positions whose window's tap ``tap`` lands inside the image: 0 <= o·s + tap − pad < size."""
    if not pad and not pad_after:
        return f"range({out})"
    lo = f"max(0, ({pad} - {tap} + {stride - 1}) // {stride})"
    hi = f"min({out}, ({size - 1} + {pad} - {tap}) // {stride} + 1)"
    return f"range({lo}, {hi})"


UNROLL = 49  #: filters with at most this many taps (7×7) are written out tap by tap


def _padded_copy(w, x, c, h, wd, pad, name):
    """A zero-padded copy of x in the workspace buffer ``name`` (so the tap loops need no bounds
    tests); x itself if unpadded."""
    pt, pb, pl, pr = pad
    if not any(pad):
        return x
    _zero(w, name)
    w(f"for _bb in range({x}.shape[0]):")
    w(f"    for _cc in range({c}):")
    w(f"        for _rr in range({h}):")
    w(f"            for _ss in range({wd}):")
    w(f"                {name}[_bb, _cc, _rr + {pt}, _ss + {pl}] = {x}[_bb, _cc, _rr, _ss]")
    return name


def _taps(kh, kw):
    return [(m, n) for m in range(kh) for n in range(kw)]


def _at(src, b, c, sh, sw, m, n):
    """src[b, c, i·sh + m, j·sw + n] for the loop's output position (_ii, _jj)."""
    row = f"_ii * {sh} + {m}" if sh != 1 else f"_ii + {m}"
    col = f"_jj * {sw} + {n}" if sw != 1 else f"_jj + {n}"
    return f"{src}[{b}, {c}, {row}, {col}]".replace(" + 0]", "]").replace(" + 0,", ",")


def _emit_conv(step: ConvLoop, w):
    """A conv step: unrolled taps for small filters (flat over the batch when stride 1 and
    unpadded), tap loops for large ones."""
    c, h, wd, f, kh, kw, ho, wo = step.dims
    if step.comment:
        w(f"# {step.comment}")
    if kh * kw > UNROLL:
        return _emit_conv_loops(step, w)
    if step.kind in ("forward", "grad_filter") and tuple(step.stride) == (1, 1) and not any(step.pad):
        flat = {"forward": _conv_flat_forward, "grad_filter": _conv_flat_grad_filter}
        return flat[step.kind](step, w)
    return {"forward": _conv_forward, "grad_filter": _conv_grad_filter, "grad_input": _conv_grad_input}[step.kind](step, w)


def _conv_forward(step: ConvLoop, w):
    c, h, wd, f, kh, kw, ho, wo = step.dims
    (sh, sw), pad = step.stride, step.pad
    taps = _taps(kh, kw)
    # y[b,f,i,j] = bias[f] + Σ_c Σ_{m,n} w[f,c,m,n] x[b,c,i·s+m, j·s+n] (x padded): the filter's
    # taps are locals, each output one straight-line sum
    src = _padded_copy(w, step.a, c, h, wd, pad, step.padded)
    w(f"for _ff in range({f}):")
    w.indent()
    for first in (True, False):
        if not first and c == 1:
            break
        w(f"for _cc in range({0 if first else 1}, {1 if first else c}):")
        w.indent()
        for m, n in taps:
            w(f"_k{m}_{n} = {step.b}[_ff, _cc, {m}, {n}]")
        w(f"for _bb in range({step.a}.shape[0]):")
        w(f"    for _ii in range({ho}):")
        w(f"        for _jj in range({wo}):")
        total = " + ".join(f"_k{m}_{n} * {_at(src, '_bb', '_cc', sh, sw, m, n)}" for m, n in taps)
        if first:
            lead = f"{step.bias}[_ff] + " if step.bias else ""
            w(f"            {step.out}[_bb, _ff, _ii, _jj] = {lead}{total}")
        else:
            w(f"            {step.out}[_bb, _ff, _ii, _jj] += {total}")
        w.dedent()
    w.dedent()


def _conv_grad_filter(step: ConvLoop, w):
    c, h, wd, f, kh, kw, ho, wo = step.dims
    (sh, sw), pad = step.stride, step.pad
    taps = _taps(kh, kw)
    # dw[f,c,m,n] = Σ_{b,i,j} g[b,f,i,j] x[b,c,i·s+m, j·s+n]: one accumulator per tap
    src = _padded_copy(w, step.a, c, h, wd, pad, step.padded)
    zero = w.num(0.0)
    w(f"for _ff in range({f}):")
    w(f"    for _cc in range({c}):")
    w.indent(2)
    for m, n in taps:
        w(f"_a{m}_{n} = {zero}")
    w(f"for _bb in range({step.a}.shape[0]):")
    w(f"    for _ii in range({ho}):")
    w(f"        for _jj in range({wo}):")
    w(f"            _gv = {step.b}[_bb, _ff, _ii, _jj]")
    for m, n in taps:
        w(f"            _a{m}_{n} += _gv * {_at(src, '_bb', '_cc', sh, sw, m, n)}")
    for m, n in taps:
        w(f"{step.out}[_ff, _cc, {m}, {n}] = _a{m}_{n}")
    w.dedent(2)


def _conv_grad_input(step: ConvLoop, w):
    c, h, wd, f, kh, kw, ho, wo = step.dims
    (sh, sw), pad = step.stride, step.pad
    taps = _taps(kh, kw)
    # dx: each output position scatters g·w over its window (into a padded buffer, then cropped)
    pt, pb, pl, pr = pad
    padded = any(pad)
    dst = step.padded if padded else step.out
    _zero(w, dst)
    w(f"for _ff in range({f}):")
    w(f"    for _cc in range({c}):")
    w.indent(2)
    for m, n in taps:
        w(f"_k{m}_{n} = {step.b}[_ff, _cc, {m}, {n}]")
    w(f"for _bb in range({step.a}.shape[0]):")
    w(f"    for _ii in range({ho}):")
    w(f"        for _jj in range({wo}):")
    w(f"            _gv = {step.a}[_bb, _ff, _ii, _jj]")
    for m, n in taps:
        w(f"            {_at(dst, '_bb', '_cc', sh, sw, m, n)} += _gv * _k{m}_{n}")
    w.dedent(2)
    if padded:
        w(f"for _bb in range({step.a}.shape[0]):")
        w(f"    for _cc in range({c}):")
        w(f"        for _rr in range({h}):")
        w(f"            for _ss in range({wd}):")
        w(f"                {step.out}[_bb, _cc, _rr, _ss] = {dst}[_bb, _cc, _rr + {pt}, _ss + {pl}]")


def _conv_flat_forward(step: ConvLoop, w):
    """Stride 1, no padding: the batch read as one flat row x', so tap (m, n) of output position
    (b, i, j) of channel c is x'[q + c·H·W + m·W + n] at q = b·C·H·W + i·W + j, and the tap sums
    run over one contiguous range of q for the whole batch (the positions whose window would
    leave its image are computed and dropped, or carry a zero gradient; no index ever leaves x):
    loops the compiler vectorises. Same sums as the nested form up to float rounding."""
    c, h, wd, f, kh, kw, ho, wo = step.dims
    taps = _taps(kh, kw)
    span = (ho - 1) * wd + wo
    at = {t: (f" + {t[0] * wd + t[1]}" if t[0] * wd + t[1] else "") for t in taps}
    x = step.a
    # y[b,f,i,j] = bias[f] + Σ_c Σ_{m,n} w[f,c,m,n] x'[q + c·H·W + m·W + n] at q = b·C·H·W + i·W + j,
    # for the whole batch in one contiguous loop over q (x' is x as one flat row; the positions
    # between windows are computed and dropped); the filter's taps are locals
    pitch = c * h * wd
    w(f"_xl_{step.out} = {reshaped(f'np.ascontiguousarray({x})', '-1')}")
    w(f"_n_{step.out} = max(0, ({x}.shape[0] - 1) * {pitch} + {span})")
    w(f"_t = np.empty(_n_{step.out}, {x}.dtype)")
    w(f"for _ff in range({f}):")
    w.indent()
    for first in (True, False):
        if not first and c == 1:
            break
        w(f"for _cc in range({0 if first else 1}, {1 if first else c}):")
        w.indent()
        for m, n in taps:
            w(f"_k{m}_{n} = {step.b}[_ff, _cc, {m}, {n}]")
        if first and step.bias:
            w(f"_bias = {step.bias}[_ff]")
        w(f"_xr = _xl_{step.out}[_cc * {h * wd}:]")
        w(f"for _p in range(_n_{step.out}):")
        total = " + ".join(f"_k{m}_{n} * _xr[_p{at[(m, n)]}]" for m, n in taps)
        lead = "_bias + " if first and step.bias else ""
        w(f"    _t[_p] = {lead}{total}")
        w(f"for _bb in range({x}.shape[0]):")
        w(f"    _o = {step.out}[_bb, _ff]")
        w(f"    for _ii in range({ho}):")
        w(f"        for _jj in range({wo}):")
        w(f"            _o[_ii, _jj] {'=' if first else '+='} _t[_bb * {pitch} + _ii * {wd} + _jj]")
        w.dedent()
    w.dedent()


def _conv_flat_grad_filter(step: ConvLoop, w):
    """The filter gradient of the flat layout above (see `_conv_flat_forward`)."""
    c, h, wd, f, kh, kw, ho, wo = step.dims
    taps = _taps(kh, kw)
    span = (ho - 1) * wd + wo
    at = {t: (f" + {t[0] * wd + t[1]}" if t[0] * wd + t[1] else "") for t in taps}
    x = step.a
    # dw[f,c,m,n] = Σ_q g'[q] x'[q + c·H·W + m·W + n] over the whole batch at once: x' is x as one
    # flat row, g' the filter's gradient laid out on x's pitches (zero past each output row and
    # plane, and it is only read at positions whose taps stay inside the same image): one long
    # contiguous reduction per tap
    g, pitch = step.b, c * h * wd
    w(f"_xl_{step.out} = {reshaped(f'np.ascontiguousarray({x})', '-1')}")
    w(f"_n_{step.out} = max(0, ({x}.shape[0] - 1) * {pitch} + {span})")
    w(f"_gt = np.zeros(_n_{step.out}, {x}.dtype)")
    w(f"for _ff in range({f}):")
    w.indent()
    w(f"for _bb in range({x}.shape[0]):")
    w(f"    for _ii in range({ho}):")
    w(f"        for _jj in range({wo}):")
    w(f"            _gt[_bb * {pitch} + _ii * {wd} + _jj] = {g}[_bb, _ff, _ii, _jj]")
    w(f"for _cc in range({c}):")
    w.indent()
    w(f"_xr = _xl_{step.out}[_cc * {h * wd}:]")
    tap_sums(w, step.out, "_cc", taps, at, f"_n_{step.out}")
    w.dedent(2)


def tap_sums(w, out, channel, taps, at, n):
    """out[_ff, channel, m, n] = Σ_p _gt[p]·_xr[p + at(m, n)] for every tap, in one pass over
    _gt with a register per tap (the flat filter gradient; also codegen/fuse_conv.py's)."""
    for m, k in taps:
        w(f"_a{m}_{k} = {w.num(0.0)}")
    w(f"for _p in range({n}):")
    w("    _gv = _gt[_p]")
    for m, k in taps:
        w(f"    _a{m}_{k} += _gv * _xr[_p{at[(m, k)]}]")
    for m, k in taps:
        w(f"{out}[_ff, {channel}, {m}, {k}] = _a{m}_{k}")


def _emit_conv_loops(step: ConvLoop, w):
    """Large filters: tap loops with the image bounds in their ranges."""
    c, h, wd, f, kh, kw, ho, wo = step.dims
    (sh, sw), (pt, pb, pl, pr) = step.stride, step.pad
    if step.kind == "forward":
        # y[b,f,i,j] = bias[f] + Σ_{c,m,n} x[b,c,i·s+m−p, j·s+n−p] w[f,c,m,n]: one register per output
        x, k = step.a, step.b
        w(f"for _bb in range({x}.shape[0]):")
        w(f"    for _ff in range({f}):")
        w(f"        for _ii in range({ho}):")
        w(f"            for _jj in range({wo}):")
        w(f"                _acc = {step.bias + '[_ff]' if step.bias else w.num(0.0)}")
        w(f"                for _cc in range({c}):")
        w(f"                    for _mm in {_tap_range('_mm', '_ii', sh, pt, h, kh, pb)}:")
        w(f"                        for _nn in {_tap_range('_nn', '_jj', sw, pl, wd, kw, pr)}:")
        w(f"                            _acc += {x}[_bb, _cc, _ii * {sh} + _mm - {pt}, _jj * {sw} + _nn - {pl}]"
          f" * {k}[_ff, _cc, _mm, _nn]")
        w(f"                {step.out}[_bb, _ff, _ii, _jj] = _acc")
    elif step.kind == "grad_filter":
        # dw[f,c,m,n] = Σ_{b,i,j} g[b,f,i,j] x[b,c,i·s+m−p, j·s+n−p]: a reduction into one register
        x, g = step.a, step.b
        w(f"for _ff in range({f}):")
        w(f"    for _cc in range({c}):")
        w(f"        for _mm in range({kh}):")
        w(f"            for _nn in range({kw}):")
        w(f"                _acc = {w.num(0.0)}")
        w(f"                for _bb in range({x}.shape[0]):")
        w(f"                    for _ii in {_out_range('_ii', '_mm', sh, pt, h, ho, pb)}:")
        w(f"                        for _jj in {_out_range('_jj', '_nn', sw, pl, wd, wo, pr)}:")
        w(f"                            _acc += {g}[_bb, _ff, _ii, _jj] * {x}[_bb, _cc, _ii * {sh} + _mm - {pt}, "
          f"_jj * {sw} + _nn - {pl}]")
        w(f"                {step.out}[_ff, _cc, _mm, _nn] = _acc")
    else:
        # dx: every output position scatters g·w back over its window
        g, k = step.a, step.b
        _zero(w, step.out)
        w(f"for _bb in range({g}.shape[0]):")
        w(f"    for _ff in range({f}):")
        w(f"        for _ii in range({ho}):")
        w(f"            for _jj in range({wo}):")
        w(f"                _gv = {g}[_bb, _ff, _ii, _jj]")
        w(f"                for _cc in range({c}):")
        w(f"                    for _mm in {_tap_range('_mm', '_ii', sh, pt, h, kh, pb)}:")
        w(f"                        for _nn in {_tap_range('_nn', '_jj', sw, pl, wd, kw, pr)}:")
        w(f"                            {step.out}[_bb, _cc, _ii * {sh} + _mm - {pt}, _jj * {sw} + _nn - {pl}] += "
          f"_gv * {k}[_ff, _cc, _mm, _nn]")


def _emit_bias_grad(step: BiasGradLoop, w):
    f, ho, wo = step.dims
    if step.comment:
        w(f"# {step.comment}")
    # per-position partial sums over the batch (a contiguous, vectorisable add), then one sum per filter
    n, zero = ho * wo, w.num(0.0)
    g = f"np.ascontiguousarray({step.g})" if step.g in w.strided else step.g   # a copy only of a strided view
    w(f"_gf_{step.out} = {reshaped(g, f'({step.g}.shape[0], {f}, {n})')}")
    w(f"_bs = {step.sums}")
    w(f"for _ff in range({f}):")
    w(f"    for _p in range({n}):")
    w(f"        _bs[_p] = {zero}")
    w(f"    for _bb in range({step.g}.shape[0]):")
    w(f"        _r = _gf_{step.out}[_bb, _ff]")
    w(f"        for _p in range({n}):")
    w("            _bs[_p] += _r[_p]")
    w(f"    _acc = {zero}")
    w(f"    for _p in range({n}):")
    w("        _acc += _bs[_p]")
    w(f"    {step.out}[_ff] = _acc")


def _emit_pool(step: PoolLoop, w):
    c, h, wd, ho, wo = step.dims
    (ph, pw), (sh, sw) = step.size, step.stride
    if step.comment:
        w(f"# {step.comment}")
    src = step.b if step.kind in ("max_grad", "max_gather") else step.a
    if step.kind in ("max_grad", "avg_grad"):
        _zero(w, step.out)
    if step.kind == "max":   # NaN once any value was NaN or inf: the strict > never picks a NaN
        w(f"_nan = {w.num(0.0)}")
    w(f"for _bb in range({step.a}.shape[0]):")
    w.indent()
    w(f"for _cc in range({c}):")
    w.indent()
    w(f"for _ii in range({ho}):")
    w.indent()
    w(f"for _jj in range({wo}):")
    w.indent()
    if step.kind in ("avg", "avg_grad"):
        if step.kind == "avg":
            w(f"_acc = {w.num(0.0)}")
        else:
            w(f"_share = {step.a}[_bb, _cc, _ii, _jj] * {w.num(1.0 / (ph * pw))}")
        w(f"for _mm in range({ph}):")
        w(f"    for _nn in range({pw}):")
        if step.kind == "avg":
            w(f"        _acc += {src}[_bb, _cc, _ii * {sh} + _mm, _jj * {sw} + _nn]")
            w(f"{step.out}[_bb, _cc, _ii, _jj] = _acc * {w.num(1.0 / (ph * pw))}")
        else:
            w(f"        {step.out}[_bb, _cc, _ii * {sh} + _mm, _jj * {sw} + _nn] += _share")
    else:
        w(f"_rb = _ii * {sh}")
        w(f"_sb = _jj * {sw}")
        w(f"_best = {src}[_bb, _cc, _rb, _sb]")
        w(f"for _mm in range({ph}):")
        w(f"    for _nn in range({pw}):")
        w(f"        _v = {src}[_bb, _cc, _ii * {sh} + _mm, _jj * {sw} + _nn]")
        if step.kind == "max":
            w(f"        _nan += _v * {w.num(0.0)}  # (v·0: LLVM may not fold it without fast-math's nnan)")
        w("        if _v > _best:  # strict: the first maximum wins, as in the reference")
        w("            _best = _v")
        w(f"            _rb = _ii * {sh} + _mm")
        w(f"            _sb = _jj * {sw} + _nn")
        if step.kind == "max":
            w(f"{step.out}[_bb, _cc, _ii, _jj] = _best + _nan")
        elif step.kind == "max_grad":
            w(f"{step.out}[_bb, _cc, _rb, _sb] += {step.a}[_bb, _cc, _ii, _jj]")
        else:
            w(f"{step.out}[_bb, _cc, _ii, _jj] = {step.a}[_bb, _cc, _rb, _sb]")
    w.dedent(4)


def _emit_noise(step: NoiseLoop, w):
    if step.comment:
        w(f"# {step.comment}")
    w.printer.helpers.add("mix64")
    fixed = step.shape
    idx = [f"_a{k}" for k in range(len(fixed) + 1)]
    flat = f"_row0 + {idx[0]}"   # the element's flat index in the whole batch (a shard starts at _row0)
    for k, d in enumerate(fixed):
        flat = f"({flat}) * {d} + {idx[k + 1]}"
    w(f"if {reshaped(step.training, '1')}[0] != 0:")
    w.indent()
    w(f"_key = mix64(np.uint64({step.seed}) * np.uint64({int(GOLDEN)}) + np.uint64(int({reshaped(step.step, '1')}[0])))")
    w(f"_row0 = int({reshaped(step.first_row, '1')}[0])")
    w(f"for {idx[0]} in range({step.a}.shape[0]):")
    w.indent()
    for k, d in enumerate(fixed):
        w(f"for {idx[k + 1]} in range({d}):")
        w.indent()
    at = ", ".join(idx)
    if step.kind == "mask":
        w(f"_e = np.uint64({flat})")
        w(f"_u = float(mix64(_key + (_e + np.uint64(1)) * np.uint64({int(GOLDEN)})) >> np.uint64(11)) * {2.0 ** -53!r}")
        keep = w.num(1.0 / (1.0 - step.rate)) if step.scale else w.num(1.0)
        w(f"{step.out}[{at}] = {step.a}[{at}] * {keep} if _u >= {step.rate!r} else {w.num(0.0)}")
    else:
        w(f"_e = np.uint64(2 * ({flat}))")
        w(f"_u1 = float(mix64(_key + (_e + np.uint64(1)) * np.uint64({int(GOLDEN)})) >> np.uint64(11)) * {2.0 ** -53!r}")
        w(f"_u2 = float(mix64(_key + (_e + np.uint64(2)) * np.uint64({int(GOLDEN)})) >> np.uint64(11)) * {2.0 ** -53!r}")
        z = "math.sqrt(-2.0 * math.log1p(-_u1)) * math.cos(2.0 * math.pi * _u2)"
        w(f"{step.out}[{at}] = {step.a}[{at}] + {_cast(w, f'{step.sigma!r} * {z}')}")
    w.dedent(len(idx) + 1)
    w("else:  # evaluation: the identity")
    w.indent()
    w(f"for {idx[0]} in range({step.a}.shape[0]):")
    w.indent()
    for k, d in enumerate(fixed):
        w(f"for {idx[k + 1]} in range({d}):")
        w.indent()
    w(f"{step.out}[{at}] = {step.a}[{at}]")
    w.dedent(len(idx) + 1)


def _cast(w, text):
    return text if w.dtype == "float64" else f"np.float32({text})"


register_emitter(ConvLoop, as_helper(_emit_conv, lambda s: (s.out, s.a, s.b, s.bias, s.padded), "conv"))
register_emitter(PoolLoop, as_helper(_emit_pool, lambda s: (s.out, s.a, s.b), "pool"))
register_emitter(BiasGradLoop, as_helper(_emit_bias_grad, lambda s: (s.out, s.g, s.sums), "bias_grad"))
register_emitter(NoiseLoop, _emit_noise)

HELPERS.setdefault("mix64", f'''
@njit(inline="always", **JIT)
def mix64(z):
    """splitmix64's finalizer in uint64 (wraps modulo 2**64): graphnn.ops.dropout.mix64."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64({int(MIX1)})
    z = (z ^ (z >> np.uint64(27))) * np.uint64({int(MIX2)})
    return z ^ (z >> np.uint64(31))
''')
