"""Less to compile (issue 18): the generated module has no construct Numba compiles at a
high price per place — array expressions (a broadcasting kernel and its error-message
formatting each), np.transpose and np.dot (an overload per layout combination each),
.reshape (a C helper's stride search, ~17 ms of compile each), a[:nb] (~7 ms) — and a small MLP's tiny products share
one helper per transposition instead of one per shape. Lowering and printing only: nothing
here compiles."""
import re

import numpy as np
import pytest

import graphnn as gn
from codegen import source
from codegen.printer import INTRINSICS
from graphnn.data import Dataset
from graphnn.model import Model
from graphnn.models import available, get_model

TRAINED = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]


def _source(name):
    return source(get_model(name))


@pytest.mark.parametrize("name", TRAINED)
def test_no_array_expressions_or_np_transpose(name):
    src = _source(name).replace(INTRINSICS, "")     # the intrinsics' own text names what they replace
    assert "np.transpose(" not in src
    assert "np.dot(" not in src, f"{name}: np.dot compiles an overload per layout combination; call gemm"
    assert ".reshape(" not in src, f"{name}: Numba's reshape costs ~17 ms of compile per place; call view"
    assert "[:nb]" not in src, f"{name}: Numba's slicing costs ~7 ms of compile per place; call rows"
    offenders = [ln.strip() for ln in src.splitlines() if "[...]" in ln and "=" in ln.split("#")[0]
                 and not ln.strip().startswith(('"""', "#"))]
    assert not offenders, f"{name}: array expressions in the generated code: {offenders[:3]}"


def small_mlp():
    rng = np.random.default_rng(0)
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    h = x
    for i, (a, b) in enumerate([(2, 16), (16, 16), (16, 1)], 1):
        h = gn.tanh(gn.linear(h, gn.parameter(f"W{i}", rng.normal(0, 0.5, (a, b))), gn.parameter(f"b{i}", np.zeros(b))))
    data = Dataset({"x": rng.normal(size=(8, 2)), "t": rng.normal(size=(8, 1))})
    return Model("mlp-2-16-16-1", gn.losses.mse(h, t), h, (x, t), data)


def test_small_mlp_tiny_products_share_one_helper_per_transposition():
    """One size-generic product per transposition, compiled once per install and imported
    (codegen/generic_kernels.py), none defined (compiled) in the module itself."""
    text = source(small_mlp())
    helpers = set(re.findall(r"^from codegen\.generic_kernels import (matmul_\w+)", text, re.M))
    assert helpers and helpers <= {"matmul_nn", "matmul_nt", "matmul_tn", "matmul_tt"}, helpers
    assert not re.findall(r"^def (matmul_\w+)\(", text, re.M)


def test_recurrent_step_keeps_literal_sizes():
    """The step runs T times a batch: there the size-specialised products pay."""
    src = _source("lstm")
    calls = re.findall(r"^\s+(matmul_\w+)\(", src.split("def cell_grad_")[1].split("@njit")[0], re.M)
    assert calls and all(re.fullmatch(r"matmul_[nt]{2}_\w+x\d+", c) for c in calls), calls
