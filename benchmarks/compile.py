"""Compile cost and start-up of every built-in model beside its epoch time, as a Markdown table.

    python benchmarks/compile.py                        # every built-in model (and a user MLP), float64
    python benchmarks/compile.py --models digits-mlp,lstm --dtype float32
    python benchmarks/compile.py --switch               # also: when the background compile takes over

Every figure comes from a fresh process (``--probe``), after ``import graphnn, numba``:

- lines: the generated module's length;
- numba start-up: Numba's one-time cost in a process (its typing and target registries,
  SciPy's BLAS), paid by the first compile or cache load; the other columns exclude it;
- cold compile: lowering, emitting and compiling what training calls (``train_epoch`` and
  ``evaluate``, the signatures a Trainer uses) with an empty cache, in this process; in
  parentheses the CPU seconds it used (what it takes on an idle core: on a shared machine
  the wall time grows with the load);
- ahead of time: the same with `graphnn codegen MODEL --compile`'s function
  (``codegen.background.compile_into_cache``): this process compiles ``train_epoch`` while a
  child process compiles ``evaluate`` (its start-up overlapping the lowering), then loads it;
- first batch: ``Trainer(model, backend='cpu')`` (background compile, empty cache) until its
  first batch has trained;
- cached start: ``Trainer(model, backend='cpu', background_compile=False)`` with the cache the
  cold compile filled, until its first batch has trained on compiled code;
- switch (``--switch``): from ``Trainer(...)`` with an empty cache until the compiled backend
  took over from the reference (background compile; the reference trains meanwhile);
- epoch cpu / numpy: one epoch compiled (best of several) and on the NumPy reference.

The machine's load average is printed with the table: compile times scale with it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

USER_MLP = "user-mlp-2-16-16-1"
USER_DEEP_MLP = "user-mlp-2-8x32-1"
COLUMNS = ["model", "lines", "numba start-up", "cold compile", "ahead of time", "first batch", "cached start",
           "switch", "epoch cpu", "epoch numpy"]


def models() -> list:
    """The built-in models a Trainer trains by gradient descent, and a user's small MLP."""
    from graphnn.models import available, get_model

    names = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]
    return names + [USER_MLP, USER_DEEP_MLP]


def build(name):
    from graphnn.models import get_model

    if name in (USER_MLP, USER_DEEP_MLP):
        return user_mlp(name)
    return get_model(name)


def user_mlp(name=USER_MLP):
    """A user's 2-16-16-1 tanh MLP with a sigmoid output on two moons (the issue's example), or
    (USER_DEEP_MLP) one of eight equal hidden layers of 32: equal layers print alike."""
    import graphnn as gn
    from graphnn.data import Dataset
    from graphnn.model import Model

    rng = np.random.default_rng(0)
    angle = rng.uniform(0, np.pi, 400)
    upper = rng.integers(0, 2, 400)
    X = np.stack([np.cos(angle) + (1 - upper), np.sin(angle) * (2 * upper - 1) + 0.5 * (1 - upper)], 1)
    X += rng.normal(0, 0.1, X.shape)
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    h = x
    sizes = [2, 16, 16] if name == USER_MLP else [2] + [32] * 8
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), 1):
        h = gn.tanh(gn.linear(h, gn.parameter(f"W{i}", rng.normal(0, a ** -0.5, (a, b))),
                              gn.parameter(f"b{i}", np.zeros(b))))
    w_out = gn.parameter(f"W{len(sizes)}", rng.normal(0, 0.25, (sizes[-1], 1)))
    y = gn.sigmoid(gn.linear(h, w_out, gn.parameter(f"b{len(sizes)}", np.zeros(1))))
    loss = gn.losses.mse(y, t)
    return Model(name, loss, y, (x, t), Dataset({"x": X, "t": upper[:, None].astype(float)}),
                 task="classification", defaults={"lr": 0.5, "batch_size": 32, "epochs": 50})


# -- the probes, each in a fresh process --------------------------------------------------------

def probe(kind: str, name: str, dtype: str) -> dict:
    import graphnn as gn
    import numba  # noqa: F401  (imports are not what is measured)
    from codegen.compile_child import warm_up

    model = build(name)
    T = time.perf_counter
    if kind == "cold":
        start = T()
        warm_up()
        out = {"numba start-up": T() - start}
        out.update(_cold(gn, model, dtype))
        return out
    if kind == "ahead":
        from codegen.background import compile_into_cache

        optimizer = gn.Trainer(model, backend="numpy", dtype=dtype).optimizer
        warm_up()   # Numba's start-up: its own column, as for the cold compile
        return {"ahead of time": compile_into_cache(model, optimizer, dtype)["seconds"]}
    if kind == "first":
        start = T()
        trainer = gn.Trainer(model, backend="cpu", dtype=dtype, background_compile=True)
        trainer.backend.train_epoch(trainer.data.train, trainer._batches()[:1])
        first = T() - start
        from graphnn.training.switching import end_of_training
        end_of_training(trainer.backend)
        return {"first batch": first}
    if kind == "cached":
        warm_up()
        start = T()
        trainer = gn.Trainer(model, backend="cpu", dtype=dtype, background_compile=False)
        trainer.backend.train_epoch(trainer.data.train, trainer._batches()[:1])
        return {"cached start": T() - start}
    if kind == "switch":
        start, limit = T(), 600.0
        trainer = gn.Trainer(model, backend="cpu", dtype=dtype, background_compile=True)
        from graphnn.training.switching import switching_backend
        s = switching_backend(trainer.backend)
        stop = gn.training.LambdaCallback(on_epoch_end=lambda tr, row: s.compiled or T() - start > limit)
        trainer.fit(epochs=10 ** 6, callbacks=[stop], progress=False)
        return {"switch": T() - start if s.compiled else None}
    raise ValueError(f"unknown probe {kind!r}")


def _cold(gn, model, dtype) -> dict:
    from codegen.backend import CpuBackend
    from codegen.background import signatures

    T = time.perf_counter
    ref = gn.Trainer(model, backend="numpy", dtype=dtype)
    feeds, batches = ref.data.train, ref._batches()
    start, cpu = T(), time.process_time()
    backend = CpuBackend(model, ref.optimizer, dtype)
    lowered = T() - start
    for fn, sig in signatures(backend, ("epoch", feeds, batches, True)):
        getattr(backend.module, fn).compile(sig)
    cold, cold_cpu = T() - start, time.process_time() - cpu
    epochs = []
    for _ in range(5):
        t = T()
        backend.train_epoch(feeds, batches)
        epochs.append(T() - t)
    some = batches[:20]   # the reference: a part of an epoch (after a first step), scaled to the whole
    ref.backend.train_epoch(feeds, batches[:1])
    t = T()
    ref.backend.train_epoch(feeds, some)
    numpy_epoch = (T() - t) * sum(map(len, batches)) / sum(map(len, some))
    return {"lines": backend.source.count("\n"), "lowering": lowered, "cold compile": cold, "cold cpu": cold_cpu,
            "epoch cpu": min(epochs), "epoch numpy": numpy_epoch}


def run_probe(kind, name, dtype, cache) -> dict:
    env = {**os.environ, "GRAPHNN_CACHE_DIR": cache, "GRAPHNN_BACKGROUND_COMPILE": "1", "PYTHONPATH":
           os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", kind, name, dtype],
                          capture_output=True, text=True, env=env, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"{name} {kind}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return {}
    return json.loads(lines[-1])


def measure(name, dtype, kinds) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        row = {"model": name}
        for kind in kinds:
            row.update(run_probe(kind, name, dtype, f"{tmp}/{'cold' if kind == 'cached' else kind}"))
    return row


def cells(row) -> list:
    def s(key):
        v = row.get(key)
        return "–" if v is None else f"{v:.2f} s"

    def ms(key):
        v = row.get(key)
        return "–" if v is None else f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"

    cold = s("cold compile") + (f" ({row['cold cpu']:.2f})" if "cold cpu" in row else "")
    return [row["model"], str(row.get("lines", "–")), s("numba start-up"), cold, s("ahead of time"),
            s("first batch"), s("cached start"), s("switch"), ms("epoch cpu"), ms("epoch numpy")]


def table(rows) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated (default: every built-in model and a user MLP)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--switch", action="store_true", help="also time the background switch (another cold compile)")
    ap.add_argument("--only", help="comma-separated probes: first, cold, ahead, cached, switch (cached needs cold)")
    ap.add_argument("--probe", nargs=3, metavar=("KIND", "MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return
    names = args.models.split(",") if args.models else models()
    rows = []
    for name in names:
        kinds = args.only.split(",") if args.only else ["first", "cold", "ahead", "cached"] + ["switch"] * args.switch
        rows.append(measure(name, args.dtype, kinds))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"# {args.dtype}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(table(rows))


if __name__ == "__main__":
    main()
