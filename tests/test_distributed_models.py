"""Data-parallel training of every built-in model a runner trains by gradient descent: two
ranks as two threads of this process (a communicator over a barrier), each model's runner
given the communicator as `graphnn train MODEL --distributed` gives it, against the same
runner in one process. (tests/test_distributed_mpi.py runs some of them on real MPI ranks.)
"""
from __future__ import annotations

import contextlib
import re
import threading

import numpy as np
import pytest

from graphnn.models import available, get_model
from graphnn.training.options import TrainOptions
from graphnn.training.tasks import run, runner_of

#: runners that count epochs, each a fresh draw (they refuse --steps)
BY_EPOCHS = {"gan", "diffusion", "contrastive", "stacked-autoencoder"}
#: lines that differ between runs for reasons other than the training: timings, file renames
VOLATILE = re.compile(r"trained in|kept as|saved to")


class ThreadComm:
    """Rank ``rank`` of ``size`` threads: every collective exchanges through ``shared``."""

    def __init__(self, rank, size, shared):
        self.rank, self.size, self._shared = rank, size, shared

    def _exchange(self, value) -> list:
        slots, barrier = self._shared["slots"], self._shared["barrier"]
        slots[self.rank] = value
        barrier.wait()
        out = list(slots)
        barrier.wait()   # nobody writes the next exchange before everyone has read this one
        return out

    def allreduce_sum_inplace(self, buf):
        buf[...] = np.sum(self._exchange(np.array(buf, copy=True)), axis=0)

    def allreduce_mean_inplace(self, buf):
        buf[...] = np.mean(self._exchange(np.array(buf, copy=True)), axis=0)

    def allreduce_sum(self, value):
        return sum(self._exchange(value))

    def bcast(self, obj, root=0):
        return self._exchange(obj)[root]

    def bcast_inplace(self, buf, root=0):
        buf[...] = self._exchange(np.array(buf, copy=True))[root]

    def allgather(self, obj):
        return self._exchange(obj)

    def barrier(self):
        self._exchange(None)

    @contextlib.contextmanager
    def guard(self, prefix="graphnn"):
        yield


def _options(name, comm, lines):
    length = {"epochs": 1} if name in BY_EPOCHS else {"steps": 2}
    return TrainOptions(**length, comm=comm, report=lines.append, seed=1)


def _trained(name, comm, lines):
    model = get_model(name)
    return run(model, _options(name, comm, lines))


def _shown(lines) -> list:
    return [ln for ln in lines if not VOLATILE.search(ln)]


GRADIENT_TRAINED = [n for n in sorted(available()) if "comm" in runner_of(get_model(n)).honours]


def test_every_gradient_trained_model_takes_the_communicator():
    """Only the rules without a gradient to share refuse --distributed."""
    refused = sorted(set(available()) - set(GRADIENT_TRAINED))
    assert refused == ["hopfield", "perceptron-and", "perceptron-or"]


@pytest.mark.parametrize("name", GRADIENT_TRAINED)
def test_two_ranks_report_what_one_process_reports(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # default outputs (transformer.npz, gan.png) land here
    shared = {"slots": [None, None], "barrier": threading.Barrier(2, timeout=120)}
    reports, errors = [[], []], []

    def rank(r):
        try:
            _trained(name, ThreadComm(r, 2, shared), reports[r])
        except BaseException as e:   # noqa: BLE001  (reported below; the barrier breaks for the other)
            errors.append(e)
            shared["barrier"].abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[0]
    written = sorted(p.name for p in tmp_path.iterdir())
    single = []
    _trained(name, None, single)
    assert _shown(reports[0]) == _shown(single), name
    other = _shown(reports[1])   # rank 1 logs no rows (rank 0 alone does); what it says is the same
    assert other and [ln for ln in _shown(single) if ln in other] == other, name
    assert len(written) == len(set(written)) and not any(".1." in w for w in written), written
