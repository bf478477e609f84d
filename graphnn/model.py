"""A Model bundles one declared graph with what its uses need: data, feeds, defaults."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import Dataset
from .errors import FeedError
from .graph import Graph, Node
from .ops import Map, SoftmaxCrossEntropy, StopGradient


@dataclass
class Model:
    """A network declared once. ``loss`` is what training minimises, ``output`` what it predicts.

    ``example`` holds feeds for one worked example (what derivations substitute);
    ``defaults`` the training settings the course uses (lr, optimizer, steps/epochs,
    batch_size); ``task`` is 'classification', 'regression', 'perceptron' or another
    word a trainer knows.
    """

    name: str
    loss: Node
    output: Node
    inputs: tuple
    data: Dataset | None = None
    example: dict | None = None
    defaults: dict = field(default_factory=dict)
    task: str = "regression"
    description: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        check_defaults(self.name, self.defaults)

    @property
    def graph(self) -> Graph:
        return Graph([self.loss, self.output])

    @property
    def params(self) -> list[Node]:
        """Trainable parameters, in graph order — except those the loss reaches only through
        ``stop_gradient``: this model holds them fixed (a GAN's generator step holds the
        discriminator's weights, which the discriminator's own model trains)."""
        held = held_fixed(self.loss)
        return [p for p in self.graph.trainable if p not in held]

    @property
    def parameters(self) -> list[Node]:
        return self.graph.parameters

    def find(self, name: str) -> Node:
        return self.graph.find(name)

    def structural_hash(self) -> str:
        return self.graph.structural_hash()

    def example_feeds(self, number: int = 1):
        """(feeds, where they come from) for one worked example: the model's ``example``,
        else training example ``number`` (from 1) of its data, else None."""
        if self.example:
            return dict(self.example), "the model's worked example"
        if self.data is not None and self.data.train:
            rows = self.data.n_train
            if not 1 <= number <= rows:
                raise FeedError(f"--example (example=) {number} is out of range: {self.name!r} has {rows} "
                                f"training examples, counted from 1 (1 … {rows})")
            which = "the first training example" if number == 1 else f"training example {number}"
            return {k: np.asarray(v)[number - 1:number] for k, v in self.data.train.items()}, which
        return None

    def initial_params(self) -> dict:
        return {p: p.value.copy() for p in self.parameters}


#: the training settings a Model's ``defaults`` may hold (besides the optimizers' hyperparameters)
DEFAULT_KEYS = ("lr", "optimizer", "batch_size", "epochs", "steps", "threshold")


def check_defaults(name: str, defaults) -> None:
    """``defaults`` keys are settings training reads (a misspelt one was ignored without a word),
    and the counts are whole numbers ≥ 1 (epochs=0 trained nothing and exited 0)."""
    import difflib

    from .optim import OPTIMIZERS

    allowed = DEFAULT_KEYS + tuple(sorted({h for cls in OPTIMIZERS.values() for h in cls.defaults} - {"lr"}))
    if not isinstance(defaults, dict):
        raise TypeError(f"model {name!r}: defaults must be a dict of training settings, not {type(defaults).__name__}")
    for key, value in defaults.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise ValueError(f"model {name!r}: defaults has {key!r}, which no training reads"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; it may hold {', '.join(allowed)} (the optimizer's hyperparameters)")
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if key in ("batch_size", "epochs", "steps") and value is not None and not (whole and value >= 1):
            raise ValueError(f"model {name!r}: defaults[{key!r}] must be a whole number ≥ 1, got {value!r}")


def held_fixed(loss: Node) -> set:
    """The trainable parameters that reach ``loss`` only through ``stop_gradient`` nodes."""
    free, stack = set(), [loss]
    while stack:
        node = stack.pop()
        if node in free:
            continue
        free.add(node)
        if not isinstance(node.op, StopGradient):
            stack.extend(node.inputs)
    return {p for p in Graph([loss]).trainable if p not in free}


# -- which inputs take class indices (the data loaders and the Trainer ask) -----------------

def class_targets(model) -> frozenset:
    """The names of ``model``'s inputs that take class indices for one-hot rows (a softmax
    cross-entropy's targets, a 'classification' model's second input of several columns):
    `graphnn.data.as_feeds` one-hot encodes labels for these and no other."""
    return frozenset(n.name for n in probability_targets(model))


#: elementwise losses whose target is a probability: a number in [0, 1] per output
UNIT_INTERVAL_LOSSES = ("BCE", "BCE(logits)")


def unit_interval_targets(model) -> list:
    """Input nodes fed as the target of a binary cross-entropy (the loss's second operand)."""
    return list(dict.fromkeys(n.inputs[1] for n in Graph([model.loss]).nodes
                              if isinstance(n.op, Map) and n.attrs.get("fn") in UNIT_INTERVAL_LOSSES
                              and len(n.inputs) == 2 and n.inputs[1].kind == "input"))


def probability_targets(model) -> list:
    """Input nodes fed as the targets of a softmax cross-entropy (or a classifier's second input)."""
    found = [n.inputs[1] for n in Graph([model.loss]).nodes
             if isinstance(n.op, SoftmaxCrossEntropy) and n.inputs[1].kind == "input"]
    second = model.inputs[1] if len(model.inputs) > 1 else None
    if (model.task == "classification" and second is not None and second not in found
            and second.shape and second.shape[-1] not in (None, 1)):   # one column: 0/1 labels, not rows
        found.append(second)
    return found
