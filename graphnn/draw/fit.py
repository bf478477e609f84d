"""Fitting a drawing to a slide: ``draw(..., size="slide")`` / ``graphnn draw --slide``.

A view declares *levels* of detail, each a few alternative layouts (option sets such as
``{"rankdir": "LR"}`` or ``{"collapse": True}``). `fit` lays each out with Graphviz, scales
it into the box (never up by more than `MAX_ZOOM`) and keeps the first level whose
smallest text is at least `MIN_FONT_PX` pixels tall in the box — the most detailed
picture that is still readable — taking that level's best layout. The result carries
Graphviz's ``size``/``dpi``, so PNG output is at most the box's pixels.
"""
from __future__ import annotations

import re
import shutil

from .context import DrawError

SLIDE = (1920, 1080)      # a 16:9 slide in pixels
DPI = 96                  # Graphviz's pixels per inch for PNG output
MIN_FONT_PX = 13          # the smallest text a fitted picture may show, in the box's pixels
MAX_ZOOM = 2.0            # small pictures grow at most this much


def slide_size(size) -> tuple[int, int]:
    """(width, height) in pixels from ``'slide'`` or a pair of numbers."""
    if isinstance(size, str):
        if size != "slide":
            raise DrawError(f"size must be 'slide' or (width, height) in pixels, not {size!r}")
        return SLIDE
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DrawError(f"size must be 'slide' or (width, height) in pixels, not {size!r}") from None
    if w < 100 or h < 100:
        raise DrawError(f"size {w}×{h} px is too small for a drawing (at least 100×100)")
    return w, h


def smallest_font(source: str) -> float:
    """The smallest point size a DOT source asks for (its fontsize= and POINT-SIZE=)."""
    sizes = [float(v) for v in re.findall(r'fontsize="?(\d+(?:\.\d+)?)', source)]
    sizes += [float(v) for v in re.findall(r'POINT-SIZE="(\d+(?:\.\d+)?)"', source)]
    return min(sizes) if sizes else 14.0


def natural_size(digraph) -> tuple[float, float]:
    """The laid-out drawing's width and height in inches (Graphviz's plain output)."""
    head = digraph.pipe(format="plain").split(b"\n", 1)[0].split()
    return float(head[2]), float(head[3])


def font_px(source: str, scale: float) -> float:
    """The smallest text's height in output pixels at ``scale``."""
    return smallest_font(source) * scale * DPI / 72


def fit(build, size, levels):
    """The most detailed of ``build(options)`` for the option sets in ``levels`` that fits
    ``size`` (pixels) with text of at least MIN_FONT_PX; the most readable one if none does."""
    width, height = slide_size(size)
    box = (width / DPI, height / DPI)
    if shutil.which("dot") is None:      # cannot measure: the most compact picture, shrunk to fit
        g = build(levels[-1][-1])
        g.attr(size=f"{box[0]:.3f},{box[1]:.3f}", dpi=str(DPI))
        return g
    best = None
    for level in levels:
        for options in level:
            g = build(options)
            w, h = natural_size(g)
            scale = min(box[0] / w, box[1] / h, MAX_ZOOM)
            px = font_px(g.source, scale)
            if best is None or px > best[0]:
                best = (px, g, w * scale, h * scale)
        if best[0] >= MIN_FONT_PX:
            break
    _, g, w, h = best
    # a hair under the box: Graphviz rounds the pixel size up
    g.attr(size=f"{w * 0.995:.3f},{h * 0.995:.3f}!", dpi=str(DPI))
    return g
