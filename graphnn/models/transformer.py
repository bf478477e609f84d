"""The Transformer of the course's figure, decoder only: a character-level language model.

    tokens → input embedding E → + positional encoding (sin/cos)
           → N × [ masked multi-head attention → Add & Norm → feed-forward → Add & Norm ]
           → linear → softmax over the next character

``norm='post'`` is the figure's order, x ← LN(x + sublayer(x)); ``norm='pre'`` (GPT-2's)
is x ← x + sublayer(LN(x)) with one more LN before the output layer. The attention is
causal: position t sees positions ≤ t only, so every position of a window is a training
example for the character after it. Trained on the shipped Shakespeare (graphnn.data.text);
its task 'language-model' reports the unigram and bigram baselines beside the validation
loss and saves a checkpoint that ``graphnn sample transformer`` reads.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..data.text import char_corpus, ngram_baselines
from ..model import Model
from ..ops import add, dense, embedding, input, layer_norm, linear, multi_head_attention, parameter, positional_encoding
from . import register


def feed_forward(x, d_ff, name, rng):
    """FFN(x) = GELU(x W₁ + b₁) W₂ + b₂, position by position."""
    h = dense(x, d_ff, "gelu", name=f"{name}.h", rng=rng)
    return dense(h, x.shape[-1], name=f"{name}.out", rng=rng)


def decoder_block(x, k, heads, d_ff, norm, rng):
    """One block: masked multi-head self-attention and a feed-forward net, each with its
    residual connection (a plain +) and a layer norm; names ``block<k>.…``, and (pre-norm)
    the residual stream ``a<k>`` after the attention and ``x<k>`` after the block."""
    d = x.shape[-1]

    def attention(v):
        return multi_head_attention(v, heads, d // heads, causal=True, name=f"block{k}.attn", rng=rng)
    if norm == "post":
        x = layer_norm(add(x, attention(x), name=f"block{k}.a"), name=f"block{k}.ln1")
        return layer_norm(add(x, feed_forward(x, d_ff, f"block{k}.ffn", rng), name=f"block{k}.f"),
                          name=f"block{k}.ln2")
    x = add(x, attention(layer_norm(x, name=f"block{k}.ln1")), name=f"a{k}")
    return add(x, feed_forward(layer_norm(x, name=f"block{k}.ln2"), d_ff, f"block{k}.ffn", rng), name=f"x{k}")


@register("transformer", "decoder-only Transformer, char-level LM on Shakespeare: embedding + sinusoidal "
                         "PE, masked multi-head attention, Add & Norm, feed-forward")
def transformer(block: int = 32, d_model: int = 32, heads: int = 4, layers: int = 2, d_ff: int = 64,
                norm: str = "pre", stride: int | None = None, seed: int = 0):
    """``block`` characters of context, ``layers`` decoder blocks of width ``d_model`` with
    ``heads`` heads and a ``d_ff`` feed-forward layer; ``norm`` 'pre' or 'post'."""
    if norm not in ("pre", "post"):
        raise ValueError(f"norm must be 'pre' or 'post', not {norm!r}")
    if d_model % heads:
        raise ValueError(f"d_model {d_model} does not split into {heads} heads")
    data, vocab, (train_ids, val_ids) = char_corpus(block, stride)
    rng = np.random.default_rng(seed)
    tokens = input("tokens", (None, block), dtype="int")
    targets = input("next", (None, block), dtype="int")
    E = parameter("E", rng.normal(0.0, 1.0, (len(vocab), d_model)))
    x = positional_encoding(embedding(tokens, E, name="embed"), name="x0")
    for k in range(1, layers + 1):
        x = decoder_block(x, k, heads, d_ff, norm, rng)
    if norm == "pre":
        x = layer_norm(x, name="ln")
    logits = linear(x, parameter("W_out", shape=(d_model, len(vocab)), rng=rng),
                    parameter("b_out", shape=(len(vocab),), init="zeros"), name="logits")
    loss = losses.softmax_cross_entropy(logits, targets, reduction="mean", name="CE")
    example = {k: v[:2] for k, v in data.train.items()}
    return Model("transformer", loss, logits, (tokens, targets), data, example=example,
                 defaults={"lr": 3e-3, "batch_size": 32, "epochs": 12, "optimizer": "adam"},
                 task="language-model",
                 description=f"decoder-only Transformer ({layers} × {norm}-norm block, d_model {d_model}, "
                             f"{heads} heads, FFN {d_ff}, context {block}) over {len(vocab)} characters",
                 extras={"vocab": vocab, "baselines": ngram_baselines(train_ids, val_ids, len(vocab))})
