"""Data-parallel training on real MPI ranks (mpiexec from the mpich wheel, localhost).

Each test launches ``mpiexec -n N`` on a small worker script (written to tmp_path) and
bounds its time: a failure must end the run, never hang it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from graphnn.models import get_model
from graphnn.training import Trainer

WORKER = textwrap.dedent('''
    import os, sys, time
    import numpy as np
    from graphnn.training.distributed import world
    from graphnn.models import get_model
    from graphnn.training import Trainer

    scenario, out = sys.argv[1], sys.argv[2]
    comm = world()
    r = comm.rank

    def save(name, trainer):
        np.savez(os.path.join(out, f"{name}-rank{r}.npz"),
                 **{p.name: v for p, v in trainer.params.items()},
                 losses=np.array(trainer.history.losses))

    if scenario == "train":
        with comm.guard():
            # uneven shards (37 -> 19 + 18, short last batch), momentum state, mean loss
            t = Trainer(get_model("digits-mlp", hidden=16), comm=comm, batch_size=37,
                        optimizer="momentum", lr=0.05, seed=3, backend=os.environ["BACKEND"])
            t.fit(epochs=2)
            save("digits", t)
            # summed loss (quadratic), full batch of 4 rows
            t = Trainer(get_model("xor"), comm=comm, seed=1, backend=os.environ["BACKEND"])
            t.fit(steps=30)
            save("xor", t)
            # one row: every rank but 0 has an empty shard
            t = Trainer(get_model("mazur"), comm=comm, backend=os.environ["BACKEND"])
            t.fit(steps=5)
            save("mazur", t)
            # input corruption: each shard's masks are its rows' masks in the whole batch
            t = Trainer(get_model("denoising-autoencoder", hidden=4), comm=comm, batch_size=10, seed=2,
                        backend=os.environ["BACKEND"])
            t.fit(steps=4)
            save("denoising", t)
            comm.barrier()
    elif scenario == "raise":
        t = Trainer(get_model("digits-mlp", hidden=8), comm=comm, batch_size=64)
        if r == 1:
            t.backend.inner.gradients = lambda feeds: 1 / 0  # rank 1 breaks at its first step
        with comm.guard():
            t.fit(epochs=1)
    elif scenario == "uncaught":  # no guard: the excepthook must still end the job
        if r == 1:
            raise RuntimeError("rank one gives up")
        comm.barrier()
    elif scenario == "mismatch":
        with comm.guard():
            Trainer(get_model("digits-mlp", hidden=16 if r == 0 else 17), comm=comm)
    elif scenario == "hang":
        with comm.guard():
            if r == 1:
                time.sleep(60)
            comm.barrier()
    elif scenario in ("crash", "resume"):
        def trainer():
            return Trainer(get_model("digits-mlp", hidden=16), comm=comm, batch_size=37,
                           optimizer="adam", lr=0.01, seed=5)
        ckpt = os.path.join(out, "ckpt.npz")
        with comm.guard():
            t = trainer()
            if scenario == "crash":
                t.fit(epochs=1)
                t.save(ckpt)  # rank 0 writes
                if r == 1:  # then rank 1 dies in the middle of epoch 2
                    calls, real = [0], t.backend.inner.gradients
                    def failing(feeds):
                        calls[0] += 1
                        if calls[0] == 10:
                            raise MemoryError("simulated crash")
                        return real(feeds)
                    t.backend.inner.gradients = failing
                t.fit(epochs=1)
            else:
                t.load(ckpt)
                assert t.epoch == 1
                t.fit(epochs=1)
                save("resumed", t)
    elif scenario == "newdata":  # fit(x, y) on every rank: the same draw trains, different draws stop
        with comm.guard():
            t = Trainer(get_model("xor"), comm=comm, seed=1)
            x = np.random.default_rng(7).normal(size=(6, 2))
            t.fit(x, x[:, :1] ** 2, steps=2)
            x = np.random.default_rng(r).normal(size=(6, 2))   # a draw seeded by the rank
            t.fit(x, x[:, :1] ** 2, steps=2)
    elif scenario == "killed":
        with comm.guard():
            if r == 1:
                os._exit(3)
            comm.barrier()
''')


@pytest.fixture(scope="module")
def mpiexec():
    exe = Path(sys.executable).with_name("mpiexec")
    exe = str(exe) if exe.exists() else shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.fail("distributed tests need the mpi extra: pip install 'graphnn[mpi]' (mpi4py mpich)")
    assert exe, "mpiexec not found: pip install mpich"
    return exe


def launch(mpiexec, tmp_path, n, *args, timeout=90, env=None, worker=True):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [mpiexec, "-n", str(n), sys.executable] + ([str(script)] if worker else []) + list(args)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "GRAPHNN_MPI_TIMEOUT": "60", **(env or {})}
    start = time.monotonic()
    # own process group: if this test's bound is hit, mpiexec AND its ranks are killed
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} still ran after {timeout} s (a hang):\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - start


def single_process(name, steps=None, epochs=None, **kw):
    model = get_model(name, **kw.pop("model_kw", {}))
    t = Trainer(model, **kw)
    t.fit(steps=steps, epochs=epochs)
    moved = [p.name for p in model.params if not np.allclose(t.params[p], p.value)]
    assert moved, f"{name}: training must move the weights for this test to mean anything"
    return {p.name: v for p, v in t.params.items()}, t.history.losses


@pytest.mark.parametrize("n,backend", [(2, "numpy"), (3, "numpy"), (2, "cpu")])
def test_ranks_agree_with_single_process_training(mpiexec, tmp_path, n, backend):
    proc, _ = launch(mpiexec, tmp_path, n, "train", str(tmp_path), env={"BACKEND": backend}, timeout=240)
    assert proc.returncode == 0, proc.stderr
    expected = {
        "digits": single_process("digits-mlp", epochs=2, model_kw={"hidden": 16}, batch_size=37,
                                 optimizer="momentum", lr=0.05, seed=3, backend=backend),
        "xor": single_process("xor", steps=30, seed=1, backend=backend),
        "mazur": single_process("mazur", steps=5, backend=backend),
        # (before: every rank drew the noise of rows 0 … of its shard — not one process's run)
        "denoising": single_process("denoising-autoencoder", steps=4, model_kw={"hidden": 4}, batch_size=10,
                                    seed=2, backend=backend),
    }
    for name, (params, losses) in expected.items():
        ranks = [np.load(tmp_path / f"{name}-rank{r}.npz") for r in range(n)]
        for key, want in params.items():
            for r in range(1, n):  # bit for bit the same weights on every rank
                np.testing.assert_array_equal(ranks[r][key], ranks[0][key], err_msg=f"{name} {key} rank {r}")
            np.testing.assert_allclose(ranks[0][key], want, rtol=0, atol=1e-12, err_msg=f"{name} {key}")
        np.testing.assert_allclose(ranks[0]["losses"], losses, rtol=1e-12, err_msg=f"{name} losses")


def test_cli_distributed_prints_once_checkpoints_and_resumes(mpiexec, tmp_path):
    args = ["-m", "graphnn", "train", "digits-mlp", "--epochs", "1", "--batch-size", "50", "--optimizer", "adam",
            "--lr", "0.01", "--no-progress"]
    ckpt = str(tmp_path / "ck.npz")
    first, _ = launch(mpiexec, tmp_path, 2, *args, "--distributed", "--checkpoint", ckpt, worker=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("final loss") == 1, first.stdout  # rank 0 alone prints
    assert "data-parallel over 2 MPI ranks" in first.stdout
    second, _ = launch(mpiexec, tmp_path, 2, *args, "--distributed", "--resume", ckpt, worker=False)
    assert second.returncode == 0, second.stderr
    assert "(epoch 1)" in second.stdout
    two_epochs = [("2" if a == "1" and args[i - 1] == "--epochs" else a) for i, a in enumerate(args)]
    single = subprocess.run([sys.executable, *two_epochs], capture_output=True, text=True, timeout=60)
    assert single.returncode == 0, single.stderr

    def losses(text):
        return [float(v) for v in re.findall(r"epoch +\d+  CE (\S+)", text)]

    assert losses(first.stdout) + losses(second.stdout) == pytest.approx(losses(single.stdout), rel=1e-9)
    assert len(losses(single.stdout)) == 2


def test_a_rank_that_raises_stops_every_rank_with_a_message(mpiexec, tmp_path):
    proc, took = launch(mpiexec, tmp_path, 2, "raise", str(tmp_path))
    assert proc.returncode != 0
    err = proc.stderr
    assert "rank 1 of 2: ZeroDivisionError: division by zero (stopping every rank)" in err, err
    assert "rank 0 of 2: rank 1 failed: ZeroDivisionError: division by zero" in err, err
    assert took < 45  # the workers would wait 60 s (GRAPHNN_MPI_TIMEOUT) if this failed


def test_new_data_in_fit_must_agree_across_ranks(mpiexec, tmp_path):
    """fit(x, y) with data-parallel ranks was refused outright; now the same data trains and
    different data stop every rank saying so."""
    proc, took = launch(mpiexec, tmp_path, 2, "newdata", str(tmp_path))
    assert proc.returncode != 0
    assert "disagree on the training setup" in proc.stderr and "data: rank 0 has" in proc.stderr, proc.stderr
    assert "takes its data when the Trainer is built" not in proc.stderr
    assert took < 45


def test_an_uncaught_exception_does_not_hang_the_others(mpiexec, tmp_path):
    proc, took = launch(mpiexec, tmp_path, 2, "uncaught", str(tmp_path))
    assert proc.returncode != 0
    assert "RuntimeError: rank one gives up" in proc.stderr
    assert "rank 0 of 2: rank 1 failed: RuntimeError: rank one gives up" in proc.stderr, proc.stderr
    assert took < 45  # the workers would wait 60 s (GRAPHNN_MPI_TIMEOUT) if this failed


def test_graph_hash_mismatch_is_reported_on_every_rank(mpiexec, tmp_path):
    proc, took = launch(mpiexec, tmp_path, 2, "mismatch", str(tmp_path))
    assert proc.returncode != 0
    for r in (0, 1):
        assert f"rank {r} of 2: the ranks disagree on the graph structure (structural hash)" in proc.stderr, \
            proc.stderr
    assert "graph: rank 0 has" in proc.stderr
    assert took < 45  # the workers would wait 60 s (GRAPHNN_MPI_TIMEOUT) if this failed


def test_a_silent_rank_trips_the_timeout(mpiexec, tmp_path):
    proc, took = launch(mpiexec, tmp_path, 2, "hang", str(tmp_path), env={"GRAPHNN_MPI_TIMEOUT": "2"})
    assert proc.returncode != 0
    assert "rank 0 of 2: no answer from the other ranks for 2 s in barrier" in proc.stderr, proc.stderr
    assert took < 45  # the workers would wait 60 s (GRAPHNN_MPI_TIMEOUT) if this failed


def test_a_rank_killed_outright_ends_the_job(mpiexec, tmp_path):
    proc, took = launch(mpiexec, tmp_path, 2, "killed", str(tmp_path))
    assert proc.returncode != 0
    assert took < 45  # the workers would wait 60 s (GRAPHNN_MPI_TIMEOUT) if this failed


def test_a_run_that_crashed_resumes_from_its_checkpoint(mpiexec, tmp_path):
    crashed, took = launch(mpiexec, tmp_path, 2, "crash", str(tmp_path))
    assert crashed.returncode != 0 and "rank 1 failed: MemoryError: simulated crash" in crashed.stderr
    assert took < 45
    resumed, _ = launch(mpiexec, tmp_path, 2, "resume", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    params, losses = single_process("digits-mlp", epochs=2, model_kw={"hidden": 16}, batch_size=37,
                                    optimizer="adam", lr=0.01, seed=5)
    ranks = [np.load(tmp_path / f"resumed-rank{r}.npz") for r in range(2)]
    for key, want in params.items():  # as if it had never stopped: same batches, same Adam step
        np.testing.assert_array_equal(ranks[1][key], ranks[0][key])
        np.testing.assert_allclose(ranks[0][key], want, rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(ranks[0]["losses"], losses[1:], rtol=1e-12)


def test_w2_benchmark_script_runs_and_reports_the_allreduce_share(mpiexec, tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "mpi_w2.py"
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(script), "--backend", "numpy", "--n", "640", "--epochs", "1",
                           "--wait-quiet", "0", "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "ranks x threads" in proc.stdout and "share" in proc.stdout
    rows = json.loads(out.read_text())
    assert [(r["ranks"], r["threads"]) for r in rows] == [(1, 1), (1, 2), (2, 1)]
    two = rows[2]
    assert two["allreduce_s_per_epoch"] > 0 and 0 < two["allreduce_share"] < 1
    assert two["gradient_mb"] == pytest.approx((784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10) * 4 / 1e6)


@pytest.mark.parametrize("name,length,line", [
    ("autoencoder", "--steps", "final loss"), ("denoising-autoencoder", "--steps", "final loss"),
    ("transformer", "--steps", "validation loss"), ("diffusion", "--epochs", "epoch"),
    ("contrastive", "--epochs", "zero-shot"), ("stacked-autoencoder", "--epochs", "stage"), ("gan", "--epochs", "epoch")])
def test_cli_trains_more_runners_data_parallel(mpiexec, tmp_path, name, length, line):
    """These runners took no --distributed (refused in one line), and fit() refused new data
    (diffusion and contrastive draw it every epoch); now the ranks' run is the single
    process's, the denoising autoencoder's corruption included, and rank 0 alone writes."""
    args = ["-m", "graphnn", "train", name, length, "2" if length == "--steps" else "1", "--no-progress"]
    ranks, _ = launch(mpiexec, tmp_path, 2, *args, "--distributed", worker=False, timeout=180)
    assert ranks.returncode == 0, ranks.stderr
    assert "data-parallel over 2 MPI ranks" in ranks.stdout
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".npz"))
    assert written == {"transformer": ["transformer.npz"], "diffusion": ["diffusion.png"],
                       "gan": ["gan.png"]}.get(name, []), written
    single = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert single.returncode == 0, single.stderr

    def figure(text):
        return [ln for ln in text.splitlines() if ln.startswith(line)]

    assert figure(ranks.stdout) == figure(single.stdout) and figure(single.stdout), (ranks.stdout, single.stdout)


def test_more_ranks_than_rows_with_the_background_compile_on(mpiexec, tmp_path):
    """--batch-size 1 on 2 ranks: rank 1 never has rows. With the background compile on (the
    CLI's default for cpu; conftest turns it off), rank 0 alone voted on the switch, and its
    vote met rank 1's gradient all-reduce. Now every rank votes; the run is one process's."""
    args = ["-m", "graphnn", "train", "xor", "--backend", "cpu", "--batch-size", "1", "--epochs", "40",
            "--no-progress", "--optimizer", "momentum", "--lr", "0.1"]
    env = {"GRAPHNN_BACKGROUND_COMPILE": "1", "GRAPHNN_MPI_TIMEOUT": "30"}
    ranks, _ = launch(mpiexec, tmp_path, 2, *args, "--distributed", worker=False, timeout=120, env=env)
    assert ranks.returncode == 0, ranks.stderr
    single = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert single.returncode == 0, single.stderr

    def final(text):
        return [float(v) for v in re.findall(r"final loss: (\S+)", text)]

    assert final(ranks.stdout) == pytest.approx(final(single.stdout), rel=1e-9) and final(single.stdout)
