"""2-D convolution and pooling, NCHW with the batch first: x (B, C, H, W), filters (F, C, kh, kw).

Like every deep-learning library, "convolution" here is cross-correlation:
``y[b,f,i,j] = Σ_{c,m,n} x[b, c, i·s + m − p, j·s + n − p] · w[f, c, m, n] (+ bias[f])``.
Each op keeps the course's picture readable (a ``conv2d 3×3×8`` box, not an im2col
matmul) and its gradients are ops too, so a gradient graph can be compiled and
differentiated again: conv2d's cotangents are ``conv2d_grad_input`` and
``conv2d_grad_filter``; max pooling's is ``maxpool2d_grad``, which sends each window's
cotangent to ONE maximum (the first, in row-major order, when values tie).
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from .base import Op, apply, contiguous, fmt_shape


def _pair(v, what):
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or any(not isinstance(k, (int, np.integer)) or k < 1 for k in pair):
        raise ShapeError(f"{what} must be a positive int or a pair of them, got {v!r}")
    return int(pair[0]), int(pair[1])


def _out_size(n, k, s, lo, hi):
    return (n + lo + hi - k) // s + 1


def same_padding(n, k, s):
    """(before, after) so that the output has ceil(n / s) positions (TensorFlow's 'same')."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _padding(padding, hw, ksize, stride):
    """Padding as (top, bottom, left, right) from 'valid', 'same', an int or a 4-tuple."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return same_padding(hw[0], ksize[0], stride[0]) + same_padding(hw[1], ksize[1], stride[1])
    if isinstance(padding, (int, np.integer)) and padding >= 0:
        return (int(padding),) * 4
    if isinstance(padding, tuple) and len(padding) == 4 and all(int(p) >= 0 for p in padding):
        return tuple(int(p) for p in padding)
    raise ShapeError(f"padding must be 'valid', 'same', a non-negative int or (top, bottom, left, right), "
                     f"got {padding!r}")


def _check_image(shape, what):
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ShapeError(f"{what} must be 4-d (batch, channels, height, width) with fixed channels and "
                         f"size, got {fmt_shape(shape)}")


def _windows(hw, ksize, stride, pad):
    ho = _out_size(hw[0], ksize[0], stride[0], pad[0], pad[1])
    wo = _out_size(hw[1], ksize[1], stride[1], pad[2], pad[3])
    if ho < 1 or wo < 1:
        raise ShapeError(f"a {ksize[0]}×{ksize[1]} window does not fit a {hw[0]}×{hw[1]} image "
                         f"padded by {pad}")
    return ho, wo


def _padded(x, pad):
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])))


def _tap(xp, m, n, stride, out_hw):
    """The (B, C, Ho, Wo) slice of the padded input that filter tap (m, n) multiplies."""
    (sh, sw), (ho, wo) = stride, out_hw
    return xp[:, :, m:m + sh * (ho - 1) + 1:sh, n:n + sw * (wo - 1) + 1:sw]


def _fixed(shape, batch):
    return tuple(batch if d is None else d for d in shape)


# -- convolution ---------------------------------------------------------------------

class Conv2D(Op):
    """y = x ⋆ w (+ b): inputs x (B, C, H, W), w (F, C, kh, kw), optional b (F,)."""

    name = "conv2d"

    def infer_shape(self, shapes, attrs):
        x, w = shapes[0], shapes[1]
        _check_image(x, "the input")
        if len(w) != 4 or None in w:
            raise ShapeError(f"filters must be 4-d (filters, channels, kh, kw), got {fmt_shape(w)}")
        if w[1] != x[1]:
            raise ShapeError(f"filters have {w[1]} channels but the input has {x[1]}")
        if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
            raise ShapeError(f"the bias must have shape ({w[0]},), one per filter, got {fmt_shape(shapes[2])}")
        ho, wo = _windows(x[2:], w[2:], attrs["stride"], attrs["pad"])
        return (x[0], w[0], ho, wo)

    def reference(self, node, x, w, b=None):
        stride, pad = node.attrs["stride"], node.attrs["pad"]
        out_hw = node.shape[2:]
        xp = _padded(x, pad)
        y = np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=np.result_type(x, w))
        for m in range(w.shape[2]):
            for n in range(w.shape[3]):
                y += np.einsum("bchw,fc->bfhw", _tap(xp, m, n, stride, out_hw), w[:, :, m, n])
        if b is not None:
            y += b[:, None, None]
        return y

    def vjp(self, node, g):
        x, w = node.inputs[:2]
        attrs = dict(node.attrs)
        grads = [conv2d_grad_input(g, w, x.shape, attrs), conv2d_grad_filter(x, g, w.shape, attrs)]
        if len(node.inputs) == 3:
            grads.append(apply(Conv2DGradBias.instance(), [g]))
        return grads

    def element_expr(self, node, index, sym, batch):
        x, w = node.inputs[:2]
        b, f, i, j = index
        (sh, sw), pad = node.attrs["stride"], node.attrs["pad"]
        _, c_n, h, wd = _fixed(x.shape, batch)
        terms = []
        for c in range(c_n):
            for m in range(w.shape[2]):
                for n in range(w.shape[3]):
                    r, s = i * sh + m - pad[0], j * sw + n - pad[2]
                    if 0 <= r < h and 0 <= s < wd:
                        terms.append(sym(0, (b, c, r, s)) * sym(1, (f, c, m, n)))
        if len(node.inputs) == 3:
            terms.append(sym(2, (f,)))
        return sympy.Add(*terms)

    def label(self, node):
        return conv_label("conv2d", node.inputs[1].shape, node.attrs)


def conv_label(what, w_shape, attrs):
    """'conv2d 3×3×8' (+ ', stride 2', ', same') — the course's way of naming a conv layer."""
    text = f"{what} {w_shape[2]}×{w_shape[3]}×{w_shape[0]}"
    if attrs["stride"] != (1, 1):
        s = attrs["stride"]
        text += f", stride {s[0]}" if s[0] == s[1] else f", stride {s[0]}×{s[1]}"
    if attrs.get("padding") == "same":
        text += ", same"
    elif any(attrs["pad"]):
        text += f", pad {attrs['pad']}"
    return text


class Conv2DGradInput(Op):
    """dL/dx of a conv2d: the cotangent g (B, F, Ho, Wo) correlated back through w (F, C, kh, kw)."""

    name = "conv2d_grad_input"

    def infer_shape(self, shapes, attrs):
        g, w = shapes
        if len(g) != 4 or g[1] != w[0]:
            raise ShapeError(f"cotangent {fmt_shape(g)} does not match filters {fmt_shape(w)}")
        return (g[0], w[1]) + tuple(attrs["in_hw"])

    def reference(self, node, g, w):
        stride, pad, (h, wd) = node.attrs["stride"], node.attrs["pad"], node.attrs["in_hw"]
        out_hw = g.shape[2:]
        dxp = np.zeros((g.shape[0], w.shape[1], h + pad[0] + pad[1], wd + pad[2] + pad[3]),
                       dtype=np.result_type(g, w))
        for m in range(w.shape[2]):
            for n in range(w.shape[3]):
                _tap(dxp, m, n, stride, out_hw)[...] += np.einsum("bfhw,fc->bchw", g, w[:, :, m, n])
        return contiguous(dxp[:, :, pad[0]:pad[0] + h, pad[2]:pad[2] + wd])

    def vjp(self, node, u):
        # <u, G_x(g, w)> = <conv(u, w), g> = <w, G_w(u, g)>: both cotangents are convolutions again.
        g, w = node.inputs
        attrs = _conv_attrs(node.attrs)
        return [apply(Conv2D.instance(), [u, w], attrs), conv2d_grad_filter(u, g, w.shape, attrs)]

    def element_expr(self, node, index, sym, batch):
        g, w = node.inputs
        b, c, r, s = index
        (sh, sw), pad = node.attrs["stride"], node.attrs["pad"]
        ho, wo = g.shape[2:]
        terms = []
        for f in range(w.shape[0]):
            for m in range(w.shape[2]):
                for n in range(w.shape[3]):
                    i, ri = divmod(r + pad[0] - m, sh)
                    j, rj = divmod(s + pad[2] - n, sw)
                    if ri == 0 and rj == 0 and 0 <= i < ho and 0 <= j < wo:
                        terms.append(sym(0, (b, f, i, j)) * sym(1, (f, c, m, n)))
        return sympy.Add(*terms)

    def label(self, node):
        return conv_label("∂conv2d/∂x", node.inputs[1].shape, node.attrs)


class Conv2DGradFilter(Op):
    """dL/dw of a conv2d: Σ over batch and positions of input patches × cotangent g."""

    name = "conv2d_grad_filter"

    def infer_shape(self, shapes, attrs):
        x, g = shapes
        if len(g) != 4 or len(x) != 4:
            raise ShapeError(f"input {fmt_shape(x)} and cotangent {fmt_shape(g)} must be 4-d")
        return (g[1], x[1]) + tuple(attrs["ksize"])

    def reference(self, node, x, g):
        stride, pad, (kh, kw) = node.attrs["stride"], node.attrs["pad"], node.attrs["ksize"]
        out_hw = g.shape[2:]
        xp = _padded(x, pad)
        dw = np.empty((g.shape[1], x.shape[1], kh, kw), dtype=np.result_type(x, g))
        for m in range(kh):
            for n in range(kw):
                dw[:, :, m, n] = np.einsum("bchw,bfhw->fc", _tap(xp, m, n, stride, out_hw), g)
        return dw

    def vjp(self, node, u):
        # <u, G_w(x, g)> = <conv(x, u), g> = <x, G_x(g, u)>
        x, g = node.inputs
        attrs = _conv_attrs(node.attrs)
        return [conv2d_grad_input(g, u, x.shape, attrs), apply(Conv2D.instance(), [x, u], attrs)]

    def element_expr(self, node, index, sym, batch):
        x, g = node.inputs
        f, c, m, n = index
        (sh, sw), pad = node.attrs["stride"], node.attrs["pad"]
        bn, _, h, wd = _fixed(x.shape, batch)
        ho, wo = g.shape[2:]
        terms = []
        for b in range(bn):
            for i in range(ho):
                for j in range(wo):
                    r, s = i * sh + m - pad[0], j * sw + n - pad[2]
                    if 0 <= r < h and 0 <= s < wd:
                        terms.append(sym(0, (b, c, r, s)) * sym(1, (b, f, i, j)))
        return sympy.Add(*terms)

    def label(self, node):
        return conv_label("∂conv2d/∂w", (node.shape[0], None) + node.shape[2:], node.attrs)


class Conv2DGradBias(Op):
    """dL/db of a conv2d: the cotangent g (B, F, Ho, Wo) summed over batch and positions.

    A sum over axes (0, 2, 3), as its own op so compiled code reduces it in a register per
    filter instead of accumulating into memory inside the loop that computes g.
    """

    name = "conv2d_grad_bias"
    symbol = "Σ_{b,i,j}"

    def infer_shape(self, shapes, attrs):
        (g,) = shapes
        if len(g) != 4:
            raise ShapeError(f"the cotangent must be 4-d (batch, filters, height, width), got {fmt_shape(g)}")
        return (g[1],)

    def reference(self, node, g):
        return g.sum(axis=(0, 2, 3))

    def vjp(self, node, u):
        from .structure import expand
        return [expand(u, node.inputs[0], (0, 2, 3))]

    def element_expr(self, node, index, sym, batch):
        bn, _, ho, wo = _fixed(node.inputs[0].shape, batch)
        return sympy.Add(*[sym(0, (b, index[0], i, j)) for b in range(bn) for i in range(ho) for j in range(wo)])


def _conv_attrs(attrs):
    return {k: attrs[k] for k in ("stride", "pad", "padding")}


def conv2d_grad_input(g, w, x_shape, attrs):
    attrs = {**_conv_attrs(attrs), "in_hw": tuple(x_shape[2:])}
    return apply(Conv2DGradInput.instance(), [g, w], attrs)


def conv2d_grad_filter(x, g, w_shape, attrs):
    attrs = {**_conv_attrs(attrs), "ksize": tuple(w_shape[2:])}
    return apply(Conv2DGradFilter.instance(), [x, g], attrs)


def conv2d(x, w, b=None, *, stride=1, padding="valid", name=None):
    """2-D convolution of x (B, C, H, W) with filters w (F, C, kh, kw), plus an optional bias b (F,).

    ``padding``: 'valid' (no padding), 'same' (output size ceil(H / stride)), an int, or
    (top, bottom, left, right).
    """
    stride = _pair(stride, "conv2d stride")
    inputs = [x, w] + ([b] if b is not None else [])
    if len(x.shape) != 4 or len(w.shape) != 4:
        operands = ", ".join(f"{fmt_shape(v.shape)}" for v in inputs)
        raise ShapeError(f"conv2d{f' ({name!r})' if name else ''}: input must be (batch, channels, height, "
                         f"width) and filters (filters, channels, kh, kw) — operands: {operands}")
    sizes = tuple(x.shape[2:]) + tuple(w.shape[2:])
    # a batch axis (None) where a size belongs: the shape rule below names it, not the padding
    pad = _padding(padding, x.shape[2:], w.shape[2:], stride) if None not in sizes else (0, 0, 0, 0)
    attrs = {"stride": stride, "pad": pad, "padding": padding if isinstance(padding, str) else "explicit"}
    return apply(Conv2D.instance(), inputs, attrs, name=name)


# -- pooling -------------------------------------------------------------------------

class _Pool(Op):
    def infer_shape(self, shapes, attrs):
        x = shapes[0]
        _check_image(x, "the pooled input")
        ho, wo = _windows(x[2:], attrs["size"], attrs["stride"], (0, 0, 0, 0))
        return (x[0], x[1], ho, wo)

    def _window_elems(self, node, index, sym, pos=0):
        b, c, i, j = index
        (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["stride"]
        return [sym(pos, (b, c, i * sh + m, j * sw + n)) for m in range(ph) for n in range(pw)]

    def label(self, node):
        (ph, pw), s = node.attrs["size"], node.attrs["stride"]
        text = f"{self.short} {ph}×{pw}"
        return text if s == (ph, pw) else text + f", stride {s[0]}" if s[0] == s[1] else text + f", stride {s}"


def _window_view(x, size, stride, out_hw):
    """(B, C, Ho, Wo, ph·pw): every pooling window's elements, row-major within the window."""
    (ph, pw), (sh, sw), (ho, wo) = size, stride, out_hw
    taps = [x[:, :, m:m + sh * (ho - 1) + 1:sh, n:n + sw * (wo - 1) + 1:sw]
            for m in range(ph) for n in range(pw)]
    return np.stack(taps, axis=-1)


def _argmax_positions(x, size, stride, out_hw):
    """Row and column (in x) of each window's first maximum: the one that gets the gradient."""
    (ph, pw), (sh, sw), (ho, wo) = size, stride, out_hw
    k = np.argmax(_window_view(x, size, stride, out_hw), axis=-1)
    rows = np.arange(ho)[:, None] * sh + k // pw
    cols = np.arange(wo)[None, :] * sw + k % pw
    return rows, cols


class MaxPool2D(_Pool):
    name = "maxpool2d"
    short = "max-pool"

    def reference(self, node, x):
        return np.max(_window_view(x, node.attrs["size"], node.attrs["stride"], node.shape[2:]), axis=-1)

    def vjp(self, node, g):
        return [apply(MaxPool2DGrad.instance(), [g, node.inputs[0]], dict(node.attrs))]

    def element_expr(self, node, index, sym, batch):
        return sympy.Max(*self._window_elems(node, index, sym))

    def element_partial(self, node, index, pos, in_index, sym, out, batch):
        # one winner per window (the first maximum), like the gradient op
        window = self._window_elems(node, index, sym)
        target = sym(pos, in_index)
        k = window.index(target)
        wins = [sympy.And(*[sympy.Gt(target, v) if q < k else sympy.Ge(target, v)
                            for q, v in enumerate(window) if q != k])]
        return sympy.Piecewise((1, wins[0]), (0, True))


class MaxPool2DGrad(_Pool):
    """Scatter g (B, C, Ho, Wo) to each window's first maximum in x (B, C, H, W); zeros elsewhere."""

    name = "maxpool2d_grad"
    short = "∂max-pool"

    def infer_shape(self, shapes, attrs):
        return shapes[1]

    def reference(self, node, g, x):
        rows, cols = _argmax_positions(x, node.attrs["size"], node.attrs["stride"], g.shape[2:])
        out = np.zeros(x.shape, dtype=g.dtype)
        bi = np.arange(x.shape[0])[:, None, None, None]
        ci = np.arange(x.shape[1])[None, :, None, None]
        np.add.at(out, (bi, ci, rows, cols), g)  # overlapping windows may pick one element twice
        return out

    def vjp(self, node, u):
        return [apply(MaxPool2DGather.instance(), [u, node.inputs[1]], dict(node.attrs)), None]


class MaxPool2DGather(_Pool):
    """u (B, C, H, W) read at each window's first maximum of x: the adjoint of maxpool2d_grad."""

    name = "maxpool2d_gather"
    short = "gather max-pool"

    def infer_shape(self, shapes, attrs):
        return super().infer_shape(shapes[1:], attrs)

    def reference(self, node, u, x):
        rows, cols = _argmax_positions(x, node.attrs["size"], node.attrs["stride"], node.shape[2:])
        bi = np.arange(x.shape[0])[:, None, None, None]
        ci = np.arange(x.shape[1])[None, :, None, None]
        return contiguous(u[bi, ci, rows, cols])

    def vjp(self, node, g):
        return [apply(MaxPool2DGrad.instance(), [g, node.inputs[1]], dict(node.attrs)), None]


class AvgPool2D(_Pool):
    name = "avgpool2d"
    short = "avg-pool"

    def reference(self, node, x):
        return np.mean(_window_view(x, node.attrs["size"], node.attrs["stride"], node.shape[2:]), axis=-1)

    def vjp(self, node, g):
        return [apply(AvgPool2DGrad.instance(), [g, node.inputs[0]], dict(node.attrs))]

    def element_expr(self, node, index, sym, batch):
        window = self._window_elems(node, index, sym)
        return sympy.Add(*window) / len(window)


class AvgPool2DGrad(_Pool):
    """g (B, C, Ho, Wo) spread evenly over each window, shaped like the pooled input."""

    name = "avgpool2d_grad"
    short = "∂avg-pool"

    def infer_shape(self, shapes, attrs):
        return shapes[1]

    def reference(self, node, g, like):
        (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["stride"]
        ho, wo = g.shape[2:]
        out = np.zeros(like.shape, dtype=g.dtype)
        share = g / (ph * pw)
        for m in range(ph):
            for n in range(pw):
                out[:, :, m:m + sh * (ho - 1) + 1:sh, n:n + sw * (wo - 1) + 1:sw] += share
        return out

    def vjp(self, node, u):
        return [apply(AvgPool2D.instance(), [u], dict(node.attrs)), None]

    def element_expr(self, node, index, sym, batch):
        b, c, r, s = index
        (ph, pw), (sh, sw) = node.attrs["size"], node.attrs["stride"]
        ho, wo = node.inputs[0].shape[2:]
        terms = [sym(0, (b, c, (r - m) // sh, (s - n) // sw)) for m in range(ph) for n in range(pw)
                 if (r - m) % sh == 0 and (s - n) % sw == 0
                 and 0 <= (r - m) // sh < ho and 0 <= (s - n) // sw < wo]
        return sympy.Add(*terms) / (ph * pw)


def _pool(op, x, size, stride, name):
    size = _pair(size, f"{op.name} size")
    stride = size if stride is None else _pair(stride, f"{op.name} stride")
    return apply(op, [x], {"size": size, "stride": stride}, name=name)


def max_pool2d(x, size=2, stride=None, name=None):
    """Max pooling over size×size windows (stride defaults to size); gradient to one maximum per window."""
    return _pool(MaxPool2D.instance(), x, size, stride, name)


def avg_pool2d(x, size=2, stride=None, name=None):
    """Average pooling over size×size windows (stride defaults to size)."""
    return _pool(AvgPool2D.instance(), x, size, stride, name)
