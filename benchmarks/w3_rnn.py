"""Benchmark row W3: an Elman RNN trained by BPTT — s_t = tanh(s_{t−1}W + x_tU + b),
z = s_T V + c, softmax cross-entropy — on the recall task (graphnn.models.recurrent):
T = 50 steps, 8 one-hot inputs, 64 hidden units, 4 classes, 512 sequences, batch 32,
SGD lr 0.05 — time per epoch.

Three implementations from the same initial weights, data and batch order:

- `W3Baseline`: hand-written vectorised NumPy, forward over T and BPTT backward by hand;
- graphnn's NumPy reference backend (the ``loop`` node and its reverse loop);
- graphnn compiled (``backend='cpu'``: the cell and its gradient cell as @njit functions,
  codegen/lower_loop.py).

``python -m benchmarks.w3_rnn`` prints the table; `run()` returns its rows.
"""
from __future__ import annotations

import numpy as np

from benchmarks.baselines import MinibatchEpoch, interleaved_rows

STEPS, HIDDEN, SYMBOLS, BATCH, LR = 50, 64, 4, 32, 0.05  # the W3: T 50, hidden 64, batch 32


def w3_model():
    from graphnn.models import get_model

    return get_model("rnn", steps=STEPS, hidden=HIDDEN, symbols=SYMBOLS)


class W3Baseline(MinibatchEpoch):
    """Hand-written NumPy Elman RNN with BPTT, SGD, in ``dtype`` (parameters by name)."""

    def __init__(self, params: dict, lr=LR, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.lr = lr
        self.p = {k: np.array(v, self.dtype) for k, v in params.items()}

    def gradients(self, x, t):
        """(mean loss, {name: gradient}) for a batch x (B, T, n), t (B, classes)."""
        W, U, b, V, c = (self.p[k] for k in ("W", "U", "b", "V", "c"))
        B, T = x.shape[:2]
        s = [np.zeros((B, W.shape[0]), self.dtype)]
        for k in range(T):
            s.append(np.tanh(s[-1] @ W + x[:, k] @ U + b))
        z = s[-1] @ V + c
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = float(-np.sum(t * np.log(p + 1e-30)) / B)
        dz = (p - t) / B
        g = {"V": s[-1].T @ dz, "c": dz.sum(axis=0), "W": np.zeros_like(W), "U": np.zeros_like(U),
             "b": np.zeros_like(b)}
        ds = dz @ V.T
        for k in range(T, 0, -1):             # backprop through time
            da = ds * (1.0 - s[k] ** 2)
            g["W"] += s[k - 1].T @ da         # the explicit term of step k
            g["U"] += x[:, k - 1].T @ da
            g["b"] += da.sum(axis=0)
            ds = da @ W.T                     # the implicit part: back to s_{k−1}
        return loss, g

    def step(self, x, t) -> float:
        loss, g = self.gradients(x, t)
        for k, v in g.items():
            self.p[k] -= self.lr * v
        return loss

    def epoch(self, X, T, order, batch_size=BATCH) -> float:
        return MinibatchEpoch.epoch(self, X, T, order, batch_size)




def run(epochs=5, dtype="float32", seed=0, backends=("numpy", "cpu")) -> list[dict]:
    """Seconds per epoch (best of ``epochs``) for the hand baseline and graphnn's backends."""
    from benchmarks.baselines import numpy_threads_limited

    with numpy_threads_limited(1):
        return _run(epochs, dtype, seed, backends)


def _run(epochs, dtype, seed, backends):
    model = w3_model()
    params = {p.name: p.value for p in model.parameters}
    X, T = model.data.train["x"], model.data.train["t"]
    order = np.random.default_rng(seed).permutation(len(X))
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    hand = W3Baseline(params, dtype=dtype)
    return interleaved_rows("W3", dtype, model, lambda: hand.epoch(X, T, order), batches, backends, epochs,
                            lr=LR, batch_size=BATCH, optimizer="sgd")



def main():
    rows = run()
    print(f"W3 Elman RNN, T = {STEPS}, {HIDDEN} hidden, batch {BATCH}, 512 sequences (1 BLAS thread)")
    print(f"{'implementation':<16} {'dtype':<8} {'s/epoch':>9} {'cpu s/epoch':>12} {'speed-up':>9}")
    for r in rows:
        print(f"{r['impl']:<16} {r['dtype']:<8} {r['s_per_epoch']:>9.4f} {r['cpu_s_per_epoch']:>12.4f} "
              f"{r['speedup_vs_hand_numpy']:>8.2f}x")


if __name__ == "__main__":
    main()
