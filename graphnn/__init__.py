"""graphnn: declare a network once as a symbolic graph; derive it, draw it, train it compiled.

The core: the graph IR (`Node`, `Graph`), the op catalog (`graphnn.ops`, re-exported
here), reverse-mode autodiff with its record (`grad`), the NumPy reference evaluator
(`evaluate`) and gradient checking (`check_grad`). On top of it: derivations (`derive`),
drawings (`draw`), recurrence (`scan`, `bptt_terms`), training (`Trainer`, `fit`; the
compiled backends live in the `codegen` package) and the built-in models (`models`).
"""
from . import losses, models, ops
from .autodiff import Adjoint, GradRecord, Gradients, Link, Term, grad
from .errors import (FeedError, GradientError, GraphnnError, NonFiniteError, ShapeError,
                     UnknownNameError)
from .evaluate import Evaluator, evaluate
from .gradcheck import GradCheckResult, check_grad
from .graph import BATCH, Graph, Node, element_name
from .model import Model
from .ops import (ACTIVATIONS, absolute, activation, add, avg_pool2d, concat, constant, conv2d, div,
                  dropout, elementwise, exp, flatten, gaussian_noise, identity, index, input, leaky_relu,
                  linear, log, log_softmax, masking_noise, matmul, max, max_pool2d, mean, mul,
                  multi_head_attention, neg, parameter, power, prelu, relu, reshape,
                  scaled_dot_product_attention, sigmoid, sign, silu, softmax, softmax_cross_entropy,
                  softplus, sqrt, step, stop_gradient, sub, sum, tanh, transpose)
from .recurrent import BPTTTerms, Scan, bptt_terms, scan
from .train import Trainer, fit
# `derive` and `draw` are both subpackages and their main functions; the functions win here
# (``from graphnn.derive import …`` still reaches the subpackage).
from .derive import Derivation, derive  # noqa: E402  (after the core it builds on)
from .draw import draw  # noqa: E402

__version__ = "0.1.0"
