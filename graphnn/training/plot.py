"""Training curves as a PNG (matplotlib's Agg canvas: no display needed, pyplot untouched)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Curves:
    """Named series sharing one x axis: ``Curves("epoch", {"misclassified": (xs, ys)})``."""

    xlabel: str
    series: dict = field(default_factory=dict)


def _figure(width):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4))
    FigureCanvasAgg(fig)   # Agg: renders without a display, and leaves pyplot's state alone
    return fig


def _label(ax, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)


def _save(fig, path, title) -> str:
    """Title, layout, and the PNG written atomically (never left half-written)."""
    from ..files import atomic_write, figure_format

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fmt = figure_format(path)     # before anything is written
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format=fmt))
    return str(path)


def plot_curves(curves: Curves, path, *, xlabel=None, ylabel="", title=None) -> str:
    """One axes, one line per series (the rule-based runners' curves); returns the path."""
    if not any(len(list(xs)) for xs, _ in curves.series.values()):
        raise ValueError("nothing to plot: no values were recorded")
    fig = _figure(6)
    ax = fig.subplots()
    for label, (xs, ys) in curves.series.items():
        ax.plot(list(xs), list(ys), marker=".", label=label)
    _label(ax, xlabel or curves.xlabel, ylabel)
    return _save(fig, path, title)


SETS = (("val", "validation"), ("test", "test"))


def _curve(ax, rows, xkey, key, label, **style):
    if any(key in r for r in rows):
        ax.plot([r[xkey] for r in rows if key in r], [r[key] for r in rows if key in r], label=label, **style)


def plot_history(history, path, *, title=None) -> str:
    """Loss (train, validation, test) per epoch/step, and the first metric (accuracy, mse, …)
    of the validation and test sets when measured; returns the path."""
    rows = history.records
    if not rows:
        raise ValueError("nothing to plot: the history is empty (train first)")
    xkey = "epoch" if "epoch" in rows[0] else "step"
    metric = next((k.split("_", 1)[1] for k in rows[-1] if k.startswith(("val_", "test_"))
                   and not k.endswith("_loss")), None)
    fig = _figure(10 if metric else 6)
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)
    ax = axes[0][0]
    _curve(ax, rows, xkey, "loss", "train loss")
    for prefix, name in SETS:
        _curve(ax, rows, xkey, f"{prefix}_loss", f"{name} loss")
    if min(r["loss"] for r in rows) > 0:
        ax.set_yscale("log")
    _label(ax, xkey, "loss")
    if metric:
        ax2 = axes[0][1]
        for (prefix, name), color in zip(SETS, ("tab:purple", "tab:green")):
            _curve(ax2, rows, xkey, f"{prefix}_{metric}", f"{name} {metric}", color=color)
        if metric == "accuracy":
            ax2.set_ylim(0, 1.02)
        _label(ax2, xkey, metric)
    return _save(fig, path, title)
