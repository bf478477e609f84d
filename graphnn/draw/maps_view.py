"""The 'maps' view: a CNN's filters and feature maps as small images (matplotlib).

Read off the graph: every conv2d (its filters, and its feature maps after the activation
that follows it) and every pooling, in data-flow order, then the class scores. With values
(``values='example'``, ``graphnn draw cnn --view maps --values``) the input digit, each
feature map of the example and the scores are drawn from `evaluate`'s values (the predicted
class's bar filled, the target's outlined, a legend naming both); without, the filters
alone. A multi-channel filter is shown as its mean over the input channels (the title says so). Each stage's tiles share one colour scale; filters use a diverging map
(red > 0 > blue).

This view returns a matplotlib ``Figure`` (Jupyter shows it; `graphnn.draw.save` writes
.png, .svg or .pdf): a grid of images renders the same everywhere, offline, and a
figure's SVG embeds its images.
"""
from __future__ import annotations

import math

import numpy as np

from ..graph import Node
from ..notation import latex_name
from ..ops import AvgPool2D, Conv2D, Map, MaxPool2D
from .context import DrawError
from .fit import DPI, SLIDE

ROWS = 8                 # tiles per column
TILE_PX = 12             # tiles are enlarged to at least this many image pixels
TEXT_PT = 13             # the figure's smallest text, in points (at 100 dpi: 18 px)
FIG_DPI = 100


def _math(name: str) -> str:
    return f"${latex_name(name)}$"


def stages(graph, values: dict, row: int) -> list[tuple[str, np.ndarray, str]]:
    """(title, tiles (n, h, w), kind) per stage: the input, each conv's filters and maps, pools.
    Titles are short lines: a stage is two tiles wide."""
    users = graph.consumers()
    out = []
    for n in graph.nodes:
        if isinstance(n.op, Conv2D):
            x, K = n.inputs[0], n.inputs[1]
            if not out and x in values:
                out.append((f"input {_math(x.name or 'x')}", values[x][row], "input"))
            w = np.asarray(values.get(K, K.value))
            tiles = w[:, 0] if w.shape[1] == 1 else w.mean(axis=1)
            title = f"{_math(K.name or 'K')}: {w.shape[0]} filters\n{w.shape[2]}×{w.shape[3]}"
            out.append((title + ("" if w.shape[1] == 1 else f", mean of\n{w.shape[1]} channels"), tiles, "filter"))
            act = _activation(n, users)
            if act in values:
                v = values[act][row]
                what = f"{act.op.label(act)}(conv)" if act is not n else "conv"
                out.append((f"{_math(act.name or 'a')} = {what}\n{_maps(v)}", v, "map"))
        elif isinstance(n.op, (MaxPool2D, AvgPool2D)) and n in values:
            v = values[n][row]
            out.append((f"{_math(n.name or 'p')}: {n.op.label(n).replace('-pool', '')}\n{_maps(v)}", v, "map"))
    return out


def _maps(v) -> str:
    return f"{v.shape[0]} maps {v.shape[1]}×{v.shape[2]}"


def _activation(conv: Node, users):
    """The conv's activation (a one-operand Map that alone reads it), else the conv itself."""
    nxt = users[conv]
    if len(nxt) == 1 and isinstance(nxt[0][0].op, Map) and len(nxt[0][0].inputs) == 1:
        return nxt[0][0]
    return conv


def draw_maps(ctx):
    """The figure (see the module docstring)."""
    import matplotlib
    from matplotlib.figure import Figure

    found = stages(ctx.graph, ctx.values if ctx.has_values else {}, ctx.example_index)
    if not any(kind == "filter" for _, _, kind in found):
        raise DrawError(f"the maps view draws convolutional nets, and {ctx.name} has no conv2d: "
                        "try the cnn model, or --view ops")
    scores = ctx.values.get(ctx.output) if ctx.has_values else None
    width, height = ctx.size or SLIDE
    fig = Figure(figsize=(width / FIG_DPI, height / FIG_DPI), dpi=FIG_DPI)
    cols = [max(1, math.ceil(len(t) / ROWS)) if kind != "input" else 2 for _, t, kind in found]
    ratios = cols + ([2.5] if scores is not None else [])
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios, left=0.02, right=0.98, top=0.86,
                            bottom=0.06, wspace=0.35)
    note = "" if ctx.has_values else " (feature maps need values: --values)"
    fig.suptitle(f"{ctx.name}: filters and feature maps of example {ctx.example_index + 1}{note}",
                 fontsize=TEXT_PT + 5)
    with matplotlib.rc_context({"font.size": TEXT_PT}):
        for k, (title, tiles, kind) in enumerate(found):
            _stage(fig, grid[0, k], title, np.asarray(tiles), kind, cols[k])
        if scores is not None:
            _scores(fig, grid[0, -1], ctx, np.asarray(scores)[ctx.example_index])
    return fig


def mosaic(tiles: np.ndarray, rows: int) -> np.ndarray:
    """The tiles (n, h, w) in one image, column by column, ``rows`` high, with a NaN gap
    (drawn blank) between them; small tiles are enlarged (each value a k×k block) so
    the gap stays thin beside them. One image per stage is what keeps the figure quick to draw."""
    k = max(1, math.ceil(TILE_PX / tiles.shape[1]))
    gap = max(1, k // 2)
    tiles = np.kron(tiles, np.ones((1, k, k)))
    n, th, tw = tiles.shape
    cols = math.ceil(n / rows)
    out = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap), np.nan)
    for j, tile in enumerate(tiles):
        r, c = (j % rows) * (th + gap), (j // rows) * (tw + gap)
        out[r:r + th, c:c + tw] = tile
    return out


def _stage(fig, cell, title, tiles, kind, ncols):
    import matplotlib

    ax = fig.add_subplot(cell)
    ax.set_xticks([])
    ax.set_yticks([])
    if kind == "input":
        ax.imshow(tiles.reshape(tiles.shape[-2:]), cmap="gray_r")
        ax.set_title(title, fontsize=TEXT_PT)
        return
    for side in ax.spines.values():
        side.set_visible(False)
    lim = float(np.abs(tiles).max()) or 1.0
    # gaps: light grey between filters (whose near-zero weights are white), white between maps
    cmap = matplotlib.colormaps["RdBu_r" if kind == "filter" else "magma"].with_extremes(
        bad="#d5d5d5" if kind == "filter" else "white")
    norm = {"vmin": -lim, "vmax": lim} if kind == "filter" else \
        {"vmin": float(tiles.min()), "vmax": float(tiles.max()) or 1.0}
    ax.imshow(np.ma.masked_invalid(mosaic(tiles, min(ROWS, len(tiles)))), cmap=cmap, **norm)
    ax.set_title(title, fontsize=TEXT_PT, loc="left")


#: the predicted class's bar (filled) and the target class's (a thick outline): both named in
#: a legend, since a viewer otherwise reads the one highlighted bar as the true class
PREDICTED, TARGET, OTHER = "#d35400", "#1e8449", "#5d6d7e"


def _scores(fig, cell, ctx, z):
    """The class scores as bars: the prediction argmax(z) filled orange, the target class
    (a one-hot target row of the output's shape, when fed) outlined green; a legend names
    both, so neither is mistaken for the other (they differ for an untrained net)."""
    from matplotlib.patches import Patch

    ax = fig.add_subplot(cell)
    classes = np.arange(z.shape[-1])
    predicted = int(np.argmax(z))
    target = next((ctx.values[t] for t in ctx.graph.inputs if t is not ctx.output
                   and tuple(t.shape) == tuple(ctx.output.shape) and t in ctx.values), None)
    true = int(np.argmax(np.asarray(target)[ctx.example_index])) if target is not None else None
    bars = ax.barh(classes, z, color=[PREDICTED if k == predicted else OTHER for k in classes])
    handles = [Patch(facecolor=PREDICTED, label=f"predicted: {predicted}")]
    if true is not None:
        bars[true].set_edgecolor(TARGET)
        bars[true].set_linewidth(3)
        handles.append(Patch(facecolor="none", edgecolor=TARGET, linewidth=3, label=f"target: {true}"))
    # above the bars, under the title: the figure keeps no room below its axes
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=TEXT_PT - 1,
              frameon=False, handlelength=1.2)
    ax.set_yticks(classes)
    ax.invert_yaxis()
    ax.set_title(f"class scores {_math(ctx.output.name or 'z')}", fontsize=TEXT_PT,
                 pad=12 + 22 * len(handles))
    ax.tick_params(labelsize=TEXT_PT)
    ax.axvline(0, color="#999999", lw=0.8)


draw_maps.fits_itself = True   # draw() passes size= through instead of fitting a Graphviz layout


def _register():
    from . import register_view
    register_view("maps", draw_maps, "a CNN's filters and feature maps as small images (matplotlib figure)",
                  grads=False, example=True)


_register()
