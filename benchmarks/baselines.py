"""Hand-written vectorised NumPy training baselines: the reference graphnn backends are timed against.

One class, `MLPBaseline`, serves both MLP workloads of the benchmark table:

- W1: 64-128-10, tanh, softmax + cross-entropy   (``sizes=W1_SIZES, activation='tanh'``)
- W2: 784-256-256-10, ReLU, softmax + cross-entropy (``sizes=W2_SIZES, activation='relu'``)

Conventions shared with graphnn so the comparison is like for like: row vectors
(``h = act(x @ W1 + b1)``), parameters named ``W1, b1, W2, b2, ...``, loss = mean
cross-entropy over the batch, plain SGD, minibatches ``order[i:i + batch_size]`` with a
final short batch kept, and the loss of each batch computed before its update.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import time

import numpy as np

W1_SIZES = (64, 128, 10)
W2_SIZES = (784, 256, 256, 10)


def init_params(sizes, seed=0, dtype=np.float64) -> dict[str, np.ndarray]:
    """Glorot-uniform weights and zero biases, named W1, b1, W2, b2, ..."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        limit = np.sqrt(6.0 / (n_in + n_out))
        params[f"W{i}"] = rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype=dtype)
    return params


class MLPBaseline:
    """Fully connected net, hidden `activation` ('tanh' or 'relu'), softmax + cross-entropy, SGD.

    `params` are copied (cast to `dtype`), so several backends can start from the same
    dict. Without `params`, weights come from `init_params(sizes, seed)`.
    """

    def __init__(self, params: dict[str, np.ndarray] | None = None, lr=0.1, dtype=np.float32,
                 *, sizes=None, activation="tanh", seed=0):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', not {activation!r}")
        self.dtype = np.dtype(dtype)
        if params is None:
            if sizes is None:
                raise ValueError("give params or sizes")
            params = init_params(sizes, seed)
        n_layers = sum(1 for k in params if k.startswith("W"))
        inferred = (params["W1"].shape[0],) + tuple(params[f"W{i}"].shape[1] for i in range(1, n_layers + 1))
        if sizes is not None and tuple(sizes) != inferred:
            raise ValueError(f"params have layer sizes {inferred}, sizes says {tuple(sizes)}")
        self.sizes = inferred
        self.activation = activation
        self.lr = lr
        self.W = [np.array(params[f"W{i}"], dtype=self.dtype, order="C") for i in range(1, n_layers + 1)]
        self.b = [np.array(params[f"b{i}"], dtype=self.dtype) for i in range(1, n_layers + 1)]
        # Gradient buffers do not depend on the batch size; activations do (see _buffers).
        self.gW = [np.empty_like(w) for w in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self._by_batch: dict[int, dict] = {}

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The current parameters (views, not copies)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.W, self.b), start=1):
            out[f"W{i}"], out[f"b{i}"] = w, b
        return out

    def _buffers(self, B: int) -> dict:
        # Preallocated per batch size: a full batch and, at most, one short last batch.
        buf = self._by_batch.get(B)
        if buf is None:
            buf = {"x": np.empty((B, self.sizes[0]), self.dtype),
                   "t": np.empty((B, self.sizes[-1]), self.dtype),
                   "a": [np.empty((B, n), self.dtype) for n in self.sizes[1:]],
                   "d": [np.empty((B, n), self.dtype) for n in self.sizes[1:-1]]}
            self._by_batch[B] = buf
        return buf

    def _forward(self, x, t, buf) -> float:
        """Forward pass into buf['a']; the last one ends as softmax probabilities. Returns summed CE."""
        a_prev = x
        last = len(self.W) - 1
        for l, (w, b, a) in enumerate(zip(self.W, self.b, buf["a"])):
            np.dot(a_prev, w, out=a)
            a += b
            if l < last:
                if self.activation == "tanh":
                    np.tanh(a, out=a)
                else:
                    np.maximum(a, 0, out=a)
            a_prev = a
        z = a_prev
        # Stable softmax-CE: with z shifted by its row max, CE_i = log(sum_j e^z_ij) - t_i . z_i
        # (rows of t sum to one), so log(softmax) is never formed.
        z -= z.max(axis=1, keepdims=True)
        picked = np.vdot(t, z)
        np.exp(z, out=z)
        s = z.sum(axis=1, keepdims=True)
        loss = float(np.log(s).sum() - picked)
        z /= s
        return loss

    def _backward(self, x, t, buf, scale) -> None:
        """Gradients times `scale`*B into gW/gb; overwrites the activations."""
        delta = buf["a"][-1]
        delta -= t                         # fused softmax-CE gradient: p - onehot
        delta *= scale
        for l in range(len(self.W) - 1, -1, -1):
            a_prev = buf["a"][l - 1] if l > 0 else x
            np.dot(a_prev.T, delta, out=self.gW[l])
            delta.sum(axis=0, out=self.gb[l])
            if l == 0:
                break
            d_prev = buf["d"][l - 1]
            np.dot(delta, self.W[l].T, out=d_prev)
            # a_prev is no longer needed: turn it into the activation's derivative in place.
            if self.activation == "tanh":
                np.multiply(a_prev, a_prev, out=a_prev)
                np.subtract(1, a_prev, out=a_prev)       # tanh' = 1 - h^2
            else:
                np.greater(a_prev, 0, out=a_prev)        # relu' = 1.0 where h > 0, else 0.0
            d_prev *= a_prev
            delta = d_prev

    def _as_data(self, X, T):
        return (np.ascontiguousarray(X, dtype=self.dtype), np.ascontiguousarray(T, dtype=self.dtype))

    def grads(self, X, T) -> tuple[dict[str, np.ndarray], float]:
        """Gradients of the mean cross-entropy over (X, T) (copies) and that loss; no update."""
        X, T = self._as_data(X, T)
        buf = self._buffers(len(X))
        loss = self._forward(X, T, buf) / len(X)
        self._backward(X, T, buf, 1.0 / len(X))
        g = {}
        for i, (gw, gb) in enumerate(zip(self.gW, self.gb), start=1):
            g[f"W{i}"], g[f"b{i}"] = gw.copy(), gb.copy()
        return g, loss

    def loss(self, X, T) -> float:
        """Mean cross-entropy over (X, T) with the current parameters."""
        X, T = self._as_data(X, T)
        return self._forward(X, T, self._buffers(len(X))) / len(X)

    def epoch(self, X, T_onehot, order: np.ndarray, batch_size) -> float:
        """One epoch of SGD over minibatches of `order`; returns the mean loss per sample."""
        X, T = self._as_data(X, T_onehot)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            B = len(idx)
            buf = self._buffers(B)
            x = np.take(X, idx, axis=0, out=buf["x"])
            t = np.take(T, idx, axis=0, out=buf["t"])
            total += self._forward(x, t, buf)
            # Fold lr into the output delta: the buffers then hold lr * grad, and the
            # update is one in-place subtraction per parameter (no lr * g temporaries).
            self._backward(x, t, buf, self.lr / B)
            for p, g in zip(self.W + self.b, self.gW + self.gb):
                p -= g
        return total / len(order)


def runner_module():
    """benchmarks/run.py's module, where the workload table lives: ``__main__`` when run.py runs
    as a script, else the imported ``run`` (what a ``workload_*.py`` module registers into)."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "register_workload"):
        return main
    return importlib.import_module("run")


def interleaved_rows(workload, dtype, model, hand_epoch, batches, backends, epochs, *, lr, batch_size,
                     optimizer=None) -> list[dict]:
    """Rows (hand baseline first, then each graphnn backend) with the best wall and CPU seconds per
    epoch of ``epochs`` interleaved passes — every implementation sees the same machine — and each
    backend's first epoch (its compile or cache load). The slow NumPy reference runs one pass.
    Trainers time the compiled backend itself (``background_compile=False``)."""
    from graphnn.training import Trainer

    hand_epoch()  # warm-up
    impls = {"hand NumPy": (hand_epoch, None)}
    data = model.data.train
    for backend in backends:
        trainer = Trainer(model, backend=backend, dtype=dtype, lr=lr, batch_size=batch_size,
                          background_compile=False, **({"optimizer": optimizer} if optimizer else {}))
        feeds = {k: np.asarray(v, dtype=dtype) for k, v in data.items()}
        t0 = time.perf_counter()
        trainer.backend.train_epoch(feeds, batches)  # warm-up (compiles, or loads the cache)
        impls[f"graphnn {backend}"] = (lambda tr=trainer, f=feeds: tr.backend.train_epoch(f, batches),
                                       time.perf_counter() - t0)
    wall = {k: np.inf for k in impls}
    cpu = dict(wall)
    for n in range(epochs):
        for impl, (epoch, _) in impls.items():
            if impl == "graphnn numpy" and n:
                continue
            wall[impl] = min(wall[impl], best_time(epoch, 1))
            cpu[impl] = min(cpu[impl], best_time(epoch, 1, time.process_time))
    rows = [{"workload": workload, "impl": impl, "dtype": dtype, "s_per_epoch": wall[impl],
             "cpu_s_per_epoch": cpu[impl], **({"first_epoch_s": first} if first is not None else {})}
            for impl, (_, first) in impls.items()]
    for r in rows:
        r["speedup_vs_hand_numpy"] = rows[0]["s_per_epoch"] / r["s_per_epoch"]
        r["cpu_speedup_vs_hand_numpy"] = rows[0]["cpu_s_per_epoch"] / r["cpu_s_per_epoch"]
    return rows


def speed_table(rows, per="epoch") -> str:
    """Markdown rows of `interleaved_rows`-style results (keys ``s_per_<per>``, ``cpu_s_per_<per>``)."""
    lines = [f"| workload | implementation | dtype | ms / {per} (wall) | × hand NumPy | CPU ms / {per} | × (CPU) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['impl']} | {r['dtype']} | {1000 * r[f's_per_{per}']:.2f} | "
                     f"{r['speedup_vs_hand_numpy']:.2f} | {1000 * r[f'cpu_s_per_{per}']:.2f} | "
                     f"{r['cpu_speedup_vs_hand_numpy']:.2f} |")
    return "\n".join(lines)


def best_time(fn, repeats, clock=time.perf_counter) -> float:
    """The fastest of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


class MinibatchEpoch:
    """For hand baselines with ``step(x, t) -> loss``: an epoch over a given sample order."""

    def epoch(self, X, T, order, batch_size) -> float:
        X, T = X.astype(self.dtype), T.astype(self.dtype)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            total += self.step(X[idx], T[idx]) * len(idx)
        return total / len(order)


def wait_for_quiet(max_wait, below=None):
    """On a shared machine, wait (up to max_wait s) until the 1-minute load is below ``below``
    (default: the core count). Returns the load average it ends with."""
    import os

    below = os.cpu_count() if below is None else below
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > below and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def blas_roofline_gflops(dtype, n=1024, repeats=3) -> float:
    """Measured np.dot speed at n x n x n in GFLOP/s (best of `repeats`, after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.dot(a, b, out=out)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.dot(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


@contextlib.contextmanager
def numpy_threads_limited(n=2, user_api="blas"):
    """Cap BLAS (by default) thread pools at `n` threads inside the block: NumPy's and the
    one Numba's np.dot calls (SciPy's, loaded here first so that the cap reaches it).

    On a 2-core machine, BLAS threads competing with each other or with Numba's
    made every backend 5-10x slower in one measurement; the benchmark caps them.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise ImportError("numpy_threads_limited needs threadpoolctl: pip install threadpoolctl") from e
    try:   # compiled code calls SciPy's BLAS (a second OpenBLAS): loaded now, it is capped too
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass
    with threadpool_limits(limits=n, user_api=user_api):
        yield


def _time_epochs(model, X, T, batch_size, epochs, seed=0) -> float:
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(X)) for _ in range(epochs + 1)]
    model.epoch(X, T, orders[0], batch_size)          # warm-up: buffers, BLAS threads
    times = []
    for order in orders[1:]:
        t0 = time.perf_counter()
        model.epoch(X, T, order, batch_size)
        times.append(time.perf_counter() - t0)
    return min(times)


def _random_data(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    T = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    return X, T


if __name__ == "__main__":
    with numpy_threads_limited(2):
        for dt in (np.float32, np.float64):
            print(f"BLAS roofline {np.dtype(dt).name}: {blas_roofline_gflops(dt, n=2048):.0f} GFLOP/s (2048^3)")
        for dt in (np.float32, np.float64):
            X, T = _random_data(1437, 64, 10, dt)
            m = MLPBaseline(init_params(W1_SIZES), lr=0.1, dtype=dt, activation="tanh")
            print(f"W1 {np.dtype(dt).name}: {_time_epochs(m, X, T, 32, 20) * 1e3:.2f} ms/epoch")
        X, T = _random_data(60000, 784, 10, np.float32)
        m = MLPBaseline(init_params(W2_SIZES), lr=0.01, dtype=np.float32, activation="relu")
        print(f"W2 float32: {_time_epochs(m, X, T, 128, 3):.3f} s/epoch")
