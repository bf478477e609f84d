"""Which lesson a model gets, and the limits of "small": the page steps unit by unit and
writes every weight's derivation, so it takes feed-forward nets of dense layers up to
`MAX_UNITS` units per layer and `MAX_WEIGHTS` weights, and recurrences over one scalar
state unrolled over at most `MAX_STEPS` steps. Anything else is refused with a message
that says what the model has and which command shows it instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..derive.core import first_example
from ..draw import DrawError, example_feeds
from ..draw.layers import dense_chain
from ..ops.base import fmt_shape
from ..recurrent import scans_in
from .feedforward import FeedForward
from .lesson import Lesson, LectureError
from .recurrent import Recurrent
from .training import training_panel, training_section

MAX_UNITS = 8          # per layer (the inputs included)
MAX_WEIGHTS = 64       # weight and bias elements: each one's derivation is in the page
MAX_STEPS = 8          # time steps of an unrolled recurrence


@dataclass
class Options:
    """What a page is asked for (see `graphnn.lecture.lecture`)."""

    train_steps: int | None = None   # precomputed training updates (epochs for the perceptron rule)
    lr: float | None = None
    precision: int = 6               # digits of the derivations
    picture_precision: int = 3       # digits on the picture
    quiz: bool = False               # open with the numbers hidden
    all_feeds: dict | None = None    # every row of the worked example (the perceptron rule's pass)


def _too_large(model, what: str, recurrent: bool = False) -> LectureError:
    instead = _instead(model, recurrent)
    return LectureError(f"{model.name} is too large for the lecture page: {what}; the page steps through small "
                        f"nets unit by unit (at most {MAX_UNITS} units per layer, {MAX_WEIGHTS} weights, "
                        f"{MAX_STEPS} time steps of a scalar recurrence). Show it with {instead} instead")


def _instead(model, recurrent=False) -> str:
    """Commands that show ``model`` instead, runnable as written: the derivation names a weight
    (it needs one); a model with none to train (Hopfield's stored weights) gets the drawing."""
    weight = next((p.name for p in model.params), None)
    derive = (f"`graphnn derive {model.name} --view {'time' if recurrent else 'matrix'} --wrt {weight}` and "
              if weight else "")
    return derive + f"`graphnn draw {model.name} --view {'unrolled' if recurrent else 'ops'}`"


def check_recurrence(model, scan):
    cell = scan.cell
    if scan.mode != "unrolled":
        raise _too_large(model, f"its recurrence is one looped node over T = {scan.length} steps", True)
    if len(cell.carry_out) != 1 or tuple(cell.carry_out[0].shape) != (None,):
        shapes = ", ".join(fmt_shape(c.shape) for c in cell.carry_out)
        raise _too_large(model, f"its state is {shapes} per step, not one number", True)
    if scan.length > MAX_STEPS:
        raise _too_large(model, f"it is unrolled over T = {scan.length} steps (ask for fewer with --steps)", True)
    big = [f.name for f in cell.free if f.kind == "parameter" and f.shape != ()]
    if big:
        raise _too_large(model, f"its cell's weights {', '.join(big)} are not single numbers", True)


def check_feedforward(model):
    try:
        source, layers = dense_chain(model.graph, model.output, model.name)
    except DrawError:
        ops = sorted({n.op.name for n in model.graph.nodes if n.kind == "op"})
        raise LectureError(f"{model.name} is not a net the lecture page can draw unit by unit: the page takes "
                           f"feed-forward chains input → linear → activation → … and scalar recurrences, and "
                           f"{model.name} has the ops {', '.join(ops)}. Show it with {_instead(model)} instead") from None
    widths = [source.shape[-1]] + [layer.width for layer in layers]
    weights = sum(int(np.prod(layer.weights.shape)) + int(np.prod(layer.bias.shape)) for layer in layers)
    shape = "-".join(map(str, widths))
    if max(widths) > MAX_UNITS:
        raise _too_large(model, f"its layers have {shape} units")
    if weights > MAX_WEIGHTS:
        raise _too_large(model, f"its {shape} layers have {weights} weights and biases")


def lesson_kind(model) -> str:
    """'neurons' or 'unrolled': the picture ``model``'s page is built on; a LectureError
    saying why when the page cannot show it (before any work is done)."""
    scans = scans_in(model.graph)
    if len(scans) > 1:
        raise _too_large(model, f"it has {len(scans)} recurrences", True)
    if scans:
        check_recurrence(model, scans[0])
        return "unrolled"
    check_feedforward(model)
    return "neurons"


def lesson_for(model, options: Options) -> Lesson:
    """The lesson of ``model`` (a LectureError when the page cannot show it)."""
    lesson_kind(model)
    scans = scans_in(model.graph)
    try:
        every = example_feeds(model)
    except DrawError:
        raise LectureError(f"{model.name} has no worked example and no data: the page needs numbers to show "
                           "(give the Model an example= or data=)") from None
    feeds = first_example(model.graph, every)
    options.all_feeds = every
    builder = Recurrent(model, feeds, options, scans[0]) if scans else FeedForward(model, feeds, options)
    lesson = builder.build()
    if any(p.trainable for p in model.parameters):
        name = lesson.picture
        lesson.training = training_section(model, every, options, builder.redraw_params, lesson.pictures[name])
        lesson.add_step("train", "Training: the loss over the steps", training_panel(lesson.training),
                        picture=name)
    lesson.quiz = options.quiz
    return lesson
