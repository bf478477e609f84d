"""MPI (issue 17): ranks compare their options at the start, a checkpoint is read on rank 0 and
broadcast, and a failing run ends every rank with one message (never an UnboundLocalError)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from test_distributed_mpi import mpiexec  # noqa: F401  (the fixture)

GRAPHNN = ["-m", "graphnn", "train", "xor", "--distributed", "--no-progress"]


def _run(cmd, tmp_path, timeout=90):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "GRAPHNN_MPI_TIMEOUT": "60"}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{' '.join(cmd)} hung")
    return proc.returncode, out, err, time.monotonic() - start


@pytest.mark.parametrize("rank0,rank1,what", [
    (["--steps", "3"], ["--steps", "4"], "--steps: rank 0 has 3, rank 1 has 4"),
    (["--steps", "3", "--resume", "ck.npz"], ["--steps", "3"], "--resume: rank 0 has ck.npz, rank 1 has None"),
])
def test_ranks_given_different_options_stop_at_once_saying_which(mpiexec, tmp_path, rank0, rank1, what):  # noqa: F811
    py = sys.executable
    cmd = [mpiexec, "-n", "1", py, *GRAPHNN, *rank0, ":", "-n", "1", py, *GRAPHNN, *rank1]
    rc, out, err, took = _run(cmd, tmp_path)
    assert rc != 0 and took < 45
    for r in (0, 1):
        assert f"rank {r} of 2: the ranks disagree on the training setup" in err, err
    assert what in err and "UnboundLocalError" not in err and "Traceback" not in err


WORKER = textwrap.dedent('''
    import sys
    import numpy as np
    from graphnn.models import get_model
    from graphnn.training import Trainer
    from graphnn.training.distributed import world

    comm = world()
    ckpt, out = sys.argv[1], sys.argv[2]
    with comm.guard():
        t = Trainer(get_model("xor"), comm=comm, optimizer="adam", lr=0.1, seed=1)
        # the checkpoint is read on rank 0 only: the path other ranks give does not matter
        t.load(ckpt if comm.rank == 0 else "/nonexistent/on/this/rank.npz")
        t.fit(steps=3, progress=False)
        np.savez(f"{out}/rank{comm.rank}.npz", **{p.name: v for p, v in t.params.items()})
        comm.barrier()
''')


def test_a_checkpoint_is_read_on_rank_0_and_broadcast(mpiexec, tmp_path):  # noqa: F811
    from graphnn.models import get_model
    from graphnn.training import Trainer

    first = Trainer(get_model("xor"), optimizer="adam", lr=0.1, seed=1)
    first.fit(steps=4, progress=False)
    ckpt = first.save(tmp_path / "ck")
    first.fit(steps=3, progress=False)            # what a resumed run must reach
    (tmp_path / "worker.py").write_text(WORKER)
    rc, out, err, _ = _run([mpiexec, "-n", "2", sys.executable, str(tmp_path / "worker.py"), ckpt, str(tmp_path)],
                           tmp_path)
    assert rc == 0, err
    for r in (0, 1):
        got = np.load(tmp_path / f"rank{r}.npz")
        for p, v in first.params.items():
            np.testing.assert_allclose(got[p.name], v, rtol=0, atol=1e-13, err_msg=f"rank {r} {p.name}")
