"""Hopfield nets: Hebbian storage, the course's 3-neuron example, recall, energy."""
import numpy as np
import pytest

from graphnn.cli import main
from graphnn.models.hopfield import hebbian, hopfield_model, recall
from graphnn.models import get_model
from graphnn.training import TASKS


def test_hebbian_weights_are_the_courses_example():
    W = hebbian([[-1, 1, -1]])
    np.testing.assert_array_equal(W, [[0, -1, 1], [-1, 0, -1], [1, -1, 0]])
    assert np.array_equal(W, W.T) and not np.any(np.diag(W))
    with pytest.raises(ValueError, match="-1 and \\+1"):
        hebbian([[1, 0, 1]])


def test_synchronous_step_reproduces_the_course():
    m = get_model("hopfield")
    r = recall(m, [1, 1, -1], mode="sync")
    # net_1 = -2 -> -1, net_2 = 0 -> +1 (net >= 0 -> +1), net_3 = 0 -> +1: V_1 = (-1, 1, 1)
    np.testing.assert_array_equal(r.nets[0], [-2, 0, 0])
    np.testing.assert_array_equal(r.states[1], [-1, 1, 1])
    assert r.cycle and not r.converged          # synchronous updates oscillate here


def test_asynchronous_recall_lowers_the_energy_to_the_stored_pattern():
    m = get_model("hopfield")
    r = recall(m, [1, 1, -1], mode="async")
    assert r.converged
    np.testing.assert_array_equal(r.final, [-1, 1, -1])
    assert r.energies[0] == 1.0 and r.energies[-1] == -3.0
    assert all(b <= a for a, b in zip(r.energies, r.energies[1:]))


def test_larger_net_recalls_patterns_from_noisy_probes():
    rng = np.random.default_rng(1)
    patterns = rng.choice([-1.0, 1.0], size=(3, 40))
    m = hopfield_model(patterns, patterns[:1])
    for p in patterns:
        probe = p.copy()
        flip = rng.choice(40, size=5, replace=False)
        probe[flip] *= -1
        r = recall(m, probe, mode="async", max_steps=10)
        assert r.converged
        np.testing.assert_array_equal(r.final, p)
        assert all(b <= a + 1e-12 for a, b in zip(r.energies, r.energies[1:]))
        # energy E = −½ vᵀWv, computed by the graph, equals the formula
        W = hebbian(patterns)
        assert r.energies[-1] == pytest.approx(-0.5 * p @ W @ p)


def test_train_hopfield_cli_stores_and_recalls(capsys):
    assert "hopfield" in TASKS
    assert main(["train", "hopfield"]) == 0
    out = capsys.readouterr().out
    assert "W = Σ p pᵀ" in out and "synchronous recall" in out and "asynchronous recall" in out
    assert "net = (-2, 0, 0) -> v = (-1, +1, +1)" in out
    assert "converged; final state (-1, +1, -1) = a stored pattern" in out


def test_recall_rejects_bad_probes():
    m = get_model("hopfield")
    with pytest.raises(ValueError, match="3"):
        recall(m, [1, 1], mode="async")
    with pytest.raises(ValueError, match="sync"):
        recall(m, [1, 1, 1], mode="parallel")
