"""A small text corpus for character-level language models, and its n-gram baselines.

The corpus is shipped in the package (``shakespeare.txt``: Coriolanus, Act I, public
domain — see LICENSE.shakespeare). `char_corpus` cuts it into a contiguous training part
(the first 90%) and a validation part (the rest), encodes characters as ids of a sorted
vocabulary and makes windows: ``tokens`` (N, T) and ``next`` (N, T), the same text shifted
by one. `ngram_baselines` gives the validation cross-entropy of the unigram and bigram
models fitted on the training part: what a language model has to beat.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from . import Dataset

CORPUS = "shakespeare.txt"


def load_text(name: str = CORPUS) -> str:
    """The text of a corpus shipped in graphnn/data."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Vocabulary:
    """Characters ↔ ids (ids in sorted character order)."""

    chars: str

    @classmethod
    def of(cls, text: str) -> "Vocabulary":
        return cls("".join(sorted(set(text))))

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the vocabulary of {len(self)} characters "
                             f"({self.chars!r})")
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.ravel(ids))


def windows(ids: np.ndarray, block: int, stride: int) -> dict:
    """{'tokens': (N, block), 'next': (N, block)}: windows of ``ids`` every ``stride``
    characters, and the characters one position later (the targets)."""
    starts = np.arange(0, len(ids) - block - 1 + 1, stride)
    rows = starts[:, None] + np.arange(block)[None, :]
    return {"tokens": ids[rows], "next": ids[rows + 1]}


def char_corpus(block: int, stride: int | None = None, validation: float = 0.1, text: str | None = None):
    """(Dataset with train and validation windows, Vocabulary, (train ids, validation ids))."""
    text = load_text() if text is None else text
    vocab = Vocabulary.of(text)
    ids = vocab.encode(text)
    cut = int(round(len(ids) * (1.0 - validation)))
    train, val = ids[:cut], ids[cut:]
    stride = stride or max(1, block // 2)
    data = Dataset(windows(train, block, stride), validation=windows(val, block, block))
    return data, vocab, (train, val)


def ngram_baselines(train: np.ndarray, val: np.ndarray, vocab_size: int, alpha: float = 0.1) -> dict:
    """Validation cross-entropy (nats per character) of the unigram and bigram models fitted
    on ``train`` with add-``alpha`` smoothing: {'unigram': …, 'bigram': …}."""
    uni = np.bincount(train, minlength=vocab_size) + alpha
    uni = uni / uni.sum()
    pairs = np.zeros((vocab_size, vocab_size)) + alpha
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    bi = pairs / pairs.sum(axis=1, keepdims=True)
    return {"unigram": float(-np.mean(np.log(uni[val[1:]]))),
            "bigram": float(-np.mean(np.log(bi[val[:-1], val[1:]])))}
