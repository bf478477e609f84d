"""Training, precomputed for the page's play button: N steps by graphnn's `Trainer` (the
perceptron rule for threshold units), snapshots of the weights along the way, the loss
curve (matplotlib, inline SVG with a marker the page moves) and, for a net with 2-D inputs
and one output, its decision boundary at each snapshot (one output over 1-D inputs: the
fitted curve), evaluated by graphnn's evaluator on a grid. Each snapshot also carries the
picture's numbers redrawn at its weights (`Picture.changes`), so the page only swaps text.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from ..data import Dataset
from ..evaluate import evaluate
from ..graph import Graph
from ..notation import latex_name, number_text
from ..training import LambdaCallback, Trainer
from ..training import perceptron as perceptron_rule
from .fragments import prose_html
from .svg import figure_svg

FRAMES = 12          # snapshots the play button steps through (the first is step 0)
CURVE_POINTS = 200   # logged losses the curve is drawn from
DEFAULT_STEPS = 3000  # at most, unless asked: the page is made in seconds


def _data(model, feeds):
    return model.data if model.data is not None and model.data.train else Dataset(feeds)


def _frame_steps(rows: list, frames: int) -> list:
    """Indices into ``rows`` at roughly geometric spacing (early training moves fastest)."""
    if len(rows) <= frames:
        return list(range(len(rows)))
    picks = np.unique(np.geomspace(1, len(rows), frames).round().astype(int) - 1)
    return sorted(set(picks.tolist()) | {len(rows) - 1})


def gradient_descent(model, feeds, steps: int, lr=None):
    """(x label, [(step, loss, params)], optimizer text): the Trainer's run, snapshots logged."""
    data = _data(model, feeds)
    trainer = Trainer(model, lr=lr, data=data)
    rows = [(0, float(evaluate(model.loss, data.train)), {p: v.copy() for p, v in trainer.params.items()})]
    keep = LambdaCallback(on_epoch_end=lambda t, row: rows.append(
        (row["step"], float(row["loss"]), {p: v.copy() for p, v in t.params.items()})))
    trainer.fit(steps=steps, log_every=max(1, steps // CURVE_POINTS), callbacks=[keep], progress=False)
    hyper = ", ".join(f"{k} = {v:g}" for k, v in trainer.optimizer.hyper.items())
    return "step", rows, f"{trainer.optimizer.name} ({hyper}), full batch of {data.n_train}"


def perceptron(model, epochs: int, lr=None):
    """The perceptron rule from zero weights, one snapshot per epoch (misclassified counts)."""
    lr = lr if lr is not None else model.defaults.get("lr", 0.1)
    first = perceptron_rule.train(model, lr=lr, max_epochs=1)
    zero = {p: np.zeros_like(v) for p, v in first.weights.items()}
    rows = [(0, float(len(model.data.train[model.inputs[0].name])), zero)]
    for e in range(1, epochs + 1):
        result = perceptron_rule.train(model, lr=lr, max_epochs=e)
        rows.append((e, float(result.errors[-1]), result.weights))
        if result.converged:
            break
    return "epoch", rows, f"the perceptron rule from zero weights (η = {lr:g}), one example at a time"


def _plot_label(name: str) -> str:
    """A node's name as the derivations typeset it (E_total → E with index total), in
    matplotlib's mathtext; the name as written where mathtext cannot read it."""
    from matplotlib.mathtext import MathTextParser

    text = f"${latex_name(name)}$"
    try:
        MathTextParser("path").parse(text)
    except ValueError:
        return name
    return text


def loss_curve(rows, xlabel: str, ylabel: str, marks: list) -> tuple[str, list]:
    """(inline SVG of the curve, [(x, y) of each mark in the SVG's coordinates])."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=72)      # 72 dpi: display units are the SVG's points
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs, ys = [r[0] for r in rows], [r[1] for r in rows]
    ax.plot(xs, ys, color="#1a5276", linewidth=2.5)
    if min(ys) > 0 and max(ys) / min(ys) > 20:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=15)
    ax.set_ylabel(ylabel, fontsize=15)
    ax.tick_params(labelsize=13)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    height = fig.get_figheight() * 72
    points = [(float(px), float(height - py)) for px, py in ax.transData.transform([(rows[i][0], rows[i][1])
                                                                                    for i in marks])]
    svg = figure_svg(fig)
    x0, y0 = points[0]
    svg = svg.replace("</svg>", f'<circle class="marker" cx="{x0:.2f}" cy="{y0:.2f}" r="9"/></svg>')
    return svg, points


def outcome_frames(model, feeds, snapshots) -> tuple[str | None, list]:
    """What the net computes over its input space at each snapshot: ('boundary', PNGs) for
    2-D inputs and one output, ('fit', PNGs) for 1-D inputs and one output, else (None, [])."""
    x_node = model.inputs[0]
    out = tuple(model.output.shape)
    # a picture over x needs one output per example that reads x (not a 0-d loss, not a (1, …) row)
    if len(x_node.shape) != 2 or x_node.shape[-1] not in (1, 2) or len(out) != 2 or out[0] is not None \
            or out[-1] != 1 or x_node not in Graph([model.output]).inputs:
        return None, []
    data = _data(model, feeds).train
    X = np.asarray(data[x_node.name], dtype=float)
    T = np.asarray(data[model.inputs[1].name], dtype=float).ravel() if len(model.inputs) > 1 else None
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.25 * np.maximum(hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    if X.shape[1] == 2:
        g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60))
        grid = np.column_stack([g0.ravel(), g1.ravel()])
    else:
        grid = np.linspace(lo[0], hi[0], 100)[:, None]
    outs = [np.asarray(evaluate(model.output, {x_node.name: grid}, params), dtype=float).ravel()
            for params in snapshots]
    fig, ax = _outcome_axes(model, x_node, X, T, lo, hi, outs)
    images = []
    for out in outs:          # one figure, its moving part redrawn per snapshot
        if X.shape[1] == 2:
            Z = out.reshape(g0.shape)
            drawn = [ax.contourf(g0, g1, Z, levels=[-np.inf, 0.5, np.inf], colors=["#d6eaf8", "#fadbd8"])]
            if Z.min() < 0.5 < Z.max():
                drawn.append(ax.contour(g0, g1, Z, levels=[0.5], colors="#333333", linewidths=2.5))
        else:
            drawn = ax.plot(grid.ravel(), out, color="#c0392b", linewidth=3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        images.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
        for artist in drawn:
            artist.remove()
    return ("boundary" if X.shape[1] == 2 else "fit"), images


def _outcome_axes(model, x_node, X, T, lo, hi, outs):
    """The figure's fixed part: the data points, the axes' names and limits."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.0), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = x_node.names[0] if x_node.names else [f"{x_node.name}{k + 1}" for k in range(X.shape[1])]
    if X.shape[1] == 2:
        colors = "#1a5276" if T is None else ["#c0392b" if t > 0.5 else "#1a5276" for t in T]
        ax.scatter(X[:, 0], X[:, 1], c=colors, s=160, edgecolors="black", linewidths=1.5, zorder=3)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_ylabel(names[1], fontsize=15)
    else:
        low, high = np.percentile(np.concatenate(outs), [2, 98])     # the data in view, and the fits
        if T is not None:
            low, high = min(low, T.min()), max(high, T.max())
        ax.set_ylim(low - 0.1 * (high - low + 1), high + 0.1 * (high - low + 1))
        if T is not None:
            ax.scatter(X[:, 0], T, color="#1a5276", s=120, zorder=3)
        ax.set_ylabel(model.output.name or "output", fontsize=15)
    ax.set_xlabel(names[0], fontsize=15)
    ax.tick_params(labelsize=13)
    fig.tight_layout()
    return fig, ax


def training_section(model, feeds, options, redraw, base) -> dict:
    """The page's training data: curve, frames (step, loss, marker, picture numbers), images.

    ``redraw(params)`` gives the picture at other weights; ``base`` is the drawn one.
    """
    if model.task == "perceptron":
        xlabel, rows, how = perceptron(model, options.train_steps or model.defaults.get("epochs", 20), options.lr)
        ylabel = "misclassified examples"
    else:
        steps = options.train_steps or min(model.defaults.get("steps") or 1000, DEFAULT_STEPS)
        xlabel, rows, how = gradient_descent(model, feeds, steps, options.lr)
        ylabel = model.loss.label()
    picks = _frame_steps(rows, FRAMES)
    curve, points = loss_curve(rows, xlabel, _plot_label(ylabel) if model.task != "perceptron" else ylabel, picks)
    kind, images = outcome_frames(model, feeds, [rows[i][2] for i in picks])
    frames = []
    for n, (i, (px, py)) in enumerate(zip(picks, points)):
        step, loss, params = rows[i]
        frames.append({"step": step, "loss": number_text(loss, options.precision), "x": round(px, 2),
                       "y": round(py, 2), "image": n if images else None,
                       "relabel": base.changes(redraw(params))})
    return {"how": how, "unit": xlabel, "measure": ylabel, "curve": curve, "frames": frames,
            "images": images, "outcome": kind}


def training_panel(section: dict) -> str:
    """The training step's panel: the curve with its marker, the outcome picture, the play
    controls (the page's script moves them through the frames)."""
    import html

    last = section["frames"][-1]
    image = '<img class="outcome" alt="what the net computes">' if section["images"] else ""
    what = {"boundary": "the decision boundary (output 0.5) over the inputs",
            "fit": "the fitted output over the inputs"}.get(section["outcome"], "")
    return (f'<h2 class="ptitle">Training: {last["step"]} {section["unit"]}s, precomputed</h2>'
            f'<p class="how">{html.escape(section["how"])}. Press <b>P</b> or ▶ to play; the picture shows '
            f'the worked example at each snapshot\'s weights{"; right: " + what if what else ""}.</p>'
            '<div class="trainbar"><button class="play" type="button">▶ play</button>'
            f'<input class="frame" type="range" min="0" max="{len(section["frames"]) - 1}" value="0">'
            f'<span class="result" data-name="frame">{html.escape(section["unit"])} <span class="fstep">0</span>: '
            f'{prose_html(section["measure"])} = <span class="num floss">{section["frames"][0]["loss"]}</span>'
            '</span></div>'
            f'<div class="trainview"><div class="curve">{section["curve"]}</div>{image}</div>')
