"""Training curves as a PNG (matplotlib's Agg canvas: no display needed, pyplot untouched)."""
from __future__ import annotations

from pathlib import Path

SETS = (("val", "validation"), ("test", "test"))


def _curve(ax, rows, xkey, key, label, **style):
    if any(key in r for r in rows):
        ax.plot([r[xkey] for r in rows if key in r], [r[key] for r in rows if key in r], label=label, **style)


def plot_history(history, path, *, title=None) -> str:
    """Loss (train, validation, test) per epoch/step, and the first metric (accuracy, mse, …)
    of the validation and test sets when measured; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = history.records
    if not rows:
        raise ValueError("nothing to plot: the history is empty (train first)")
    xkey = "epoch" if "epoch" in rows[0] else "step"
    metric = next((k.split("_", 1)[1] for k in rows[-1] if k.startswith(("val_", "test_"))
                   and not k.endswith("_loss")), None)
    fig = Figure(figsize=(10 if metric else 6, 4))
    FigureCanvasAgg(fig)   # Agg: renders without a display, and leaves pyplot's state alone
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)
    ax = axes[0][0]
    _curve(ax, rows, xkey, "loss", "train loss")
    for prefix, name in SETS:
        _curve(ax, rows, xkey, f"{prefix}_loss", f"{name} loss")
    ax.set_xlabel(xkey)
    ax.set_ylabel("loss")
    if min(r["loss"] for r in rows) > 0:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if metric:
        ax2 = axes[0][1]
        for (prefix, name), color in zip(SETS, ("tab:purple", "tab:green")):
            _curve(ax2, rows, xkey, f"{prefix}_{metric}", f"{name} {metric}", color=color)
        ax2.set_xlabel(xkey)
        ax2.set_ylabel(metric)
        if metric == "accuracy":
            ax2.set_ylim(0, 1.02)
        ax2.legend()
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return str(path)
