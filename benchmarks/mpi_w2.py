"""W2 data-parallel benchmark: epoch time on 1 and 2 MPI ranks, and the all-reduce's share.

W2 = MLP 784-256-256-10, ReLU, softmax cross-entropy, batch 128, 60000 random examples,
plain SGD. Every configuration trains the same global batches (the Horovod pattern: each
rank computes 64 of every 128 rows on 2 ranks), so only the time differs.

    python benchmarks/mpi_w2.py                     # backend cpu if codegen is there, else numpy
    python benchmarks/mpi_w2.py --backend numpy --epochs 2 --json w2_mpi.json

Configurations: 1 rank × 1 BLAS thread, 1 rank × 2 threads, 2 ranks × 1 thread (on a 2-core
machine the last two use the same cores). "all-reduce" is the time ranks spent inside the
gradient all-reduce, including waiting for the slower rank; "isolated" is one all-reduce of
the same buffer with both ranks already waiting, i.e. the pure communication cost.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 256, 256, 10)


def w2_model(n=60000, seed=0):
    """The W2 MLP as a graphnn Model, with ``n`` random images and labels."""
    from graphnn import input, linear, losses, parameter, relu
    from graphnn.data import Dataset, one_hot
    from graphnn.model import Model

    rng = np.random.default_rng(seed)
    x, t = input("x", (None, SIZES[0])), input("t", (None, SIZES[-1]))
    h = x
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        W = parameter(f"W{i}", shape=(n_in, n_out), rng=rng)
        b = parameter(f"b{i}", shape=(n_out,), init="zeros")
        h = linear(h, W, b, name=f"net{i}")
        if i < len(SIZES) - 1:
            h = relu(h, name=f"h{i}")
    data = {"x": rng.random((n, SIZES[0]), dtype=np.float32),
            "t": one_hot(rng.integers(0, SIZES[-1], n), SIZES[-1]).astype(np.float32)}
    return Model("w2", losses.softmax_cross_entropy(h, t, name="CE"), h, (x, t), Dataset(data),
                 defaults={"lr": 0.01, "batch_size": 128, "epochs": 1}, task="regression",
                 description="W2 benchmark MLP 784-256-256-10 ReLU on random data")


def worker(args):
    """One rank's part (run under mpiexec): time epochs and the all-reduce."""
    from graphnn.training.distributed import world
    from graphnn.training import Trainer

    comm = world()
    trainer = Trainer(w2_model(args.n), backend=args.backend, comm=comm, batch_size=128, lr=0.01,
                      dtype=args.dtype, background_compile=False)  # time the compiled epochs only
    dp = trainer.backend
    trainer.fit(steps=3)  # warm-up: compilation, first-touch allocation
    epochs, shares = [], []
    for _ in range(args.epochs):
        comm.barrier()
        before, start = dp.allreduce_seconds, time.perf_counter()
        trainer.fit(epochs=1)
        comm.barrier()
        epochs.append(time.perf_counter() - start)
        shares.append(dp.allreduce_seconds - before)
    # the pure communication cost: the same buffer, every rank already waiting
    buf, reps = np.zeros_like(dp._buf), 50
    comm.barrier()
    start = time.perf_counter()
    for _ in range(reps):
        comm.allreduce_sum_inplace(buf)
    isolated = (time.perf_counter() - start) / reps
    best = int(np.argmin(epochs))
    everyone = comm.allgather({"epoch_s": epochs[best], "allreduce_s": shares[best]})
    if comm.rank == 0:
        steps = -(-args.n // 128)
        print("RESULT " + json.dumps({
            "ranks": comm.size, "threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
            "backend": trainer.backend.name, "dtype": args.dtype, "epoch_s": epochs[best],
            "allreduce_s_per_epoch": max(e["allreduce_s"] for e in everyone),
            "allreduce_share": max(e["allreduce_s"] for e in everyone) / epochs[best],
            "isolated_allreduce_ms": isolated * 1e3, "steps_per_epoch": steps,
            "gradient_mb": dp._buf.nbytes / 1e6, "loss": trainer.history.last()}), flush=True)


def launch(ranks, threads, args):
    mpiexec = Path(sys.executable).with_name("mpiexec")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks), sys.executable, __file__,
           "--worker", "--backend", args.backend, "--epochs", str(args.epochs), "--n", str(args.n),
           "--dtype", args.dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def default_backend():
    from graphnn.training import BackendUnavailableError, backend_factory
    try:
        backend_factory("cpu")
        return "cpu"
    except BackendUnavailableError:
        return "numpy"


def run(args) -> list[dict]:
    from baselines import wait_for_quiet   # (benchmarks/ is on the path: script or run.py)

    load_before = os.getloadavg()[0]
    rows = []
    for ranks, threads in ((1, 1), (1, 2), (2, 1)):
        wait_for_quiet(args.wait_quiet)
        rows.append(launch(ranks, threads, args))
    one = rows[0]["epoch_s"]
    print(f"W2 784-256-256-10 ReLU, b128, {args.n} random examples, {args.dtype}, backend "
          f"{rows[0]['backend']}; best of {args.epochs} epochs; gradient {rows[0]['gradient_mb']:.2f} MB; "
          f"{os.cpu_count()} cores, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after "
          "(other processes share these cores)")
    print(f"{'ranks x threads':>16} {'epoch s':>9} {'speed-up':>9} {'all-reduce s':>13} {'share':>7} "
          f"{'isolated ms':>12}")
    for r in rows:
        print(f"{r['ranks']:>10} x {r['threads']:<3} {r['epoch_s']:>9.3f} {one / r['epoch_s']:>8.2f}x "
              f"{r['allreduce_s_per_epoch']:>13.3f} {100 * r['allreduce_share']:>6.1f}% "
              f"{r['isolated_allreduce_ms']:>12.3f}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=None, help="cpu (default when available) or numpy")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per configuration (best is kept)")
    p.add_argument("--n", type=int, default=60000, help="training examples")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--wait-quiet", type=float, default=120,
                   help="before each configuration wait up to this many seconds for a load below the core count")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.backend = args.backend or default_backend()
    if args.worker:
        return worker(args)
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
