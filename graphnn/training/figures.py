"""Sample pictures of the generative models: 2-D point clouds, panel by panel, as one PNG
(matplotlib's Agg canvas: no display needed, pyplot untouched)."""
from __future__ import annotations

import numpy as np

from ..files import atomic_write, figure_format


def scatter_panels(path, panels, *, title=None, reference=None, reference_label="data") -> str:
    """One row of scatter plots: ``panels`` is [(caption, points (n, 2))]; ``reference``
    points (the data) are drawn in grey behind every panel. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("nothing to draw: no panels")
    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    everything = np.concatenate([np.asarray(p) for _, p in panels] + ([np.asarray(reference)] if reference is not
                                                                       None else []))
    lo, hi = np.percentile(everything, [0.5, 99.5], axis=0)
    pad = 0.1 * (hi - lo).max()
    for ax, (caption, points) in zip(axes, panels):
        if reference is not None:
            ax.scatter(*np.asarray(reference).T, s=3, c="0.75", label=reference_label, rasterized=True)
        ax.scatter(*np.asarray(points).T, s=3, c="tab:blue", alpha=0.6, label="samples", rasterized=True)
        ax.set_title(caption, fontsize=11)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if reference is not None:
        axes[0].legend(loc="lower left", fontsize=8, markerscale=3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fmt = figure_format(path)     # before anything is written
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format=fmt))   # never a half-written picture
    return str(path)
