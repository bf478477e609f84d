"""Embedded data: the 8×8 handwritten digits, and small helpers (split, one-hot, batches).

Users' data: `arrays` (NumPy arrays → feeds, class-index labels, held-out splits) and
`files` (.npz and .csv files, their columns named in the model).

The digits (1797 images, 64 pixels with values 0..16, labels 0..9) are the UCI "Optical
Recognition of Handwritten Digits" test set as scikit-learn ships it; see LICENSE.digits.
They live inside the package: no download, no scikit-learn at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np


@dataclass
class Dataset:
    """Train, test and validation feeds: dicts mapping input names to arrays (rows are examples).

    The validation set is what model selection looks at (early stopping, best checkpoints);
    the test set is only reported.
    """

    train: dict
    test: dict | None = None
    classes: int | None = None
    validation: dict | None = None

    def __post_init__(self):
        for split, feeds in (("train", self.train), ("test", self.test)):
            if feeds is None:
                continue
            rows = {k: (len(v) if np.ndim(v) else None) for k, v in feeds.items()}
            if None in rows.values():
                raise ValueError(f"Dataset {split} column {next(k for k, r in rows.items() if r is None)!r} "
                                 "is a scalar, not an array of rows")
            if len(set(rows.values())) > 1:
                raise ValueError(f"Dataset {split} columns have different row counts: "
                                 + ", ".join(f"{k!r} {r}" for k, r in rows.items()))

    @property
    def n_train(self):
        return len(next(iter(self.train.values())))


def load_digits():
    """(images (1797, 64) float64 in [0, 1], labels (1797,) int64)."""
    with resources.files(__package__).joinpath("digits.npz").open("rb") as f:
        data = np.load(f)
        images, labels = data["images"], data["labels"]
    return images.astype(np.float64) / 16.0, labels.astype(np.int64)


def one_hot(labels, classes):
    labels = np.asarray(labels)
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    out = np.zeros((len(labels), classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def split(n, test_fraction=0.2, seed=0):
    """A fixed, seeded permutation split: (train indices, test indices)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def digits_dataset(x_name="x", t_name="t", test_fraction=0.2, seed=0, image_shape=None) -> Dataset:
    """The digits as a Dataset with one-hot targets; ``image_shape=(1, 8, 8)`` for CNNs."""
    images, labels = load_digits()
    if image_shape is not None:
        images = images.reshape((-1,) + tuple(image_shape))
    targets = one_hot(labels, 10)
    tr, te = split(len(labels), test_fraction, seed)
    return Dataset({x_name: images[tr], t_name: targets[tr]},
                   {x_name: images[te], t_name: targets[te]}, classes=10)


def minibatches(n, batch_size, rng):
    """Index arrays of a shuffled epoch (the last batch may be smaller)."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


from .arrays import as_feeds, hold_out, targets_for, with_test_split  # noqa: E402  (they use Dataset and split)
from .files import load_file  # noqa: E402
