"""The op catalog. Every op is defined once (see base.Op); these are the builders.

The op classes are exported too: other layers key what they attach to an op (a lowering,
a derivation rule, a drawing label) by its class, in an `OpTable`.
"""
from .base import Op, OpTable, apply, get_op, registered_ops
from .elementwise import (ACTIVATIONS, Activation, Map, X, Y, absolute, activation, activation_of, add, div, elementwise,
                          exp, fmap, gelu, identity, leaky_relu, log, mul, neg, power, prelu, relu, sigmoid,
                          sign, silu, softplus, sqrt, step, sub, tanh, unbroadcast)
from .leaves import INITIALIZERS, Constant, Input, Parameter, constant, input, parameter
from .nn import (LogSoftmax, Softmax, SoftmaxCrossEntropy, log_softmax, output_bounds, softmax,
                 softmax_cross_entropy)
from .structure import (Concat, Count, Expand, Index, IndexGrad, Linear, MatMul, Max, Reshape, StopGradient,
                        Sum, Transpose, concat, count, expand, flatten, index, linear, matmul, max, mean,
                        reshape, stop_gradient, sum, transpose)
from .conv import (AvgPool2D, AvgPool2DGrad, Conv2D, Conv2DGradBias, Conv2DGradFilter, Conv2DGradInput,
                   MaxPool2D, MaxPool2DGather, MaxPool2DGrad, avg_pool2d, conv2d, max_pool2d)
from .dropout import FIRST_ROW, STEP, TRAINING, Dropout, GaussianNoise, dropout, gaussian_noise, masking_noise
from .attention import multi_head_attention, scaled_dot_product_attention
from .layers import dense
from .norm import Standardize, StandardizeGrad, layer_norm, standardize
from .embedding import Embedding, EmbeddingGrad, PositionalEncoding, embedding, positional_encoding
from .sparse_ce import (RowNumbers, SparseSoftmaxCEGrad, SparseSoftmaxCrossEntropy, row_numbers,
                        sparse_softmax_cross_entropy)

#: the ops whose output is a neuron's net input (Σ w x + b): where derivations name a δ
#: and drawings draw a layer
NET_OPS = (Linear, MatMul)
