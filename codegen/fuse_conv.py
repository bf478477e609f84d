"""CPU fusion of the conv → ReLU → max-pool block and of its gradient (W4's shape of net).

Unfused, one such block costs eight passes over the (B, F, Ho, Wo) maps per step: the conv's
copy-out, ReLU, the pool, zeroing ∂a, the pool gradient (which finds each window's maximum
again), the ReLU gradient, the filter gradient's gather and the bias sum. Fused:

- forward (`ConvReluPool`): the flat conv sums (emit_conv's layout: the batch as one row, the
  taps summed over one contiguous range) are clamped by ReLU in place, and the pool reads its
  windows from there, keeping where each window's FIRST maximum lies (strict ``>``, in the
  window's row-major order, as the reference's argmax): its offset, in a small int32 array;
- backward (`PoolReluConvGrad`): each window's gradient goes straight to that stored position
  if the pooled value is positive (ReLU's Heaviside(conv) there: relu(conv) > 0 ⟺ conv > 0):
  the filter and bias gradients are summed over those stored positions alone.

The conv and ReLU maps and their gradients are then never written. The rewrite applies only
where those four buffers are read by nothing else in the program (a deeper net whose conv
input gradient reads ∂conv is left unfused), to stride-1 unpadded convs with small filters
and non-overlapping pool windows. Same numbers as unfused but for the bias sum's order.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .emit_cpu import register_emitter, register_rewrite
from .lower_conv import BiasGradLoop, ConvLoop, PoolLoop
from .lower import names_read
from .schedule import Let, Loop, Store

MAX_TAPS = 49   #: filters up to 7×7 (emit_conv's unrolled flat form)


@dataclass
class ConvReluPool:
    """pool = max-pool(relu(conv(x, w) + bias)), and ``_pos_<pool>``: each window's first maximum."""
    conv: ConvLoop
    pool: PoolLoop
    comment: str = ""


@dataclass
class PoolReluConvGrad:
    """d_w (and d_bias) of the block above from the pool's cotangent ``g``, via the stored positions."""
    forward: ConvReluPool
    g: str
    d_w: str
    d_bias: str | None
    comment: str = ""


def _flat_conv(step):
    c, h, wd, f, kh, kw, ho, wo = step.dims
    return step.stride == (1, 1) and not any(step.pad) and kh * kw <= MAX_TAPS


def _elementwise(step, expected):
    """The name stored by a one-Let loop computing ``expected(index)`` (a sympy expr), else None."""
    if not isinstance(step, Loop) or len(step.body) != 2:
        return None
    let, store = step.body
    if not (isinstance(let, Let) and isinstance(store, Store) and store.expr == let.name):
        return None
    # compared as text: the loop's index symbols carry assumptions the expected form's do not
    if tuple(store.target.indices) != tuple(step.indices) or str(let.expr) != str(expected(step.indices)):
        return None
    return str(store.target.base)


def fuse_conv_blocks(prog, steps: list) -> list:
    """The program's steps with every fusable conv-ReLU-pool block (and its gradient) fused."""
    kept = {a.name for a in prog.args if a.role not in ("temp",)}   # outputs, gradients, inputs
    steps = list(steps)
    at = 0
    while at < len(steps):
        conv = steps[at]
        if isinstance(conv, ConvLoop) and conv.kind == "forward" and _flat_conv(conv):
            steps = _fuse_one(steps, at, kept) or steps
        at += 1
    return steps


def _fuse_one(steps, at, kept):
    conv = steps[at]
    idx = lambda ix: sympy.Indexed(sympy.IndexedBase(conv.out), *ix)  # noqa: E731
    relu_at = next((k for k in range(at + 1, len(steps))
                    if _elementwise(steps[k], lambda ix: sympy.Max(0, idx(ix))) is not None), None)
    if relu_at is None:
        return None
    a = _elementwise(steps[relu_at], lambda ix: sympy.Max(0, idx(ix)))
    pool_at = next((k for k in range(relu_at + 1, len(steps)) if isinstance(steps[k], PoolLoop)
                    and steps[k].kind == "max" and steps[k].a == a), None)
    if pool_at is None or not _tiles(steps[pool_at]):
        return None
    fwd = ConvReluPool(conv, steps[pool_at], comment=f"{steps[pool_at].out} = max-pool(relu({conv.comment}))"
                       f" in one pass, window maxima kept")
    matched = {at, relu_at, pool_at}
    grad = _match_grad(steps, fwd, a)
    if grad is not None:
        matched |= grad[1]
    dropped = {conv.out, a} | (grad[2] if grad else set())
    if dropped & kept or any(k not in matched and names_read(s) & dropped for k, s in enumerate(steps)):
        return None   # the conv or ReLU map (or their gradients) are read elsewhere: keep them
    out = []
    for k, s in enumerate(steps):
        if k == at:
            out.append(fwd)
        elif grad is not None and k == min(grad[1]):
            out.append(grad[0])
        elif k not in matched:
            out.append(s)
    return out


def _tiles(pool):
    c, h, wd, ho, wo = pool.dims
    return pool.size == pool.stride and ho * pool.size[0] <= h and wo * pool.size[1] <= wd


def _match_grad(steps, fwd, a):
    """(PoolReluConvGrad, the step positions it replaces, the buffers it no longer writes) or None."""
    conv = fwd.conv
    g_at = next((k for k, s in enumerate(steps) if isinstance(s, PoolLoop) and s.kind == "max_grad"
                 and s.b == a and s.size == fwd.pool.size), None)
    if g_at is None:
        return None
    d_a = steps[g_at].out
    heaviside = lambda ix: (sympy.Heaviside(sympy.Indexed(sympy.IndexedBase(conv.out), *ix), 0)  # noqa: E731
                            * sympy.Indexed(sympy.IndexedBase(d_a), *ix))
    mask_at = next((k for k in range(g_at + 1, len(steps)) if _elementwise(steps[k], heaviside)), None)
    if mask_at is None:
        return None
    d_conv = _elementwise(steps[mask_at], heaviside)
    w_at = next((k for k in range(mask_at + 1, len(steps)) if isinstance(steps[k], ConvLoop)
                 and steps[k].kind == "grad_filter" and steps[k].b == d_conv and steps[k].a == conv.a), None)
    if w_at is None:
        return None
    b_at = next((k for k in range(mask_at + 1, len(steps)) if isinstance(steps[k], BiasGradLoop)
                 and steps[k].g == d_conv), None)
    d_bias = steps[b_at].out if b_at is not None else None
    step = PoolReluConvGrad(fwd, steps[g_at].a, steps[w_at].out, d_bias,
                            comment=f"{steps[w_at].out}{', ' + d_bias if d_bias else ''} from "
                                    f"{steps[g_at].a} through the kept window maxima and ReLU")
    return step, {g_at, mask_at, w_at} | ({b_at} if b_at is not None else set()), {d_a, d_conv}


# -- printing ------------------------------------------------------------------------------

def _geometry(conv):
    c, h, wd, f, kh, kw, ho, wo = conv.dims
    taps = [(m, n) for m in range(kh) for n in range(kw)]
    at = {t: (f" + {t[0] * wd + t[1]}" if t[0] * wd + t[1] else "") for t in taps}
    return taps, at, c * h * wd, (ho - 1) * wd + wo


def _emit_forward(step: ConvReluPool, w):
    conv, pool = step.conv, step.pool
    c, h, wd, f, kh, kw, ho, wo = conv.dims
    _, _, _, pho, pwo = pool.dims
    (ph, pw) = pool.size
    taps, at, pitch, span = _geometry(conv)
    x, zero = conv.a, w.num(0.0)
    w(f"# {step.comment}")
    w(f"_xl_{pool.out} = np.ascontiguousarray({x}).reshape(-1)")
    w(f"_n_{pool.out} = max(0, ({x}.shape[0] - 1) * {pitch} + {span})")
    w(f"_t = np.empty(_n_{pool.out}, {x}.dtype)")
    w(f"_pos_{pool.out} = np.empty(({x}.shape[0], {f}, {pho}, {pwo}), np.int32)")
    w(f"for _ff in range({f}):")
    w.indent()
    for cc in range(c):
        for m, n in taps:
            w(f"_k{m}_{n} = {conv.b}[_ff, {cc}, {m}, {n}]")
        w(f"_xr = _xl_{pool.out}[{cc * h * wd}:]")
        total = " + ".join(f"_k{m}_{n} * _xr[_p{at[(m, n)]}]" for m, n in taps)
        lead = f"{conv.bias}[_ff] + " if cc == 0 and conv.bias else ""
        if cc == c - 1:   # the last channel's sum is the conv: clamp it (ReLU) in place
            # the sum first: Numba's max keeps a NaN only as its first argument (relu(NaN) = NaN);
            # _nan turns NaN if any map value is NaN or inf (v·0: without fast-math's nnan LLVM
            # may not fold it, while v − v it folds away under reassoc), and every pooled value of
            # this filter then with it — the strict > below never picks a NaN
            w(f"_nan = {zero}")
            w(f"for _p in range(_n_{pool.out}):")
            w(f"    _r = max({'_t[_p] + (' + total + ')' if cc else lead + total}, {zero})")
            w("    _t[_p] = _r")
            w(f"    _nan += _r * {zero}")
        else:
            w(f"for _p in range(_n_{pool.out}):")
            w(f"    _t[_p] {'+=' if cc else '='} {lead}{total}")
    w(f"for _bb in range({x}.shape[0]):")
    w(f"    _po = {pool.out}[_bb, _ff]")
    w(f"    _pp = _pos_{pool.out}[_bb, _ff]")
    w(f"    for _ii in range({pho}):")
    w(f"        for _jj in range({pwo}):")
    w(f"            _q = _bb * {pitch} + _ii * {ph * wd} + _jj * {pw}")
    w("            _best = _t[_q]")
    w("            _arg = 0")
    for m, n in [(m, n) for m in range(ph) for n in range(pw)][1:]:
        w(f"            if _t[_q + {m * wd + n}] > _best:  # strict: the first maximum wins, as in the reference")
        w(f"                _best = _t[_q + {m * wd + n}]")
        w(f"                _arg = {m * wd + n}")
    w("            _po[_ii, _jj] = _best + _nan")
    w("            _pp[_ii, _jj] = _arg")
    w.dedent()


def _emit_grad(step: PoolReluConvGrad, w):
    """Only a window's maximum carries gradient (and only where ReLU passed it): the filter and
    bias gradients are summed over those positions alone — at most one in ph·pw of the conv's
    outputs — with a register per (channel, tap), instead of scattering ∂conv into a zeroed flat
    map and reducing every position of it (86 % multiplications by zero on W4)."""
    conv, pool = step.forward.conv, step.forward.pool
    c, h, wd, f, kh, kw, ho, wo = conv.dims
    _, _, _, pho, pwo = pool.dims
    (ph, pw) = pool.size
    taps, at, pitch, span = _geometry(conv)
    zero = w.num(0.0)
    regs = [(cc, m, n) for cc in range(c) for m, n in taps]
    w(f"# {step.comment}")
    w(f"for _ff in range({f}):")
    w.indent()
    w(f"_acc = {zero}")
    for cc, m, n in regs:
        w(f"_a{cc}_{m}_{n} = {zero}")
    w(f"for _bb in range({conv.a}.shape[0]):")
    w(f"    _pp = _pos_{pool.out}[_bb, _ff]")
    w(f"    for _ii in range({pho}):")
    w(f"        for _jj in range({pwo}):")
    w(f"            if {pool.out}[_bb, _ff, _ii, _jj] > 0:  # ReLU's gradient: relu(conv) > 0 there")
    w(f"                _gv = {step.g}[_bb, _ff, _ii, _jj]")
    w("                _acc += _gv")
    w(f"                _q = _bb * {pitch} + _ii * {ph * wd} + _jj * {pw} + _pp[_ii, _jj]")
    for cc, m, n in regs:
        off = cc * h * wd + m * wd + n
        w(f"                _a{cc}_{m}_{n} += _gv * _xl_{pool.out}[_q{f' + {off}' if off else ''}]")
    if step.d_bias:
        w(f"{step.d_bias}[_ff] = _acc")
    for cc, m, n in regs:
        w(f"{step.d_w}[_ff, {cc}, {m}, {n}] = _a{cc}_{m}_{n}")
    w.dedent()


register_emitter(ConvReluPool, _emit_forward, cpu_only=True)
register_emitter(PoolReluConvGrad, _emit_grad, cpu_only=True)
register_rewrite(fuse_conv_blocks)
