"""A training step's noise: dropout and input corruption act only in training, and every
view that shows numbers (derivations, drawings, the lecture page) shows the same step.

`training_step` is the one mechanism: feeds that leave ``training`` out get 1 and ``step``
0, so the seeded masks are the same in every view and every run.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Node
from .names import Names


def training_step(graph: Graph, feeds: dict | None):
    """(feeds, note) for a graph whose dropout or input corruption acts only in training.

    Backprop is a training step, so a derivation's numbers must see the noise a training
    step sees: when the feeds leave ``training`` out, it is fed 1 and ``step`` 0 (the
    masks are seeded by op and step, so every run shows the same one). The note says so
    and shows each mask; when the user fed ``training = 0`` it says that no noise acts.
    Graphs without such ops, and symbolic derivations, come back unchanged (note None)."""
    from .ops.dropout import Dropout, GaussianNoise

    noisy = [n for n in graph.nodes if n.kind == "op" and isinstance(n.op, (Dropout, GaussianNoise))]
    if feeds is None or not noisy:
        return feeds, None
    given = {k.name if isinstance(k, Node) else k: v for k, v in feeds.items()}
    names = Names(graph)
    what = [f"${names.tex(n)}$ ({_kind(n)})" for n in noisy]
    if "training" in given and not float(np.asarray(given["training"])):
        return feeds, (f"No noise: these are the numbers of evaluation (training = 0), so {', '.join(what)} "
                       "passes its input through unchanged.")
    feeds = dict(feeds)
    if "training" not in given:
        feeds["training"] = 1.0
    step = int(float(np.asarray(given["step"]))) if "step" in given else 0
    if "step" not in given:
        feeds["step"] = 0.0
    acts = [f"{w} {_noise_text(n, feeds, step)}" for w, n in zip(what, noisy)]
    return feeds, f"The noise is that of training step {step} (training = 1): {'; '.join(acts)}."


def _kind(node) -> str:
    """'masking noise, p = 0.3' (prose with math: every format typesets it, no op label's ²)."""
    if "sigma" in node.attrs:
        return f"Gaussian noise, $\\sigma = {node.attrs['sigma']:g}$"
    return f"{'dropout' if node.attrs['scale'] else 'masking noise'}, $p = {node.attrs['rate']:g}$"


def _noise_text(node, feeds, step) -> str:
    """What ``node`` does at ``step``; a mask is shown for the first example, abbreviated
    like the derivations' vectors."""
    from .evaluate import evaluate
    from .ops.dropout import Dropout

    if not isinstance(node.op, Dropout):
        return "adds that step's seeded noise"
    x = np.asarray(evaluate(node.inputs[0], feeds))
    m = node.op.mask(node, x.shape, 1.0, step)
    m = np.ravel(m[:1] if node.shape and node.shape[0] is None else m)   # row-major: row 0 is example 0's
    shown = [f"{v:g}" for v in m] if m.size <= 8 else [f"{v:g}" for v in m[:6]] + [r"\ldots", f"{m[-1]:g}"]
    return (f"multiplies by that step's seeded mask $m = [{', '.join(shown)}]$ "
            f"({int((m == 0).sum())} of {m.size} elements zeroed)")
