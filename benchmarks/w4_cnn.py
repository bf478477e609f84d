"""Benchmark row W4: conv 3×3 × 8 filters (valid) + ReLU + 2×2 max-pool + dense 72 → 10,
softmax cross-entropy, the 8×8 digits, batch 32, SGD lr 0.1 — time per epoch.

Three implementations from the same initial weights, data and batch order:

- `W4Baseline`: hand-written vectorised NumPy (im2col by a strided view + matmul, pooling
  by reshape, the pooling gradient to the first maximum of each window);
- graphnn's NumPy reference backend (`backend='numpy'`);
- graphnn compiled (`backend='cpu'`, the generated Numba module with codegen/lower_conv.py).

``python -m benchmarks.w4_cnn`` prints the table; `run()` returns its rows.
"""
from __future__ import annotations

import numpy as np

from benchmarks.baselines import MinibatchEpoch, interleaved_rows, speed_table

from graphnn import losses
from graphnn.data import digits_dataset
from graphnn.model import Model
from graphnn.ops import flatten, input, linear, parameter, relu
from graphnn.ops.conv import conv2d, max_pool2d

FILTERS, CLASSES, BATCH, LR = 8, 10, 32, 0.1


def init_params(seed=0) -> dict:
    """K (8, 1, 3, 3) He-normal, c (8,) zeros, W (72, 10) Glorot-uniform, b (10,) zeros."""
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (72 + CLASSES))
    return {"K": rng.normal(0.0, np.sqrt(2.0 / 9), (FILTERS, 1, 3, 3)), "c": np.zeros(FILTERS),
            "W": rng.uniform(-limit, limit, (72, CLASSES)), "b": np.zeros(CLASSES)}


def w4_model(params=None) -> Model:
    """The W4 network as a graphnn model (weights from `init_params` unless given)."""
    p = params or init_params()
    x = input("x", (None, 1, 8, 8))
    t = input("t", (None, CLASSES))
    conv = conv2d(x, parameter("K", p["K"]), parameter("c", p["c"]), name="conv")
    pooled = max_pool2d(relu(conv, name="a"), 2, name="pool")
    logits = linear(flatten(pooled, name="features"), parameter("W", p["W"]), parameter("b", p["b"]), name="z")
    loss = losses.softmax_cross_entropy(logits, t, name="CE")
    return Model("w4-cnn", loss, logits, (x, t), digits_dataset(image_shape=(1, 8, 8)),
                 defaults={"lr": LR, "batch_size": BATCH, "epochs": 10}, task="classification",
                 description="W4: conv 3×3×8 valid + ReLU + 2×2 max-pool + dense 72→10")


class W4Baseline(MinibatchEpoch):
    """Hand-written NumPy: the same net, forward and backward, SGD, in ``dtype``."""

    def __init__(self, params, lr=LR, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.lr = lr
        self.K = np.array(params["K"], self.dtype).reshape(FILTERS, 9)   # (F, 9) taps
        self.c = np.array(params["c"], self.dtype)
        self.W = np.array(params["W"], self.dtype)
        self.b = np.array(params["b"], self.dtype)

    @property
    def params(self):
        return {"K": self.K.reshape(FILTERS, 1, 3, 3), "c": self.c, "W": self.W, "b": self.b}

    def step(self, x, t) -> float:
        """One SGD step on a batch x (B, 1, 8, 8), t (B, 10); returns the batch's mean loss."""
        B = x.shape[0]
        cols = np.lib.stride_tricks.sliding_window_view(x[:, 0], (3, 3), axis=(1, 2)).reshape(B * 36, 9)
        z = cols @ self.K.T + self.c                               # (B·36, F), rows (b, i, j)
        a = np.maximum(z, 0.0).reshape(B, 3, 2, 3, 2, FILTERS)     # windows: (b, I, m, J, n, f)
        win = a.transpose(0, 1, 3, 5, 2, 4).reshape(B, 3, 3, FILTERS, 4)
        arg = np.argmax(win, axis=-1)                              # the first maximum wins
        pooled = np.take_along_axis(win, arg[..., None], -1)[..., 0]           # (B, 3, 3, F)
        feats = pooled.transpose(0, 3, 1, 2).reshape(B, 72)        # NCHW flatten, like graphnn
        logits = feats @ self.W + self.b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p = e / e.sum(axis=1, keepdims=True)
        loss = float(-np.sum(t * np.log(p + 1e-30)) / B)
        dlogits = (p - t) / B
        dW = feats.T @ dlogits
        db = dlogits.sum(axis=0)
        dpooled = (dlogits @ self.W.T).reshape(B, FILTERS, 3, 3).transpose(0, 2, 3, 1)
        dwin = np.zeros_like(win)
        np.put_along_axis(dwin, arg[..., None], dpooled[..., None], -1)
        da = dwin.reshape(B, 3, 3, FILTERS, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(B * 36, FILTERS)
        dz = da * (z > 0)
        self.K -= self.lr * (dz.T @ cols)
        self.c -= self.lr * dz.sum(axis=0)
        self.W -= self.lr * dW
        self.b -= self.lr * db
        return loss

    def epoch(self, X, T, order, batch_size=BATCH) -> float:
        return MinibatchEpoch.epoch(self, X, T, order, batch_size)




def run(epochs=5, dtype="float32", seed=0, backends=("numpy", "cpu")) -> list[dict]:
    """Seconds per epoch (best of ``epochs``) for the hand baseline and graphnn's backends."""
    from benchmarks.baselines import numpy_threads_limited

    with numpy_threads_limited(1):
        return _run(epochs, dtype, seed, backends)


def _run(epochs, dtype, seed, backends):
    params = init_params(seed)
    model = w4_model(params)
    X, T = model.data.train["x"], model.data.train["t"]
    order = np.random.default_rng(seed).permutation(len(X))
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    hand = W4Baseline(params, dtype=dtype)
    return interleaved_rows("W4", dtype, model, lambda: hand.epoch(X, T, order), batches, backends, epochs,
                            lr=LR, batch_size=BATCH)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    print(speed_table(run(args.epochs, args.dtype), per="epoch"))
