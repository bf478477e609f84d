"""graphnn: declare a network once as a symbolic graph; derive it, draw it, train it compiled.

The core: the graph IR (`Node`, `Graph`), the op catalog (`graphnn.ops`, re-exported
here), reverse-mode autodiff with its record (`grad`), the NumPy reference evaluator
(`evaluate`) and gradient checking (`check_grad`).
"""
from . import losses, ops
from .autodiff import Adjoint, GradRecord, Gradients, Link, Term, grad
from .errors import (FeedError, GradientError, GraphnnError, NonFiniteError, ShapeError,
                     UnknownNameError)
from .evaluate import Evaluator, evaluate
from .gradcheck import GradCheckResult, check_grad
from .graph import BATCH, Graph, Node, element_name
from .draw import draw
from .ops import (ACTIVATIONS, absolute, activation, add, concat, constant, div, elementwise, exp,
                  flatten, identity, index, input, leaky_relu, linear, log, log_softmax, matmul, max, mean,
                  mul, neg, parameter, power, prelu, relu, reshape, sigmoid, sign, silu, softmax,
                  softmax_cross_entropy, softplus, sqrt, step, stop_gradient, sub, sum, tanh,
                  transpose)
from .recurrent import BPTTTerms, Scan, bptt_terms, scan

__version__ = "0.1.0"
from .ops import (avg_pool2d, conv2d, dropout, gaussian_noise, masking_noise, max_pool2d,  # noqa: E402
                  multi_head_attention, scaled_dot_product_attention)
from .derive import Derivation, derive  # noqa: E402
