"""Benchmark row W5: an LSTM trained by BPTT — graphnn's ``lstm`` model (input unit g, gates
i, f, o; c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)), z = h_T V + c, softmax
cross-entropy — on the recall task at W3's sizes: T = 50 steps, 8 one-hot inputs, 64 cells,
4 classes, 512 sequences, batch 32, SGD lr 0.05 — time per epoch.

Implementations from the same initial weights, data and batch order:

- `W5Baseline`: hand-written vectorised NumPy, the four gates as one product per step
  (the weights packed [g | i | f | o]), BPTT by hand;
- graphnn compiled (``backend='cpu'``) and, optionally, its NumPy reference backend.

``python -m benchmarks.w5_lstm`` prints the table; `run()` returns its rows.
"""
from __future__ import annotations

import numpy as np

from benchmarks.baselines import MinibatchEpoch, interleaved_rows

STEPS, HIDDEN, SYMBOLS, BATCH, LR = 50, 64, 4, 32, 0.05   # W3's sizes
GATES = ("g", "i", "f", "o")


def w5_model():
    from graphnn.models import get_model

    return get_model("lstm", steps=STEPS, hidden=HIDDEN, symbols=SYMBOLS)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class W5Baseline(MinibatchEpoch):
    """Hand-written NumPy LSTM with BPTT, SGD, in ``dtype`` (graphnn's parameters by name)."""

    def __init__(self, params: dict, lr=LR, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.lr = lr
        p = {k: np.array(v, self.dtype) for k, v in params.items()}
        self.H = p["W_g"].shape[0]
        self.W = np.concatenate([p[f"W_{k}"] for k in GATES], axis=1)   # (H, 4H)
        self.U = np.concatenate([p[f"U_{k}"] for k in GATES], axis=1)   # (n, 4H)
        self.b = np.concatenate([p[f"b_{k}"] for k in GATES])
        self.V, self.c = p["V"], p["c"]

    @property
    def params(self) -> dict:
        out, H = {"V": self.V, "c": self.c}, self.H
        for n, k in enumerate(GATES):
            cols = slice(n * H, (n + 1) * H)
            out[f"W_{k}"], out[f"U_{k}"], out[f"b_{k}"] = self.W[:, cols], self.U[:, cols], self.b[cols]
        return out

    def gradients(self, x, t):
        """(mean loss, packed gradients {W, U, b, V, c}) for a batch x (B, T, n), t (B, classes)."""
        B, T = x.shape[:2]
        H = self.H
        h = [np.zeros((B, H), self.dtype)]
        c = [np.zeros((B, H), self.dtype)]
        acts = []
        for k in range(T):
            a = h[-1] @ self.W + x[:, k] @ self.U + self.b
            g = np.tanh(a[:, :H])
            ifo = _sigmoid(a[:, H:])
            i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
            c.append(f * c[-1] + i * g)
            tc = np.tanh(c[-1])
            h.append(o * tc)
            acts.append((g, i, f, o, tc))
        z = h[-1] @ self.V + self.c
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = float(-np.sum(t * np.log(p + 1e-30)) / B)
        dz = (p - t) / B
        grads = {"V": h[-1].T @ dz, "c": dz.sum(axis=0), "W": np.zeros_like(self.W),
                 "U": np.zeros_like(self.U), "b": np.zeros_like(self.b)}
        dh, dc = dz @ self.V.T, np.zeros((B, H), self.dtype)
        da = np.empty((B, 4 * H), self.dtype)
        for k in range(T, 0, -1):                       # backprop through time
            g, i, f, o, tc = acts[k - 1]
            dc = dc + dh * o * (1.0 - tc * tc)
            da[:, :H] = dc * i * (1.0 - g * g)
            da[:, H:2 * H] = dc * g * i * (1.0 - i)
            da[:, 2 * H:3 * H] = dc * c[k - 1] * f * (1.0 - f)
            da[:, 3 * H:] = dh * tc * o * (1.0 - o)
            grads["W"] += h[k - 1].T @ da
            grads["U"] += x[:, k - 1].T @ da
            grads["b"] += da.sum(axis=0)
            dh = da @ self.W.T                            # to h_{k−1}
            dc = dc * f                                   # to c_{k−1}: the gated self-loop
        return loss, grads

    def step(self, x, t) -> float:
        loss, g = self.gradients(x, t)
        for k in ("W", "U", "b", "V", "c"):
            getattr(self, k)[...] -= self.lr * g[k]
        return loss

    def epoch(self, X, T, order, batch_size=BATCH) -> float:
        return MinibatchEpoch.epoch(self, X, T, order, batch_size)


def run(epochs=5, dtype="float32", seed=0, backends=("cpu",)) -> list[dict]:
    """Seconds per epoch (best of ``epochs``) for the hand baseline and graphnn's backends."""
    from benchmarks.baselines import numpy_threads_limited

    with numpy_threads_limited(1):
        return _run(epochs, dtype, seed, backends)


def _run(epochs, dtype, seed, backends):
    model = w5_model()
    params = {p.name: p.value for p in model.parameters}
    X, T = model.data.train["x"], model.data.train["t"]
    order = np.random.default_rng(seed).permutation(len(X))
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    hand = W5Baseline(params, dtype=dtype)
    return interleaved_rows("W5", dtype, model, lambda: hand.epoch(X, T, order), batches, backends, epochs,
                            lr=LR, batch_size=BATCH, optimizer="sgd")



def main():
    print(f"W5 LSTM, T = {STEPS}, {HIDDEN} cells, batch {BATCH}, 512 sequences (1 BLAS thread)")
    print(f"{'implementation':<16} {'dtype':<8} {'s/epoch':>9} {'speed-up':>9}")
    for dtype in ("float32", "float64"):
        for r in run(dtype=dtype):
            print(f"{r['impl']:<16} {r['dtype']:<8} {r['s_per_epoch']:>9.4f} {r['speedup_vs_hand_numpy']:>8.2f}x")


if __name__ == "__main__":
    main()
