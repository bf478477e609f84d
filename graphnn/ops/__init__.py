"""The op catalog. Every op is defined once (see base.Op); these are the builders."""
from .base import Op, apply, get_op, registered_ops
from .elementwise import (ACTIVATIONS, Activation, X, Y, absolute, activation, add, div, elementwise,
                          exp, fmap, identity, leaky_relu, log, mul, neg, power, prelu, relu, sigmoid,
                          sign, silu, softplus, sqrt, step, sub, tanh, unbroadcast)
from .leaves import INITIALIZERS, constant, input, parameter
from .nn import log_softmax, softmax, softmax_cross_entropy
from .structure import (concat, count, expand, flatten, index, linear, matmul, max, mean, reshape,
                        stop_gradient, sum, transpose)
from .conv import avg_pool2d, conv2d, max_pool2d
from .dropout import dropout, gaussian_noise, masking_noise
from .attention import multi_head_attention, scaled_dot_product_attention
