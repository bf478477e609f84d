"""The recurrent models: listed, gradients checked, and they learn their tasks."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.models import get_model
from graphnn.models.recurrent import recall_task
from graphnn.training import Trainer


def test_models_command_lists_the_recurrent_models(capsys):
    assert main(["models"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"rnn-scalar", "rnn", "lstm", "hopfield"} <= listed


@pytest.mark.parametrize("mode", ["looped", "unrolled"])
def test_lstm_gradients_pass_check_grad(mode):
    m = get_model("lstm", steps=3, hidden=3, symbols=2, mode=mode)
    feeds = {k: v[:2] for k, v in m.data.train.items()}
    gn.check_grad(m.loss, m.params, feeds)


def test_lstm_cell_is_the_courses():
    m = get_model("lstm", steps=2, hidden=3, mode="unrolled")
    names = {n.name for n in m.graph.nodes if n.name}
    # input unit g, the three sigmoid gates, the state's self-loop c, the output h
    assert {"g_1", "i_1", "f_1", "o_1", "c_1", "h_1", "c_2", "h_2"} <= names
    f1 = m.find("f_1")
    assert f1.attrs["fn"] == "sigmoid" and m.find("g_1").attrs["fn"] == "tanh"
    assert m.find("b_f").value.min() > 0     # forget gate biased open: remember by default


def test_recall_task_is_deterministic_and_needs_the_first_step():
    xs, ts = recall_task(50, 6, seed=3)
    xs2, ts2 = recall_task(50, 6, seed=3)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(np.argmax(ts, 1), np.argmax(xs[:, 0], 1))
    assert xs.shape == (50, 6, 8) and np.all(np.argmax(xs[:, 1:], 2) >= 4)


def test_elman_rnn_learns_the_short_task():
    m = get_model("rnn")
    tr = Trainer(m)
    tr.fit(epochs=5)
    assert tr.accuracy("test") >= 0.95


def test_lstm_learns_the_long_task_the_elman_net_does_not():
    m = get_model("lstm")
    assert m.extras["steps"] == 20
    tr = Trainer(m)
    tr.fit(epochs=3)
    lstm_accuracy = tr.accuracy("test")
    elman = Trainer(get_model("rnn", steps=20))     # same task, same budget and optimizer
    elman.fit(epochs=3)
    elman_accuracy = elman.accuracy("test")
    print(f"recall over 20 steps: LSTM {lstm_accuracy:.3f}, Elman {elman_accuracy:.3f}")
    assert lstm_accuracy >= 0.9 and elman_accuracy < 0.75


def test_train_cli_runs_a_recurrent_model(capsys):
    assert main(["train", "rnn-scalar", "--steps", "30"]) == 0
    out = capsys.readouterr().out
    first = float(out.split("step")[1].split("E")[1].split()[0])
    assert "final loss" in out and float(out.rsplit("final loss:", 1)[1]) < first


def test_train_cli_truncate_rebuilds_the_model_with_truncated_bptt(capsys, monkeypatch):
    import graphnn.training.tasks
    trained = []

    class Spy(graphnn.training.tasks.Trainer):
        def __init__(self, model, **kw):
            trained.append(model)
            super().__init__(model, **kw)

    monkeypatch.setattr(graphnn.training.tasks, "Trainer", Spy)
    assert main(["train", "rnn", "--truncate", "2", "--steps", "3", "--no-progress"]) == 0
    assert "final loss" in capsys.readouterr().out
    assert trained[0].extras["scan"].truncate == 2          # the option reached the builder
    assert get_model("rnn").extras["scan"].truncate is None  # and only for that command
    assert main(["train", "mazur", "--truncate", "2"]) == 2
    assert "model 'mazur' has no option --truncate (it applies to: rnn, lstm)" in capsys.readouterr().err
    assert main(["train", "rnn", "--truncate", "0"]) == 2
    assert "--truncate must be at least 1, got 0" in capsys.readouterr().err
