"""Benchmark row W6 transformer: training steps of the built-in ``transformer`` (char-level
language model on the shipped Shakespeare; its default sizes: 2 pre-norm decoder blocks,
d_model 32, 4 heads, FFN 64 with GELU, context 32), batch 32, SGD lr 0.1 — time per step.

Three implementations from the same initial weights, windows and batch order:

- `TransformerBaseline`: hand-written NumPy, forward and backward written out (causal
  multi-head attention by einsum, layer norm's compact gradient, the embedding's gradient by
  ``np.add.at``); it is checked against graphnn's reference loss and parameters first;
- graphnn's NumPy reference backend (``backend='numpy'``);
- graphnn compiled (``backend='cpu'``).

``python -m benchmarks.w6_transformer`` prints the table; `run()` returns its rows.
"""
from __future__ import annotations

import math
import time

import numpy as np

from benchmarks.baselines import best_time, speed_table

from graphnn.models.transformer import transformer
from graphnn.ops.attention import causal_mask
from graphnn.ops.embedding import sinusoid_table
from graphnn.ops.norm import EPS

BATCH, LR, WINDOWS, HEADS = 32, 0.1, 320, 4   # 10 steps per timed pass
GELU_C, GELU_A = math.sqrt(2 / math.pi), 0.044715


def _ln(x, g, b):
    mu = x.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + EPS)
    xhat = (x - mu) * inv
    return xhat * g + b, (xhat, inv)


def _ln_back(dy, g, cache):
    xhat, inv = cache
    dxh = dy * g
    dx = inv * (dxh - dxh.mean(-1, keepdims=True) - xhat * (dxh * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).sum((0, 1)), dy.sum((0, 1))


class TransformerBaseline:
    """Hand-written NumPy: the built-in transformer (pre-norm), forward, backward and SGD."""

    def __init__(self, params: dict, layers, heads, lr=LR, dtype=np.float64):
        self.p = {k: np.array(v, dtype=dtype) for k, v in params.items()}
        self.layers, self.heads, self.lr, self.dtype = layers, heads, lr, np.dtype(dtype)
        self.d = self.p["E"].shape[1]
        self._pe = {}

    def _tables(self, t):
        if t not in self._pe:
            self._pe[t] = (sinusoid_table(t, self.d).astype(self.dtype), causal_mask(t).astype(self.dtype))
        return self._pe[t]

    def _attention(self, h, k):
        p, H = self.p, self.heads
        B, T, D = h.shape
        dk = D // H
        mask = self._tables(T)[1]
        split = lambda m: m.reshape(B, T, H, dk).transpose(0, 2, 1, 3)     # noqa: E731
        q, kk, v = (split(h @ p[f"block{k}.attn.{w}"]) for w in ("W_Q", "W_K", "W_V"))
        s = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(dk) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        return o @ p[f"block{k}.attn.W_O"], (h, q, kk, v, a, o)

    def _attention_back(self, dout, k, cache, grads):
        p, H = self.p, self.heads
        h, q, kk, v, a, o = cache
        B, T, D = h.shape
        dk = D // H
        merge = lambda m: m.transpose(0, 2, 1, 3).reshape(B, T, D)          # noqa: E731
        grads[f"block{k}.attn.W_O"] = np.einsum("btd,bte->de", o, dout)
        do = (dout @ p[f"block{k}.attn.W_O"].T).reshape(B, T, H, dk).transpose(0, 2, 1, 3)
        da = do @ v.transpose(0, 1, 3, 2)
        dv = a.transpose(0, 1, 3, 2) @ do
        ds = a * (da - (da * a).sum(-1, keepdims=True)) / math.sqrt(dk)
        dq, dkk = ds @ kk, ds.transpose(0, 1, 3, 2) @ q
        dh = 0.0
        for w, g in (("W_Q", dq), ("W_K", dkk), ("W_V", dv)):
            g = merge(g)
            grads[f"block{k}.attn.{w}"] = np.einsum("btd,bte->de", h, g)
            dh = dh + g @ p[f"block{k}.attn.{w}"].T
        return dh

    def step(self, tokens, targets) -> float:
        """One SGD step on windows (B, T) of ids and their next characters; the mean CE."""
        p = self.p
        B, T = tokens.shape
        x = p["E"][tokens] + self._tables(T)[0]
        caches = []
        for k in range(1, self.layers + 1):
            h, ln1 = _ln(x, p[f"block{k}.ln1.γ"], p[f"block{k}.ln1.β"])
            att, ac = self._attention(h, k)
            a = x + att
            h2, ln2 = _ln(a, p[f"block{k}.ln2.γ"], p[f"block{k}.ln2.β"])
            u = h2 @ p[f"block{k}.ffn.h.W"] + p[f"block{k}.ffn.h.b"]
            th = np.tanh(GELU_C * (u + GELU_A * u ** 3))
            g = 0.5 * u * (1.0 + th)
            x = a + g @ p[f"block{k}.ffn.out.W"] + p[f"block{k}.ffn.out.b"]
            caches.append((ln1, ac, ln2, h2, u, th, g))
        y, lnf = _ln(x, p["ln.γ"], p["ln.β"])
        z = y @ p["W_out"] + p["b_out"]
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        sm = e / e.sum(-1, keepdims=True)
        loss = float(-np.mean(np.log(np.take_along_axis(sm, targets[..., None], -1))))
        dz = sm
        np.put_along_axis(dz, targets[..., None], np.take_along_axis(dz, targets[..., None], -1) - 1.0, -1)
        dz /= B * T
        grads = {"W_out": np.einsum("btd,btv->dv", y, dz), "b_out": dz.sum((0, 1))}
        dx, grads["ln.γ"], grads["ln.β"] = _ln_back(dz @ p["W_out"].T, p["ln.γ"], lnf)
        for k in range(self.layers, 0, -1):
            ln1, ac, ln2, h2, u, th, g = caches[k - 1]
            grads[f"block{k}.ffn.out.W"] = np.einsum("btd,bte->de", g, dx)
            grads[f"block{k}.ffn.out.b"] = dx.sum((0, 1))
            dg = dx @ p[f"block{k}.ffn.out.W"].T
            du = dg * (0.5 * (1.0 + th) + 0.5 * u * (1.0 - th ** 2) * GELU_C * (1.0 + 3 * GELU_A * u ** 2))
            grads[f"block{k}.ffn.h.W"] = np.einsum("btd,bte->de", h2, du)
            grads[f"block{k}.ffn.h.b"] = du.sum((0, 1))
            dh2, grads[f"block{k}.ln2.γ"], grads[f"block{k}.ln2.β"] = _ln_back(du @ p[f"block{k}.ffn.h.W"].T,
                                                                              p[f"block{k}.ln2.γ"], ln2)
            da = dx + dh2
            dh = self._attention_back(da, k, ac, grads)
            dh1, grads[f"block{k}.ln1.γ"], grads[f"block{k}.ln1.β"] = _ln_back(dh, p[f"block{k}.ln1.γ"], ln1)
            dx = da + dh1
        dE = np.zeros_like(p["E"])
        np.add.at(dE, tokens, dx)
        grads["E"] = dE
        for name, gr in grads.items():
            p[name] -= self.lr * gr
        return loss

    def epoch(self, tokens, targets, batches) -> float:
        return float(np.mean([self.step(tokens[b], targets[b]) for b in batches]))


def _setup(dtype, seed):
    model = transformer(heads=HEADS)
    named = {p.name: v for p, v in model.initial_params().items()}
    data = model.data.train
    tokens, targets = (np.asarray(data[k.name][:WINDOWS]) for k in model.inputs)
    order = np.random.default_rng(seed).permutation(WINDOWS)
    batches = [order[i:i + BATCH] for i in range(0, WINDOWS, BATCH)]
    return model, named, tokens.astype(np.int64), targets.astype(np.int64), batches


def _baseline(named, dtype):
    layers = sum(1 for k in named if k.endswith(".attn.W_Q"))
    return TransformerBaseline(named, layers, heads=HEADS, dtype=dtype)


def check_baseline(steps=3, seed=0) -> float:
    """The hand baseline against graphnn's reference backend (float64): the largest parameter
    difference after ``steps`` SGD steps (the losses must agree to 1e-9 as well)."""
    from graphnn.training import Trainer

    model, named, tokens, targets, batches = _setup("float64", seed)
    hand = _baseline(named, np.float64)
    ref = Trainer(model, backend="numpy", dtype="float64", lr=LR, batch_size=BATCH, optimizer="sgd").backend
    feeds = {model.inputs[0].name: tokens, model.inputs[1].name: targets}
    for b in batches[:steps]:
        lh = hand.step(tokens[b], targets[b])
        lr_ = ref.train_step({k: v[b] for k, v in feeds.items()})
        assert abs(lh - lr_) <= 1e-9 * max(1.0, abs(lr_)), (lh, lr_)
    return max(float(np.max(np.abs(hand.p[p.name] - ref.params[p]))) for p in model.params)


def run(repeats=3, dtype="float32", seed=0, backends=("numpy", "cpu")) -> list[dict]:
    """Seconds per training step (best of ``repeats`` passes of 10 steps), each implementation."""
    from graphnn.training import Trainer

    from benchmarks.baselines import numpy_threads_limited

    with numpy_threads_limited(1):
        model, named, tokens, targets, batches = _setup(dtype, seed)
        steps = len(batches)
        hand = _baseline(named, dtype)
        hand.epoch(tokens, targets, batches)      # warm-up
        wall = best_time(lambda: hand.epoch(tokens, targets, batches), repeats) / steps
        cpu = best_time(lambda: hand.epoch(tokens, targets, batches), repeats, time.process_time) / steps
        rows = [{"impl": "hand NumPy", "s_per_step": wall, "cpu_s_per_step": cpu}]
        feeds = {model.inputs[0].name: tokens.astype(dtype), model.inputs[1].name: targets.astype(dtype)}
        for backend in backends:
            be = Trainer(model, backend=backend, dtype=dtype, lr=LR, batch_size=BATCH, optimizer="sgd",
                         background_compile=False).backend
            t0 = time.perf_counter()
            be.train_epoch(feeds, batches)        # warm-up (compiles, or loads the cache)
            first = time.perf_counter() - t0
            wall = best_time(lambda: be.train_epoch(feeds, batches), repeats) / steps
            cpu = best_time(lambda: be.train_epoch(feeds, batches), repeats, time.process_time) / steps
            rows.append({"impl": f"graphnn {backend}", "s_per_step": wall, "cpu_s_per_step": cpu,
                         "first_pass_s": first})
    for r in rows:
        r.update(workload="W6 transformer", dtype=dtype, speedup_vs_hand_numpy=rows[0]["s_per_step"] / r["s_per_step"],
                 cpu_speedup_vs_hand_numpy=rows[0]["cpu_s_per_step"] / r["cpu_s_per_step"])
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    print(f"hand baseline vs graphnn reference (float64, 3 SGD steps): max parameter difference "
          f"{check_baseline():.2e}")
    print(speed_table(run(args.repeats, args.dtype), per="step"))
