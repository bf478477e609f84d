"""The course's modern nets: a LeNet-style CNN, autoencoders (tied, denoising, stacked), attention.

All on the embedded 8×8 digits. The autoencoders' task is 'reconstruction' and the stacked
one's 'stacked-autoencoder': `graphnn train` runs them through the trainers registered at
the end of this module (they report reconstruction error against predicting the mean
image, and pretraining against no pretraining).
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..data import Dataset, digits_dataset, load_digits, split
from ..model import Model
from ..ops import flatten, input, linear, mean, parameter, relu, sigmoid, tanh, transpose
from ..ops.attention import multi_head_attention
from ..ops.conv import conv2d, max_pool2d
from ..ops.dropout import dropout, gaussian_noise, masking_noise
from . import register


def conv_filters(name, shape, rng):
    """He-normal filters (F, C, kh, kw): fan-in C·kh·kw, for ReLU layers."""
    fan_in = int(np.prod(shape[1:]))
    return parameter(name, rng.normal(0.0, np.sqrt(2.0 / fan_in), shape))


@register("cnn", "LeNet-style CNN on 8x8 digits: conv 3x3x16, pool, conv 3x3x32, pool, dense 128-64-10")
def cnn(seed: int = 0, filters=(16, 32), hidden: int = 64, dropout_rate: float = 0.0):
    """conv(3×3×16, same)+ReLU → 2×2 max-pool → conv(3×3×32, same)+ReLU → 2×2 max-pool →
    dense 128→64 ReLU (→ dropout) → dense 64→10, softmax cross-entropy (``filters``, ``hidden``)."""
    rng = np.random.default_rng(seed)
    f1, f2 = filters
    x = input("x", (None, 1, 8, 8))
    t = input("t", (None, 10))
    h1 = relu(conv2d(x, conv_filters("K1", (f1, 1, 3, 3), rng), parameter("c1", shape=(f1,), init="zeros"),
                     padding="same", name="conv1"), name="a1")
    p1 = max_pool2d(h1, 2, name="pool1")
    h2 = relu(conv2d(p1, conv_filters("K2", (f2, f1, 3, 3), rng), parameter("c2", shape=(f2,), init="zeros"),
                     padding="same", name="conv2"), name="a2")
    p2 = max_pool2d(h2, 2, name="pool2")
    f = flatten(p2, name="features")
    W3 = parameter("W3", rng.normal(0.0, np.sqrt(2.0 / (4 * f2)), (4 * f2, hidden)))
    h3 = relu(linear(f, W3, parameter("b3", shape=(hidden,), init="zeros"), name="net_3"), name="h3")
    if dropout_rate:
        h3 = dropout(h3, dropout_rate, name="drop3")
    logits = linear(h3, parameter("W4", shape=(hidden, 10), rng=rng), parameter("b4", shape=(10,), init="zeros"),
                    name="z")
    loss = losses.softmax_cross_entropy(logits, t, name="CE")
    return Model("cnn", loss, logits, (x, t), digits_dataset(image_shape=(1, 8, 8)),
                 defaults={"lr": 0.02, "batch_size": 32, "epochs": 10, "optimizer": "momentum"},
                 task="classification",
                 description="LeNet-style CNN: two conv+ReLU+max-pool stages, two dense layers")


# -- autoencoders ----------------------------------------------------------------------

def digits_images(test_fraction=0.2, seed=0) -> Dataset:
    """Digits as unlabeled images x (N, 64) for reconstruction (the same split as the classifiers)."""
    images, labels = load_digits()
    tr, te = split(len(labels), test_fraction, seed)
    return Dataset({"x": images[tr]}, {"x": images[te]})


def tied_layer(x, n_in, n_hidden, rng, prefix=""):
    """Encoder h = σ(x W + b) and tied decoder x̂ = σ(h Wᵀ + b′): W appears twice, W′ = Wᵀ."""
    W = parameter(f"W{prefix}", shape=(n_in, n_hidden), rng=rng)
    b = parameter(f"b{prefix}", shape=(n_hidden,), init="zeros")
    b_out = parameter(f"b{prefix}'", shape=(n_in,), init="zeros")
    h = sigmoid(linear(x, W, b, name=f"net_h{prefix}"), name=f"h{prefix}")
    x_hat = sigmoid(linear(h, transpose(W, name=f"W{prefix}ᵀ"), b_out, name=f"net_x̂{prefix}"),
                    name=f"x̂{prefix}")
    return h, x_hat, (W, b, b_out)


def _autoencoder(name, corrupt, hidden, seed, description):
    rng = np.random.default_rng(seed)
    x = input("x", (None, 64))
    x_in = corrupt(x) if corrupt else x
    h, x_hat, _ = tied_layer(x_in, 64, hidden, rng)
    # L(x, g(f(x̃))) against the CLEAN x: mean over the batch of ½‖x − x̂‖²
    loss = losses.quadratic(x_hat, x, reduction="batch_mean", name="L")
    return Model(name, loss, x_hat, (x,), digits_images(),
                 defaults={"lr": 0.1, "batch_size": 32, "epochs": 30, "optimizer": "momentum"},
                 task="reconstruction",
                 description=description, extras={"code": h})


@register("autoencoder", "undercomplete tied autoencoder 64-16-64 (W' = W^T), sigmoid, on the digits")
def autoencoder(hidden: int = 16, seed: int = 0):
    return _autoencoder("autoencoder", None, hidden, seed,
                        f"undercomplete autoencoder 64-{hidden}-64 with tied weights W′ = Wᵀ: "
                        "the gradient of W sums the encoder's and the decoder's terms")


@register("denoising-autoencoder", "tied autoencoder trained on corrupted digits (masking noise 0.3), loss vs clean x")
def denoising_autoencoder(noise: str = "masking", level: float | None = None, hidden: int = 16, seed: int = 0):
    """``noise``: 'masking' (each pixel zeroed with probability ``level``, default 0.3) or
    'gaussian' (x + N(0, level²), default 0.2). Corruption acts in training mode only."""
    if noise == "masking":
        level = 0.3 if level is None else level
        corrupt = (lambda x: masking_noise(x, level, name="x̃"))
    elif noise == "gaussian":
        level = 0.2 if level is None else level
        corrupt = (lambda x: gaussian_noise(x, level, name="x̃"))
    else:
        raise ValueError(f"noise must be 'masking' or 'gaussian', not {noise!r}")
    model = _autoencoder("denoising-autoencoder", corrupt, hidden, seed,
                         f"denoising autoencoder 64-{hidden}-64 (tied): trained on x̃ ~ C(x̃|x) "
                         f"({noise} noise {level:g}), loss L(x, g(f(x̃))) against the clean x")
    model.extras.update(noise=noise, level=level)
    return model


@register("stacked-autoencoder", "64-32-16 encoders pretrained greedily (tied AEs), softmax on top, fine-tuned")
def stacked_autoencoder(sizes=(64, 32, 16), seed: int = 0):
    """The classifier x → h1 → h2 → softmax; ``extras['stages']`` holds one tied autoencoder per
    encoder layer, sharing that layer's W and b (greedy pretraining trains them in order, each on
    the codes of the layers below)."""
    rng = np.random.default_rng(seed)
    x = input("x", (None, sizes[0]))
    t = input("t", (None, 10))
    stages, h = [], x
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        stage_x = input(f"h{k - 1}" if k > 1 else "x", (None, n_in))
        code, x_hat, (W, b, b_out) = tied_layer(stage_x, n_in, n_out, rng, prefix=str(k))
        stages.append(Model(f"stacked-autoencoder/stage{k}", losses.quadratic(x_hat, stage_x, reduction="batch_mean",
                                                                             name=f"L{k}"),
                            x_hat, (stage_x,), None, task="reconstruction",
                            defaults={"lr": 0.5, "batch_size": 32, "epochs": 20}, extras={"code": code}))
        h = sigmoid(linear(h, W, b, name=f"net_h{k}"), name=f"h{k}")
    logits = linear(h, parameter("W_out", shape=(sizes[-1], 10), rng=rng),
                    parameter("b_out", shape=(10,), init="zeros"), name="z")
    loss = losses.softmax_cross_entropy(logits, t, name="CE")
    return Model("stacked-autoencoder", loss, logits, (x, t), digits_dataset(),
                 defaults={"lr": 0.5, "batch_size": 32, "epochs": 20}, task="stacked-autoencoder",
                 description="stacked autoencoder: greedy layer-wise pretraining of tied autoencoders, "
                             "then a softmax classifier fine-tuned end to end",
                 extras={"stages": stages, "sizes": tuple(sizes)})


# -- attention ---------------------------------------------------------------------------

@register("attention", "digit rows as 8 tokens: embedding + position, 2-head self-attention, mean, softmax")
def attention(d_model: int = 16, heads: int = 2, seed: int = 0):
    """Each 8×8 digit is a sequence of 8 row tokens (8 pixels each): token embedding plus a
    learned position embedding → multi-head self-attention (softmax(QKᵀ/√d_k)V per head) with a
    residual connection → tanh → mean over tokens → dense → 10 classes."""
    rng = np.random.default_rng(seed)
    x = input("x", (None, 8, 8))
    t = input("t", (None, 10))
    E = parameter("W_embed", shape=(8, d_model), rng=rng)
    P = parameter("P", rng.normal(0.0, 0.1, (8, d_model)))
    tokens = linear(x, E, P, name="tokens")           # x W_embed + P: row r gets position P[r]
    att = multi_head_attention(tokens, heads, d_model // heads, name="attn", rng=rng)
    h = tanh(tokens + att, name="h")
    pooled = mean(h, axis=1, name="pooled")
    logits = linear(pooled, parameter("W_out", shape=(d_model, 10), rng=rng),
                    parameter("b_out", shape=(10,), init="zeros"), name="z")
    loss = losses.softmax_cross_entropy(logits, t, name="CE")
    return Model("attention", loss, logits, (x, t), digits_dataset(image_shape=(8, 8)),
                 defaults={"lr": 0.003, "batch_size": 32, "epochs": 30, "optimizer": "adam"},
                 task="classification",
                 description="self-attention over the digit's 8 rows, then a linear classifier")



