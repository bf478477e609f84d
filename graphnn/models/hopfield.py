"""Hopfield networks: Hebbian storage, sign units, synchronous and asynchronous recall.

The net is an ordinary graph: net = v W (row vectors), v' = sign(net) with the course's
rule net ≥ 0 → +1, and the energy E = −½ v W vᵀ. Storage is Hebbian, W = Σ_p p pᵀ with a
zero diagonal (no gradient descent: `graphnn train hopfield` runs the task runner
registered for 'hopfield', graphnn.training.tasks.train_hopfield). Recall evaluates the graph: all units at
once (synchronous — it may oscillate between two states) or one unit at a time
(asynchronous — the energy never increases, so it settles in a stored minimum).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from ..data import Dataset
from ..evaluate import Evaluator
from ..model import Model
from ..ops import fmap, input as input_, matmul, parameter, sign, sum as sum_

#: the course's example: 3 units, the stored pattern, and the probe it recalls from
COURSE_PATTERN = np.array([[-1.0, 1.0, -1.0]])
COURSE_PROBE = np.array([[1.0, 1.0, -1.0]])


def hebbian(patterns) -> np.ndarray:
    """W = Σ_p p pᵀ with w_ii = 0 (patterns are rows of ±1)."""
    P = np.atleast_2d(np.asarray(patterns, dtype=float))
    if not np.all(np.isin(P, (-1.0, 1.0))):
        raise ValueError("Hopfield patterns must contain only -1 and +1")
    W = P.T @ P
    np.fill_diagonal(W, 0.0)
    return W


def hopfield_model(patterns=COURSE_PATTERN, probe=COURSE_PROBE, name="hopfield") -> Model:
    """The graph (net, sign units, energy) with W stored from ``patterns``."""
    P = np.atleast_2d(np.asarray(patterns, dtype=float))
    n = P.shape[1]
    units = [f"v_{i + 1}" for i in range(n)]
    v = input_("v", (None, n), names=units)
    W = parameter("W", hebbian(P), trainable=False,
                  names=[[f"w_{i + 1}{j + 1}" for j in range(n)] for i in range(n)])
    net = matmul(v, W, name="net", names=[f"net_{i + 1}" for i in range(n)])
    out = sign(net, name="v_new", names=[f"v'_{i + 1}" for i in range(n)])
    a, b = sympy.symbols("a b")
    energy = sum_(fmap(-a * b / 2, {a: v, b: net}, fn="−½ v·net"), 1, name="E")
    probe = np.atleast_2d(np.asarray(probe, dtype=float))
    return Model(name, sum_(energy, name="E_total"), out, (v,), Dataset({"v": P}), example={"v": probe},
                 task="hopfield", defaults={"steps": 10},
                 description=f"Hopfield net, {n} sign units (net ≥ 0 → +1), Hebbian storage of "
                             f"{len(P)} pattern(s)",
                 extras={"patterns": P, "net": net, "energy": energy, "W": W})


@dataclass
class Recall:
    """The trajectory of one recall: states, the net inputs that produced them, energies."""

    mode: str
    states: list = field(default_factory=list)     # v_0, v_1, … (1-d arrays)
    nets: list = field(default_factory=list)       # net that produced each new state
    updated: list = field(default_factory=list)    # which unit changed (async), else None
    energies: list = field(default_factory=list)   # E(v_k)
    converged: bool = False
    cycle: bool = False

    @property
    def final(self):
        return self.states[-1]


def recall(model: Model, probe, *, mode="async", max_steps=20, order=None, params=None) -> Recall:
    """Recall from ``probe`` (±1 vector) by evaluating the model's graph.

    ``mode='sync'``: every unit from the previous state at once, until a fixed point or
    a repeated state (a cycle). ``mode='async'``: one unit at a time in ``order`` (default
    1, 2, …, n), until a whole sweep changes nothing. ``max_steps`` counts sweeps. ``params``
    overrides the stored weights ({W node: array}).
    """
    if mode not in ("sync", "async"):
        raise ValueError(f"recall mode must be 'sync' or 'async', not {mode!r}")
    ex = model.extras
    ev = Evaluator([ex["net"], model.output, ex["energy"]])
    v = np.array(probe, dtype=float).reshape(-1)   # a copy: recall updates it in place
    n = v.size
    if ex["net"].shape[-1] != n:
        raise ValueError(f"probe has {n} units, the net has {ex['net'].shape[-1]}")

    def run(state):
        net, out, energy = ev({"v": state[None, :]}, params)
        return net[0], out[0], float(energy[0])

    result = Recall(mode)
    _, _, e0 = run(v)
    result.states.append(v.copy())
    result.energies.append(e0)
    order = list(range(n)) if order is None else list(order)
    for _ in range(max_steps):
        if mode == "sync":
            net, out, _ = run(v)
            v = out.copy()
            result.nets.append(net)
            result.updated.append(None)
            result.states.append(v.copy())
            result.energies.append(run(v)[2])
            if np.array_equal(v, result.states[-2]):
                result.converged = True
                return result
            if any(np.array_equal(v, s) for s in result.states[:-2]):
                result.cycle = True
                return result
        else:
            changed = False
            for i in order:
                net, out, _ = run(v)
                changed |= v[i] != out[i]
                v[i] = out[i]
                result.nets.append(net)
                result.updated.append(i)
                result.states.append(v.copy())
                result.energies.append(run(v)[2])
            if not changed:
                result.converged = True
                return result
    return result
