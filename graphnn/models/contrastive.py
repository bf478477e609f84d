"""Contrastive learning à la CLIP: digit images and the spelled-out names of their digits.

One training example is an *episode*: ten digit images, one of each class in a random order,
and the names of their digits in the same order ("seven", …). Two encoders map them into one
space: the image encoder an MLP on the 8×8 digit, the text encoder a character embedding of
the name averaged over its letters and projected. Both outputs are L2-normalised (u_i, v_j);
the episode's similarity matrix is z = exp(s) · U Vᵀ (10 × 10) with a learnable
log-temperature s (CLIP's logit scale), and the loss is the symmetric cross-entropy of its
rows and columns against the diagonal — the i-th image belongs with the i-th name
(`row_numbers`):

    L = ½ [ CE(z, diag) + CE(zᵀ, diag) ],   ∂L/∂z = ½ (softmax_rows(z) − I) + ½ (softmax_cols(z) − I)

per episode (then the mean over episodes and rows). Zero-shot classification compares an
image's u with the ten names' v and picks the nearest: no classifier is trained. The task
'contrastive' draws new episodes every epoch and reports that accuracy on the test digits.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..data import Dataset, load_digits, split
from ..data.text import Vocabulary
from ..model import Model
from ..ops import (dense, embedding, fmap, input, matmul, mean, parameter, row_numbers,
                   sparse_softmax_cross_entropy, sum as sum_, transpose)
from . import register

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NAME_LENGTH = max(map(len, NAMES))
TEXT_VOCAB = Vocabulary.of("".join(NAMES) + " ")


def name_ids(labels) -> np.ndarray:
    """Character ids of the digits' names, padded with spaces: labels' shape + (5,)."""
    labels = np.asarray(labels)
    ids = np.stack([TEXT_VOCAB.encode(NAMES[int(k)].ljust(NAME_LENGTH)) for k in labels.ravel()])
    return ids.reshape(labels.shape + (NAME_LENGTH,))


def episodes(images, labels, rng) -> dict:
    """Episodes of ten images, one per class in a random order, with their names: {'x': (E, 10, 64),
    'name': (E, 10, 5)}; E is the smallest class's size (each image is used at most once)."""
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    n = min(len(idx) for idx in by_class)
    picks = np.stack([idx[:n] for idx in by_class], axis=1)          # (E, 10), column c: class c
    order = np.argsort(rng.random(picks.shape), axis=1)               # shuffle each episode
    picks = np.take_along_axis(picks, order, axis=1)
    return {"x": images[picks], "name": name_ids(labels[picks])}


def l2_normalize(v, name):
    """v / ‖v‖ over the last axis (ε inside the root keeps a zero vector finite)."""
    a, n = sympy.symbols("a n")
    norm = fmap(sympy.sqrt(n + sympy.Float(1e-8)), {n: sum_(fmap(a * a, {a: v}, fn="v²"), -1, keepdims=True)},
                fn="‖v‖", name=f"‖{name}‖")
    return fmap(a / n, {a: v, n: norm}, fn="v/‖v‖", name=name)


@register("contrastive", "CLIP-style image-text pairs: digit MLP encoder and a name (characters) encoder, "
                         "symmetric InfoNCE with a learnable temperature; zero-shot accuracy")
def contrastive(d_embed: int = 32, hidden: int = 64, d_char: int = 16, seed: int = 0):
    """Image encoder 64-``hidden``-``d_embed``, text encoder (chars → ``d_char``, mean) → ``d_embed``."""
    rng = np.random.default_rng(seed)
    x = input("x", (None, 10, 64))
    chars = input("name", (None, 10, NAME_LENGTH), dtype="int")
    u = l2_normalize(dense(dense(x, hidden, "relu", name="img.h", init="he", rng=rng), d_embed, name="img.proj",
                           rng=rng), "u")
    C = parameter("C", rng.normal(0.0, 1.0, (len(TEXT_VOCAB), d_char)))
    letters = embedding(chars, C, name="letters")
    v = l2_normalize(dense(mean(letters, axis=2, name="mean letter"), d_embed, name="txt.proj", rng=rng), "v")
    s = parameter("s", np.array(np.log(1 / 0.07)))          # CLIP's initial temperature 0.07
    a, b = sympy.symbols("a b")
    logits = fmap(sympy.exp(b) * a, {a: matmul(u, transpose(v, name="vᵀ"), name="UVᵀ"), b: s},
                  fn="exp(s)·", name="z")
    diag = row_numbers(logits, axis=1, name="i")
    rows = mean(sparse_softmax_cross_entropy(logits, diag, name="CE rows"), name="L_img")
    cols = mean(sparse_softmax_cross_entropy(transpose(logits, name="zᵀ"), diag, name="CE cols"), name="L_txt")
    loss = fmap((a + b) / 2, {a: rows, b: cols}, fn="½(rows + columns)", name="L")
    images, labels = load_digits()
    tr, te = split(len(labels), 0.2, seed)
    data_rng = np.random.default_rng(seed + 1)
    data = Dataset(episodes(images[tr], labels[tr], data_rng), episodes(images[te], labels[te], data_rng))
    return Model("contrastive", loss, logits, (x, chars), data,
                 example={k: v[:1] for k, v in data.train.items()},
                 defaults={"lr": 3e-3, "batch_size": 2, "epochs": 10, "optimizer": "adam"}, task="contrastive",
                 description=f"CLIP-style: image MLP 64-{hidden}-{d_embed} and name encoder (chars → {d_char}, "
                             f"mean, → {d_embed}), both normalised; symmetric InfoNCE over episodes of 10 pairs, "
                             "learnable temperature",
                 extras={"image_embedding": u, "text_embedding": v, "images": (images[tr], images[te]),
                         "labels": (labels[tr], labels[te])})
