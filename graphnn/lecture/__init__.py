"""The lecture page: forward and backward, step by step, for a small net, in one offline file.

``lecture(model, output=None, …)`` → `Lecture` (``.html``, ``.save(path)``; Jupyter shows it
inline). The page steps through the forward pass unit by unit on the neurons picture (a
scalar RNN: on its unrolled picture), the backward pass δ by δ with each chain-rule line,
the update and a precomputed training run with its loss curve; a click on a weight opens its
whole derivation beside the picture with the paths it sums highlighted. Everything shown is
made by graphnn's drawings, derivations, evaluator and trainer in Python and embedded; the
page's script only shows, hides and highlights (keys → ← space, Q quiz, P play; printable).

Modules: `plan` (which lesson, the size limits), `feedforward` and `recurrent` (the two
lessons), `training` (the precomputed run), `svg` (the tagged picture), `fragments`
(derivation HTML), `lesson` (the data), `page` (the HTML; template, CSS, JS in ``assets/``).
"""
from __future__ import annotations

import html as _html
from pathlib import Path

from ..callable_module import make_callable
from ..derive.documents import write_atomic
from ..model import Model
from .lesson import Lesson, LectureError
from .page import external_references, render
from .plan import MAX_STEPS, MAX_UNITS, MAX_WEIGHTS, Options, lesson_for, lesson_kind


class Lecture:
    """A lecture page: ``html`` (the whole file), ``lesson`` (its data), ``save(path)``."""

    def __init__(self, lesson: Lesson):
        self.lesson = lesson
        self.html = render(lesson)

    def save(self, path) -> Path:
        """Write the page to ``path`` (atomically)."""
        return write_atomic(path, self.html)

    def _repr_html_(self) -> str:
        # in its own frame: the page's keys, styles and script stay out of the notebook's
        return (f'<iframe srcdoc="{_html.escape(self.html, quote=True)}" style="width:100%;height:720px;'
                f'border:1px solid #ccc" title="{_html.escape(self.lesson.title)}"></iframe>')

    def __repr__(self):
        return f"<Lecture {self.lesson.title!r}: {len(self.lesson.steps)} steps, {len(self.html) // 1024} KiB>"


def lecture(model: Model, output=None, *, train_steps: int | None = None, lr: float | None = None,
            precision: int = 6, picture_precision: int = 3, quiz: bool = False) -> Lecture:
    """The lecture page of ``model`` (a small feed-forward net or a scalar RNN).

    ``output``: also write the page there. ``train_steps``: precomputed training updates
    (default: the model's; epochs for a perceptron); ``lr``: the update's and the training's
    learning rate (default: the model's). ``precision``: significant digits of the
    derivations; ``picture_precision``: of the picture's labels. ``quiz``: open with the
    numbers hidden. Raises `LectureError` for a model the page cannot show (too large).
    """
    if not isinstance(model, Model):
        raise TypeError(f"lecture() takes a graphnn Model, not {type(model).__name__}")
    for name, value in (("train_steps", train_steps), ("precision", precision),
                        ("picture_precision", picture_precision)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    options = Options(train_steps=train_steps, lr=lr, precision=int(precision),
                      picture_precision=int(picture_precision), quiz=bool(quiz))
    page = Lecture(lesson_for(model, options))
    if output is not None:
        page.save(output)
    return page


__all__ = ["lecture", "Lecture", "LectureError", "Lesson", "Options", "external_references", "lesson_kind", "MAX_UNITS",
           "MAX_WEIGHTS", "MAX_STEPS"]

make_callable(__name__, lecture)   # graphnn.lecture(...) is this package's lecture()
