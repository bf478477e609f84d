"""Random recurrent nets for the differential tests: a user's own `gn.scan` cells.

A recipe is a plain tuple that hypothesis draws and shrinks: the cell (an Elman step, a
gated update, an LSTM-like pair of carries, a residual step, the course's scalar RNN),
its activation, sizes, whether it reads an input sequence, how its carry starts, what it
outputs per step, truncation, and a seed. `build(recipe, mode)` makes the same net looped
or unrolled (the unrolled graph's ordinary autodiff is BPTT: the oracle of the looped one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import graphnn as gn

BATCH = 3
CELLS = ("elman", "gated", "lstm", "residual", "scalar")
ACTIVATIONS = {"tanh": gn.tanh, "sigmoid": gn.sigmoid, "relu": gn.relu, "softplus": gn.softplus,
               "identity": lambda z, name=None: z}
INITS = ("zeros", "param", "input")
OUTPUTS = ("none", "state", "proj")


@st.composite
def scans(draw):
    """(cell, activation, H, D, T, reads x, init, per-step output, truncate, conditioned, seed):
    a conditioned cell also reads a batched input c inside every step (not as a sequence)."""
    cell = draw(st.sampled_from(CELLS))
    T = draw(st.integers(1, 4))
    truncate = draw(st.one_of(st.none(), st.integers(1, T)))
    return (cell, draw(st.sampled_from(sorted(ACTIVATIONS))), draw(st.integers(1, 3)), draw(st.integers(1, 3)), T,
            draw(st.booleans()), draw(st.sampled_from(INITS)), draw(st.sampled_from(OUTPUTS)), truncate,
            draw(st.booleans()), draw(st.integers(0, 2 ** 16)))


@dataclass
class FuzzScan:
    model: object
    params: list        # [(node, initial value)]
    feeds: dict
    truncated: bool


def build(recipe, mode="looped") -> FuzzScan:
    cell, act_name, H, D, T, reads_x, init_kind, out_kind, truncate, conditioned, seed = recipe
    rng = np.random.default_rng(seed)
    act = ACTIVATIONS[act_name]
    scalar = cell == "scalar"
    params: list = []

    def param(name, shape, scale=0.6):
        value = rng.uniform(-scale, scale, shape)
        node = gn.parameter(name, value)
        params.append((node, value))
        return node

    inputs, feeds = [], {}
    x = None
    if reads_x:
        x = gn.input("x", (None, T) if scalar else (None, T, D))
        inputs.append(x)
        feeds["x"] = rng.standard_normal((BATCH, T) if scalar else (BATCH, T, D))
    carry_shape = () if scalar else (1, H)
    if init_kind == "param":
        init = param("h0", carry_shape)
    elif init_kind == "input" and not scalar:
        init = gn.input("h0", (None, H))
        inputs.append(init)
        feeds["h0"] = rng.uniform(-1, 1, (BATCH, H))
    else:
        init = 0.0 if scalar else np.zeros((1, H))
    cond = None
    if conditioned:
        cond = gn.input("c", (None,) if scalar else (None, D))
        inputs.append(cond)
        feeds["c"] = rng.standard_normal((BATCH,) if scalar else (BATCH, D))
    step = _cell(cell, act, param, H, D, reads_x, cond)
    if cell == "lstm":
        init = (init, np.zeros((1, H)))
    rec = gn.scan(step(out_kind), init, x, length=None if reads_x else T, mode=mode,
                  truncate=truncate if mode == "looped" else None, name="rec")
    final = rec.carry[0] if cell == "lstm" else rec.carry
    if out_kind == "none":
        loss = gn.sum(final * final) * 0.5
        output = final
    else:
        O = 1 if scalar else (H if out_kind == "state" else 2)
        target = gn.input("target", (None, T) if scalar else (None, T, O))
        inputs.append(target)
        feeds["target"] = rng.standard_normal((BATCH, T) if scalar else (BATCH, T, O))
        diff = rec.ys - target
        loss = gn.sum(diff * diff) * 0.5 + gn.sum(final) * 0.1
        output = rec.ys
    model = gn.Model("fuzz-rnn", loss, output, tuple(inputs), gn.Dataset(feeds))
    return FuzzScan(model, params, feeds, truncate is not None and truncate < T)


def _cell(kind, act, param, H, D, reads_x, cond):
    """step(out_kind) → the scan's step function, its parameters made once (shared by every t)."""
    if kind == "scalar":
        w, b = param("w", ()), param("b", ())
        u = param("u", ()) if reads_x else None
        k = param("k", ()) if cond is not None else None

        def scalar_step(out_kind):
            def step(s, x_t):
                net = w * s + b + (u * x_t if reads_x else 0.0) + (k * cond if cond is not None else 0.0)
                s_new = act(net)
                return s_new, (None if out_kind == "none" else s_new)
            return step
        return scalar_step
    W, b = param("W", (H, H)), param("b", (H,))
    U = param("U", (D, H)) if reads_x else None
    C = param("C", (D, H)) if cond is not None else None
    gate = (param("Wz", (H, H)), param("bz", (H,))) if kind in ("gated", "lstm") else None
    V = None

    def pre(h, x_t, W_, b_):
        z = gn.linear(h, W_, b_)
        z = z + x_t @ U if reads_x else z
        return z + cond @ C if cond is not None else z

    def make(out_kind):
        nonlocal V
        if out_kind == "proj" and V is None:
            V = param("V", (H, 2))

        def emit(h_new):
            return None if out_kind == "none" else (h_new if out_kind == "state" else h_new @ V)

        def step(carry, x_t):
            if kind == "lstm":
                h, c = carry
                f = gn.sigmoid(pre(h, x_t, *gate))
                c_new = f * c + (1.0 - f) * act(pre(h, x_t, W, b))
                h_new = gn.tanh(c_new) * f
                return (h_new, c_new), emit(h_new)
            cand = act(pre(carry, x_t, W, b))
            if kind == "gated":
                z = gn.sigmoid(pre(carry, x_t, *gate))
                h_new = z * carry + (1.0 - z) * cand
            elif kind == "residual":
                h_new = carry + cand * 0.5
            else:
                h_new = cand
            return h_new, emit(h_new)
        return step
    return make
