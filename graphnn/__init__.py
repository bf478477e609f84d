"""graphnn: declare a network once as a symbolic graph; derive it, draw it, train it compiled.

The vocabulary a user needs, in one namespace:

- declare: `input`, `parameter`, `constant`, the activations and structural ops (re-exported
  from `graphnn.ops`), layers (`dense`, `multi_head_attention`), `losses`, `scan` for
  recurrences, `Model`, `Dataset`;
- compute: `grad` (gradient nodes in the same graph, with a record), `evaluate` (the NumPy
  reference), `check_grad`, `bptt_terms`;
- use: `Trainer` / `fit` (training, `graphnn.training`: arrays in, `predict`, `evaluate`),
  learning-rate `schedules`, callbacks (`EarlyStopping`, `ModelCheckpoint`, `LambdaCallback`),
  `derive` (derivations), `draw` (pictures), `lecture` (the interactive lecture page),
  `models` (the built-in nets).

``import graphnn`` is light: `derive`, `draw` and `lecture` load on first use, and the Numba code
generator (the `codegen` package) only when a compiled backend is asked for.
``graphnn.derive`` and ``graphnn.draw`` are both the subpackage and its function:
``graphnn.derive(model, "w5")`` calls it, ``from graphnn.derive import Derivation`` imports.
"""
import importlib

from . import losses, models, ops, schedules
from .autodiff import grad
from .bptt import bptt_terms
from .data import Dataset
from .errors import FeedError, GradientError, GraphnnError, NonFiniteError, ShapeError, UnknownNameError
from .evaluate import evaluate
from .gradcheck import check_grad
from .graph import Graph, Node
from .model import Model
from .ops import (absolute, activation, add, avg_pool2d, concat, constant, conv2d, dense, div, dropout, elementwise,
                  embedding, exp, flatten, gaussian_noise, gelu, identity, index, input, layer_norm, leaky_relu,
                  linear, log, log_softmax, masking_noise, matmul, max, max_pool2d, mean, mul, multi_head_attention,
                  neg, parameter, positional_encoding, power, prelu, relu, reshape, row_numbers,
                  scaled_dot_product_attention, sigmoid, sign, silu, softmax, softmax_cross_entropy, softplus,
                  sparse_softmax_cross_entropy, sqrt, step, stop_gradient, sub, sum, tanh, transpose)
from .recurrent import scan
from .training import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint, Trainer, fit

__version__ = "0.1.0"

#: names that load their module on first use: name -> (module, attribute or None for the module)
_LAZY = {"derive": ("graphnn.derive", None), "draw": ("graphnn.draw", None),
         "Derivation": ("graphnn.derive", "Derivation"), "lecture": ("graphnn.lecture", None)}


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'graphnn' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    # declare
    "input", "parameter", "constant", "Model", "Dataset", "losses", "scan",
    "absolute", "activation", "add", "avg_pool2d", "concat", "conv2d", "dense", "div", "dropout", "elementwise",
    "embedding", "exp", "flatten", "gaussian_noise", "gelu", "identity", "index", "layer_norm", "leaky_relu", "linear",
    "log", "log_softmax", "masking_noise", "matmul", "max", "max_pool2d", "mean", "mul", "multi_head_attention", "neg",
    "positional_encoding", "power", "prelu", "relu", "reshape", "row_numbers", "scaled_dot_product_attention",
    "sigmoid", "sign", "silu", "softmax", "softmax_cross_entropy", "softplus", "sparse_softmax_cross_entropy", "sqrt",
    "step", "stop_gradient", "sub", "sum", "tanh", "transpose",
    # compute
    "grad", "evaluate", "check_grad", "bptt_terms", "Graph", "Node",
    # use
    "Trainer", "fit", "schedules", "Callback", "EarlyStopping", "LambdaCallback", "ModelCheckpoint",
    "derive", "Derivation", "draw", "lecture", "models", "ops",
    # errors
    "GraphnnError", "ShapeError", "FeedError", "GradientError", "NonFiniteError", "UnknownNameError",
]
