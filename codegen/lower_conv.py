"""Lowerings of the model zoo's ops: conv2d (and its gradient ops), max/avg pooling (and
theirs), dropout / masking noise and Gaussian noise.

Each op becomes one schedule step (`ConvLoop`, `BiasGradLoop`, `PoolLoop`, `NoiseLoop`) that
carries its shapes, strides and padding as literals; emit_conv.py prints them for the CPU
and cuda/conv.py for CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphnn.ops import (AvgPool2D, AvgPool2DGrad, Conv2D, Conv2DGradBias, Conv2DGradFilter, Conv2DGradInput,
                         Dropout, GaussianNoise, MaxPool2D, MaxPool2DGather, MaxPool2DGrad)

from .lower import CodegenError, Lowered, register_lowering


# -- schedule steps ------------------------------------------------------------------------

@dataclass
class ConvLoop:
    """kind 'forward': out = conv(x=a, w=b) (+ bias); 'grad_input': out = G_x(g=a, w=b);
    'grad_filter': out = G_w(x=a, g=b). Shapes: x (B, C, H, W), w (F, C, KH, KW), g (B, F, HO, WO)."""
    out: str
    a: str
    b: str
    bias: str | None
    kind: str
    dims: tuple      # (C, H, W, F, KH, KW, HO, WO)
    stride: tuple
    pad: tuple
    comment: str = ""
    padded: str = ""   # a padded conv's (B, C, H + pads, W + pads) scratch buffer (x, or dx before cropping)


@dataclass
class BiasGradLoop:
    """out[f] = Σ_{b,i,j} g[b, f, i, j]: per-position sums over the batch, then over the positions."""
    out: str
    g: str
    dims: tuple      # (F, HO, WO)
    comment: str = ""
    sums: str = ""   # the (HO·WO,) scratch buffer of the per-position sums


@dataclass
class PoolLoop:
    """kind 'max' | 'avg' (forward: out from x=a), 'max_grad' (out shaped like x=b, g=a),
    'max_gather' (out[b,c,i,j] = a at the window's first max of x=b), 'avg_grad'."""
    out: str
    a: str
    b: str | None
    kind: str
    dims: tuple      # (C, H, W, HO, WO)
    size: tuple
    stride: tuple
    comment: str = ""


@dataclass
class NoiseLoop:
    """Dropout/masking (kind 'mask') or Gaussian noise (kind 'gaussian') of x=a into out."""
    out: str
    a: str
    training: str
    step: str
    kind: str
    shape: tuple     # the fixed axes after the batch
    seed: int
    rate: float = 0.0
    scale: bool = True
    sigma: float = 0.0
    comment: str = ""
    first_row: str = ""   # the fed batch's first row in the whole batch (data-parallel shards)


# -- lowerings -------------------------------------------------------------------------------

def _image_dims(node, what):
    shape = node.shape
    if len(shape) != 4 or shape[0] is not None:
        raise CodegenError(f"codegen: {what} {node.label()!r} needs a batched (B, C, H, W) operand, got {shape}")
    return shape[1:]


def _padded(node, ctx, c, h, wd) -> str:
    """A workspace buffer for the zero-padded image of a padded conv ('' if unpadded): the
    generated code allocates nothing (codegen/workspace.py)."""
    pt, pb, pl, pr = node.attrs["pad"]
    return ctx.temp(f"{ctx.name(node)}_padded", (None, c, h + pt + pb, wd + pl + pr)) if any(node.attrs["pad"]) else ""


def _conv(node, ctx):
    x, w = node.inputs[:2]
    c, h, wd = _image_dims(x, "conv2d")
    f, _, kh, kw = w.shape
    ho, wo = node.shape[2:]
    bias = ctx.array(node.inputs[2]) if len(node.inputs) == 3 else None
    step = ConvLoop(ctx.name(node), ctx.array(x), ctx.array(w), bias, "forward", (c, h, wd, f, kh, kw, ho, wo),
                    node.attrs["stride"], node.attrs["pad"], comment=f"{node.label()} = {node.op.label(node)}",
                    padded=_padded(node, ctx, c, h, wd))
    return Lowered(steps=[step])


def _conv_grad_input(node, ctx):
    g, w = node.inputs
    c, h, wd = node.shape[1:]
    f, _, kh, kw = w.shape
    ho, wo = g.shape[2:]
    step = ConvLoop(ctx.name(node), ctx.array(g), ctx.array(w), None, "grad_input", (c, h, wd, f, kh, kw, ho, wo),
                    node.attrs["stride"], node.attrs["pad"], comment=f"{node.label()} = {node.op.label(node)}",
                    padded=_padded(node, ctx, c, h, wd))
    return Lowered(steps=[step])


def _conv_grad_filter(node, ctx):
    x, g = node.inputs
    c, h, wd = _image_dims(x, "conv2d_grad_filter")
    f, _, kh, kw = node.shape
    ho, wo = g.shape[2:]
    step = ConvLoop(ctx.name(node), ctx.array(x), ctx.array(g), None, "grad_filter", (c, h, wd, f, kh, kw, ho, wo),
                    node.attrs["stride"], node.attrs["pad"], comment=f"{node.label()} = {node.op.label(node)}",
                    padded=_padded(node, ctx, c, h, wd))
    return Lowered(steps=[step])


def _conv_grad_bias(node, ctx):
    (g,) = node.inputs
    f, ho, wo = g.shape[1:]
    step = BiasGradLoop(ctx.name(node), ctx.array(g), (f, ho, wo),
                        comment=f"{node.label()} = Σ over batch and positions of {g.label()}",
                        sums=ctx.temp(f"{ctx.name(node)}_sums", (ho * wo,)))
    return Lowered(steps=[step])


def _pool(kind):
    def lower(node, ctx):
        if kind in ("max", "avg"):
            x, a, b = node.inputs[0], ctx.array(node.inputs[0]), None
            ho, wo = node.shape[2:]
        elif kind == "max_gather":
            x, a, b = node.inputs[1], ctx.array(node.inputs[0]), ctx.array(node.inputs[1])
            ho, wo = node.shape[2:]
        else:  # max_grad (g, x) and avg_grad (g, like): output shaped like input 1
            x, a = node.inputs[1], ctx.array(node.inputs[0])
            b = ctx.array(node.inputs[1]) if kind == "max_grad" else None
            ho, wo = node.inputs[0].shape[2:]
        c, h, wd = _image_dims(x, node.op.name)
        step = PoolLoop(ctx.name(node), a, b, kind, (c, h, wd, ho, wo), node.attrs["size"], node.attrs["stride"],
                        comment=f"{node.label()} = {node.op.label(node)}")
        return Lowered(steps=[step], shape_only=(1,) if kind == "avg_grad" else ())
    return lower


def _noise(kind):
    def lower(node, ctx):
        x, training, step_in, first_row = node.inputs
        if not x.shape or x.shape[0] is not None:
            raise CodegenError(f"codegen: {node.op.name} {node.label()!r} needs a batched operand, got {x.shape}")
        attrs = node.attrs
        step = NoiseLoop(ctx.name(node), ctx.array(x), ctx.array(training), ctx.array(step_in), kind,
                         tuple(x.shape[1:]), attrs["seed"], rate=attrs.get("rate", 0.0),
                         scale=attrs.get("scale", True), sigma=attrs.get("sigma", 0.0),
                         comment=f"{node.label()} = {node.op.label(node)}", first_row=ctx.array(first_row))
        return Lowered(steps=[step])
    return lower


for _op, _fn in {Conv2D: _conv, Conv2DGradInput: _conv_grad_input, Conv2DGradFilter: _conv_grad_filter,
                 Conv2DGradBias: _conv_grad_bias,
                 MaxPool2D: _pool("max"), MaxPool2DGrad: _pool("max_grad"),
                 MaxPool2DGather: _pool("max_gather"), AvgPool2D: _pool("avg"),
                 AvgPool2DGrad: _pool("avg_grad"), Dropout: _noise("mask"),
                 GaussianNoise: _noise("gaussian")}.items():
    register_lowering(_op, _fn)

from . import emit_conv, fuse_conv  # noqa: E402,F401  (their CPU printers; the conv-ReLU-pool fusion)
