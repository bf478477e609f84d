"""graphnn benchmarks: compiled training ('cpu') against hand-written NumPy, as a Markdown table.

    python benchmarks/run.py            # W1–W5 (W3–W5 from workload_rows.py), float32 and float64
    python benchmarks/run.py --wait-quiet 600 --workloads W1,W3   # each row waits for a quiet machine
    python benchmarks/run.py --quick    # a short version (fewer epochs, W2 on 12,000 rows)
    python benchmarks/run.py --cuda     # GPU: W2 with backend 'cuda' beside PyTorch (cuda_w2.py)
    python benchmarks/run.py --mpi      # W2 on 1 and 2 MPI ranks, all-reduce share (mpi_w2.py)

Columns: workload | dtype | hand NumPy | graphnn numpy | graphnn cpu | cpu vs hand NumPy |
compile cold | compile warm. Times are seconds per epoch (best of several epochs, after a
warm-up); every implementation starts from the same weights, data and batch order
(benchmarks/baselines.py's `MLPBaseline` and `init_params`). BLAS is capped at 2 threads.

"compile cold" is backend construction + the first epoch − one steady epoch, in a fresh
process with an empty cache; "compile warm" the same with the cache filled by the cold run
(imports excluded in both: `import numba` alone takes ~0.5 s).

Workloads are a registry: `register_workload(name, fn)` with ``fn(dtype, quick) -> Row``;
any module ``benchmarks/workload_*.py`` is imported and may register more (W3, W4, …).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from baselines import (W1_SIZES, W2_SIZES, MLPBaseline, blas_roofline_gflops, init_params,  # noqa: E402
                       numpy_threads_limited, wait_for_quiet)

COLUMNS = ["workload", "dtype", "hand NumPy", "graphnn numpy", "graphnn cpu", "cpu vs hand NumPy",
           "compile cold", "compile warm"]


@dataclass
class Row:
    workload: str
    dtype: str
    hand: float | None            # seconds per epoch
    numpy: float | None
    cpu: float | None
    cold: float | None = None     # seconds
    warm: float | None = None
    notes: list = field(default_factory=list)

    def cells(self):
        speed = f"{self.hand / self.cpu:.2f}x" if self.hand and self.cpu else "–"
        return [self.workload, self.dtype, _t(self.hand), _t(self.numpy), _t(self.cpu), speed,
                _t(self.cold), _t(self.warm)]


def _t(seconds):
    if seconds is None:
        return "–"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


WORKLOADS: dict = {}


def register_workload(name, fn):
    """Add a benchmark row source: ``fn(dtype: str, quick: bool) -> Row``."""
    WORKLOADS[name] = fn
    return fn


# -- the MLP workloads -------------------------------------------------------------------

def mlp_model(sizes, activation):
    """The graphnn model of `MLPBaseline`: linear → act → … → linear, softmax cross-entropy."""
    import graphnn as gn
    from graphnn.data import Dataset
    from graphnn.model import Model

    x, t = gn.input("x", (None, sizes[0])), gn.input("t", (None, sizes[-1]))
    act = {"tanh": gn.tanh, "relu": gn.relu}[activation]
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W = gn.parameter(f"W{i}", np.zeros((n_in, n_out)))
        b = gn.parameter(f"b{i}", np.zeros(n_out))
        h = gn.linear(h, W, b, name=f"z{i}" if i == len(sizes) - 1 else f"net{i}")
        if i < len(sizes) - 1:
            h = act(h, name=f"h{i}")
    loss = gn.losses.softmax_cross_entropy(h, t)
    return Model(f"mlp-{'-'.join(map(str, sizes))}", loss, h, (x, t), Dataset({"x": np.zeros((1, sizes[0]))}),
                 task="classification")


def _params_for(model, named):
    return {p: named[p.name] for p in model.parameters}


def _best(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _w1_data(dtype):
    from graphnn.data import digits_dataset

    train = digits_dataset().train
    return train["x"].astype(dtype), train["t"].astype(dtype)


def _w2_data(dtype, n):
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, 1.0, (n, 784)).astype(dtype)
    T = np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]
    return X, T


SPECS = {
    # name: sizes, activation, batch, lr, data(dtype, quick), epochs (full, quick), numpy epochs
    "W1": dict(sizes=W1_SIZES, act="tanh", batch=32, lr=0.1, data=lambda dt, q: _w1_data(dt),
               epochs=(20, 5), numpy_epochs=(3, 1),
               label="W1 MLP 64-128-10 tanh, digits, b32"),
    "W2": dict(sizes=W2_SIZES, act="relu", batch=128, lr=0.01,
               data=lambda dt, q: _w2_data(dt, 12000 if q else 60000),
               epochs=(5, 2), numpy_epochs=(1, 1), label="W2 MLP 784-256-256-10 ReLU, 60k, b128"),
}


def _setup(name, dtype, quick):
    import codegen  # noqa: F401  (registers 'cpu')
    from graphnn.optim import make_optimizer

    spec = SPECS[name]
    X, T = spec["data"](dtype, quick)
    named = init_params(spec["sizes"], seed=0)
    model = mlp_model(spec["sizes"], spec["act"])
    order_rng = np.random.default_rng(1)
    orders = [order_rng.permutation(len(X)) for _ in range(spec["epochs"][quick] + 1)]
    opt = lambda: make_optimizer("sgd", lr=spec["lr"])  # noqa: E731
    return spec, X, T, named, model, orders, opt


def mlp_row(name):
    def run(dtype, quick):
        from graphnn.training import NumpyBackend

        from codegen import CpuBackend

        spec, X, T, named, model, orders, opt = _setup(name, dtype, quick)
        bs = spec["batch"]
        batches = lambda order: [order[i:i + bs] for i in range(0, len(order), bs)]  # noqa: E731
        feeds = {"x": X, "t": T}
        hand = MLPBaseline(named, lr=spec["lr"], dtype=dtype, activation=spec["act"])
        cpu = CpuBackend(model, opt(), dtype, params=_params_for(model, named))
        hand.epoch(X, T, orders[0], bs)
        cpu.train_epoch(feeds, batches(orders[0]))
        t_hand = t_cpu = np.inf
        for order in orders[1:]:   # interleaved, best of: both see the same machine conditions
            t_hand = min(t_hand, _best(lambda: hand.epoch(X, T, order, bs), 1))
            t_cpu = min(t_cpu, _best(lambda: cpu.train_epoch(feeds, batches(order)), 1))
        # same start, same order: compiled and hand NumPy must agree after one epoch
        check_hand = MLPBaseline(named, lr=spec["lr"], dtype=dtype, activation=spec["act"])
        check_cpu = CpuBackend(model, opt(), dtype, params=_params_for(model, named))
        l_hand = check_hand.epoch(X, T, orders[0], bs)
        l_cpu = check_cpu.train_epoch(feeds, batches(orders[0]))
        if abs(l_hand - l_cpu) > (1e-3 if dtype == "float32" else 1e-8) * max(1.0, abs(l_hand)):
            raise AssertionError(f"{name} {dtype}: compiled epoch loss {l_cpu} != hand NumPy {l_hand}")

        ref = NumpyBackend(model, opt(), dtype, params=_params_for(model, named))
        n_np = spec["numpy_epochs"][quick]
        t_np = _best(lambda: ref.train_epoch(feeds, batches(orders[0])), n_np)

        cold, warm = compile_times(name, dtype, quick)
        row = Row(spec["label"], dtype, t_hand, t_np, t_cpu, cold, warm)
        if name == "W2":
            flops = _mlp_flops(spec["sizes"], len(X))
            roof = blas_roofline_gflops(dtype, n=1024 if quick else 2048)
            g_cpu, g_hand = flops / t_cpu / 1e9, flops / t_hand / 1e9
            row.notes.append(f"W2 {dtype}: graphnn cpu {g_cpu:.1f} GFLOP/s = {100 * g_cpu / roof:.0f}% of the "
                             f"BLAS roofline ({roof:.1f} GFLOP/s, np.dot {1024 if quick else 2048}³ in this run); "
                             f"hand NumPy {g_hand:.1f} GFLOP/s ({100 * g_hand / roof:.0f}%)")
        return row
    return run


def _mlp_flops(sizes, n):
    """Multiply-adds ×2 of one epoch: forward, weight gradients, input gradients (not layer 1's)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(a * b for a, b in pairs)
    backward = forward + sum(a * b for a, b in pairs[1:])
    return 2.0 * n * (forward + backward)


register_workload("W1", mlp_row("W1"))
register_workload("W2", mlp_row("W2"))


# -- compile times: fresh processes -----------------------------------------------------------

def compile_times(name, dtype, quick):
    """(cold, warm) seconds, each measured in a new process sharing one new cache directory."""
    with tempfile.TemporaryDirectory(prefix="graphnn-bench-cache-") as d:
        env = {**os.environ, "GRAPHNN_CACHE_DIR": d}
        out = []
        for _ in range(2):
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", name, dtype]
                                 + (["--quick"] if quick else []), env=env, capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError(f"compile probe failed:\n{res.stderr[-2000:]}")
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        return tuple(max(0.0, o["first"] - o["steady"]) for o in out)


def probe(name, dtype, quick):
    import graphnn  # noqa: F401
    import numba  # noqa: F401
    from codegen import CpuBackend

    spec, X, T, named, model, orders, opt = _setup(name, dtype, quick)
    if name == "W2":   # the compile time does not depend on the data size
        X, T = X[:2048], T[:2048]
    bs = spec["batch"]
    batches = [orders[0][orders[0] < len(X)][i:i + bs] for i in range(0, len(X), bs)]
    feeds = {"x": X, "t": T}
    t0 = time.perf_counter()
    cpu = CpuBackend(model, opt(), dtype, params=_params_for(model, named))
    cpu.train_epoch(feeds, batches)
    first = time.perf_counter() - t0
    steady = _best(lambda: cpu.train_epoch(feeds, batches), 3)
    print(json.dumps({"first": first, "steady": steady}))


def table(rows) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def _discover():
    for path in sorted(HERE.glob("workload_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)   # registers its rows with register_workload


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short run")
    p.add_argument("--workloads", help="comma-separated (default: all registered)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                   help="before each row wait up to S seconds for a 1-minute load below --quiet-load")
    p.add_argument("--quiet-load", type=float, default=1.0, help="the load --wait-quiet waits for (default 1.0)")
    p.add_argument("--probe", nargs=2, metavar=("WORKLOAD", "DTYPE"), help=argparse.SUPPRESS)
    p.add_argument("--cuda", action="store_true",
                   help="instead: the GPU rows — W2 beside PyTorch on the same GPU, digits accuracy "
                        "(cuda_w2.py; needs an NVIDIA GPU and graphnn[cuda])")
    p.add_argument("--mpi", action="store_true",
                   help="instead: W2 epoch time on 1 and 2 MPI ranks and the all-reduce share (mpi_w2.py)")
    args = p.parse_args(argv)
    if args.cuda:  # its own rows (backend 'cuda' vs PyTorch); says what is missing without a GPU
        import cuda_w2
        return cuda_w2.main(["--n", "12000", "--epochs", "1", "--no-accuracy"] if args.quick else [])
    if args.mpi:  # its own table (ranks x threads); needs graphnn[mpi]
        sys.path.insert(0, str(HERE))
        import mpi_w2
        return mpi_w2.main(["--n", "12000", "--epochs", "1"] if args.quick else [])
    with numpy_threads_limited(2):
        if args.probe:
            return probe(*args.probe, args.quick)
        _discover()
        names = args.workloads.split(",") if args.workloads else list(WORKLOADS)
        rows = []
        for name in names:
            for dtype in args.dtypes.split(","):
                load = wait_for_quiet(args.wait_quiet, args.quiet_load) if args.wait_quiet else os.getloadavg()[0]
                print(f"running {name} {dtype} (load {load:.1f}) …", file=sys.stderr, flush=True)
                rows.append(WORKLOADS[name](dtype, args.quick))
    print(table(rows))
    notes = [n for r in rows for n in r.notes]
    if hasattr(os, "getloadavg"):
        notes.append(f"machine: {os.cpu_count()} cores, 1-minute load average {os.getloadavg()[0]:.1f} at the end "
                     "(other processes running make every column slower and noisier)")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


if __name__ == "__main__":
    main()
