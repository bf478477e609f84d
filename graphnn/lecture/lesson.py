"""What a lecture page shows, as data: the steps, the picture and what each step reveals on
it, the weights one can click, the update and the training frames.

A `Lesson` is built in Python (`feedforward.py`, `recurrent.py`, `training.py`) from
graphnn's own drawings, derivations, evaluator and trainer; the page (`page.py`) embeds it
as JSON and its script only shows, hides and highlights what is in it.

Picture numbers are addressed as ``"owner|line"`` (`svg.annotate`: the DOT id of a node or
edge and the line of its label). ``reveal`` maps such a key to the first step that shows
its numbers (keys not listed are shown from the start); ``relabel`` maps a step to the
numbers it puts in place of the drawn ones (the update step, the training frames).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import GraphnnError
from ..notation import number_text


class LectureError(GraphnnError, ValueError):
    """A lecture page that cannot be made for this model (too large, not a net the page draws)."""


@dataclass
class Lesson:
    """Everything the page shows (see the module docstring); `to_json` is what it embeds."""

    title: str
    model: str
    kind: str                                   # 'neurons' or 'unrolled'
    pictures: dict = field(default_factory=dict)    # name -> svg.Picture
    picture: str = "main"                       # the one shown by default
    steps: list = field(default_factory=list)   # dicts: phase, title, html, focus, picture
    reveal: dict = field(default_factory=dict)  # "owner|line" -> first step that shows it
    relabel: dict = field(default_factory=dict)  # step index -> {"owner|line": [number texts]}
    weights: dict = field(default_factory=dict)  # element name -> click target (see feedforward.py)
    training: dict | None = None
    quiz: bool = False                          # open with the numbers hidden

    def add_step(self, phase: str, title: str, html: str, *, show=(), focus=(), picture=None, **extra) -> int:
        """Append a step; ``show``: "owner|line" keys it reveals (numbers hidden until then:
        `hide_all_numbers` hides them first; a given number stays shown from the start)."""
        index = len(self.steps)
        self.steps.append({"phase": phase, "title": title, "html": html, "focus": list(focus),
                           "picture": picture, **extra})
        for key in show:
            if key in self.reveal:
                self.reveal[key] = min(self.reveal[key], index)
        return index

    def hide_all_numbers(self, picture: str = "main", keep=()) -> None:
        """Numbers of the picture stay hidden until a step reveals them, except ``keep``."""
        for key in self.pictures[picture].numbers:
            if key not in keep:
                self.reveal.setdefault(key, 10 ** 6)

    def to_json(self) -> str:
        """The lesson for the page's script (pictures are placed in the page separately)."""
        data = {"title": self.title, "model": self.model, "kind": self.kind, "picture": self.picture,
                "pictures": sorted(self.pictures), "steps": self.steps, "reveal": self.reveal,
                "relabel": {str(k): v for k, v in self.relabel.items()}, "weights": self.weights,
                "training": None if self.training is None else {k: v for k, v in self.training.items()
                                                                 if k != "curve"},
                "quiz": self.quiz}
        # "</" would end the page's <script> element early
        return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def shown(value, precision: int) -> str:
    """A number as the derivations print it (``precision`` significant digits)."""
    return number_text(float(value), precision)
