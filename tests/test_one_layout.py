"""A shared loop nest compiles once, not once per operand layout (codegen/nest_sharing.py
`NestCensus.one_layout`, the `strided` intrinsic).

Numba compiles a function per argument type, and an array's layout is part of its type. The
attention products share one helper between the forward (A @ V, A a buffer) and the backward
(dS @ K, K a permuted view): it compiled twice, three such helpers in the attention model
(~0.5 s of its 6.1 s). Where any call passes a strided array, the others pass theirs as
``strided(a)``: the same array, typed as any layout.
"""
import re

import numpy as np
import pytest
from test_recurrent_codegen import _compare

import graphnn as gn
from graphnn.model import Model
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer

codegen = pytest.importorskip("codegen")
from codegen import CpuBackend  # noqa: E402

TRAINED = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]
_CALL = re.compile(r"\b(loops_\w+)\(([^()]*(?:\([^()]*\)[^()]*)*)\)")


def _heads_model():
    """Two-head self-attention over T = 3 steps of width 6 (head size 3 = T: the forward's
    A @ V and the backward's dS @ K are products of one shape)."""
    rng = np.random.default_rng(0)
    x, t = gn.input("x", (None, 3, 6)), gn.input("t", (None, 2, 3, 3))

    def heads(h):   # (B, 3, 6) → (B, 2 heads, 3, 3)
        return gn.transpose(gn.reshape(h, (None, 3, 2, 3)), (0, 2, 1, 3))

    q, k, v = (heads(x @ gn.parameter(f"W{n}", rng.normal(size=(6, 6)))) for n in "QKV")
    y = gn.softmax(q @ gn.transpose(k, (0, 1, 3, 2))) @ v
    return Model("heads", gn.losses.mse(y, t), y, (x, t))


@pytest.mark.usefixtures("isolated_cache")
def test_a_users_attention_compiles_each_shared_nest_once_and_trains_as_the_reference():
    rng = np.random.default_rng(1)
    model = _heads_model()
    _compare(model, {"x": rng.normal(size=(5, 3, 6)), "t": rng.normal(size=(5, 2, 3, 3))})   # 1e-10
    backend = CpuBackend(model, make_optimizer("sgd", lr=0.05), "float64")
    backend.train_step({"x": rng.normal(size=(4, 3, 6)), "t": rng.normal(size=(4, 2, 3, 3))})
    compiled = {name: len(f.overloads) for name, f in vars(backend.module).items()
                if name.startswith("loops_") and hasattr(f, "overloads") and f.overloads}
    assert compiled and all(n == 1 for n in compiled.values()), compiled
    assert "strided(" in backend.source.split("def train_epoch")[1]


def _calls_by_position(function_source):
    """helper -> argument position -> the argument texts of every call."""
    out = {}
    for name, args in _CALL.findall(function_source):
        for p, a in enumerate(a.strip() for a in args.split(",")):
            out.setdefault(name, {}).setdefault(p, []).append(a)
    return out


@pytest.mark.parametrize("name", TRAINED)
def test_no_helper_of_a_built_in_model_is_called_with_a_permuted_view_and_a_plain_array(name):
    """Read off train_epoch's text (nothing compiles): where a call passes a view made by
    ``permuted`` (always strided), every call passes a strided array at that position."""
    source = codegen.source(get_model(name), dtype="float32")
    epoch = source.split("def train_epoch")[1].split("\n\n\n")[0]
    permuted = set(re.findall(r"^\s*(\w+) = permuted\(", epoch, re.M))
    for helper, positions in _calls_by_position(epoch).items():
        for p, args in positions.items():
            if any(a in permuted for a in args):
                plain = [a for a in args if a not in permuted and not a.startswith("strided(")
                         and not re.search(rf"^\s*{re.escape(a)} = \w+\[", epoch, re.M)]   # a strided slice
                assert not plain, f"{name}: {helper} argument {p}: {plain} beside permuted views"
