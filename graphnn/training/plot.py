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
    from .checkpoint import atomic_write

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
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


def plot_history(history, path, *, title=None) -> str:
    """Loss (and test loss) per epoch/step, and test accuracy when measured; returns the path."""
    rows = history.records
    if not rows:
        raise ValueError("nothing to plot: the history is empty (train first)")
    xkey = "epoch" if "epoch" in rows[0] else "step"
    xs = [r[xkey] for r in rows]
    has_acc = any("test_accuracy" in r for r in rows)
    fig = _figure(10 if has_acc else 6)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    ax = axes[0][0]
    ax.plot(xs, [r["loss"] for r in rows], label="train loss")
    if any("test_loss" in r for r in rows):
        ax.plot([r[xkey] for r in rows if "test_loss" in r], history.column("test_loss"), label="test loss")
    if min(r["loss"] for r in rows) > 0:
        ax.set_yscale("log")
    _label(ax, xkey, "loss")
    if has_acc:
        ax2 = axes[0][1]
        ax2.plot([r[xkey] for r in rows if "test_accuracy" in r], history.column("test_accuracy"),
                 color="tab:green", label="test accuracy")
        ax2.set_ylim(0, 1.02)
        _label(ax2, xkey, "accuracy")
    return _save(fig, path, title)
