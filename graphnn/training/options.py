"""What ``graphnn train`` asks of a task runner (`TrainOptions`), and the check that a runner
is given only what it honours.

Each runner declares the options it honours when it is registered
(`graphnn.training.tasks.register_task`, ``honours=``). `check_honoured` refuses an option
that was *given* — its value differs from TrainOptions' default — but that the runner does
not use, with one line naming the flag, the model and how that model trains:

    --steps 3: 'perceptron-and' is trained by the perceptron rule, which counts epochs (use
    --epochs); it takes --checkpoint, --epochs, --lr, --plot, --resume

Ignoring it silently would let a user believe a run was on the GPU, in float32 or early-stopped.
A default value counts as not given, so an option the runner does not take may still be spelled
out at its default (``--backend numpy``, ``--dtype float64``: what such a runner computes in).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable

from ..data import Dataset, load_file
from ..schedules import parse as parse_schedule


@dataclass
class TrainOptions:
    """What a training run is asked for (the ``graphnn train`` options); None: the model's default."""

    backend: str = "numpy"
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    dtype: str = "float64"
    seed: int = 0
    epochs: int | None = None
    steps: int | None = None
    test_fraction: float | None = None
    validation_split: float | None = None
    data: str | None = None             # a .npz/.csv file of training data (graphnn.data.files)
    test_data: str | None = None
    lr_schedule: str | None = None      # a sympy expression in the step count t
    patience: int | None = None
    checkpoint: str | None = None
    resume: str | None = None
    plot: str | None = None
    progress: bool = False
    verbose: bool = False
    background_compile: bool | None = None   # start on the reference while compiling (None: default, on)
    comm: object = None                 # a communicator: data-parallel (gradient descent only)
    report: Callable = functools.partial(print, flush=True)   # report(text): one line of output

    @property
    def writes_files(self) -> bool:
        """Whether this process writes the run's own files (figures, default checkpoints): the
        only one, or rank 0 of a data-parallel run (the others compute the same)."""
        return self.comm is None or self.comm.rank == 0

    def learning_rate(self):
        """``--lr``, or ``--lr-schedule`` parsed (its errors name the flag and the text); None: the model's."""
        if not self.lr_schedule:
            return self.lr
        return parse_schedule(self.lr_schedule, origin=f"--lr-schedule {self.lr_schedule!r}")

    def trainer_kwargs(self) -> dict:
        """The `Trainer` keywords these options set: the options in `TRAINER`, every one of them."""
        verbose = {"verbose": True} if self.verbose and self.backend != "numpy" else {}
        return dict(backend=self.backend, optimizer=self.optimizer, lr=self.learning_rate(),
                    batch_size=self.batch_size, dtype=self.dtype, seed=self.seed,
                    background_compile=self.background_compile, backend_options=verbose)

    def dataset(self, model):
        """The user's files as a Dataset (None without --data): columns named in the model."""
        if self.data is None:
            if self.test_data is not None:
                raise ValueError("--test-data needs --data (the training data)")
            if model.data is None or not model.data.train:   # (was: "pass arrays (fit(x, y))", Python's advice)
                raise ValueError(f"model {model.name!r} has no data of its own: give the training data with "
                                 "--data FILE (.csv or .npz; docs/own-data.md)")
            return None
        test = None if self.test_data is None else load_file(self.test_data, model)
        return Dataset(load_file(self.data, model), test)

    def schedule(self, model) -> tuple:
        """(epochs, steps): the asked ones, else the model's defaults."""
        if self.epochs is None and self.steps is None:
            return model.defaults.get("epochs"), model.defaults.get("steps")
        return self.epochs, self.steps


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainOptions)}

#: the options a runner may honour or not. Not among them: ``report`` (where lines go) and
#: ``progress`` — a display preference that a runner without a progress bar honours trivially,
#: and whose CLI default (on) differs from TrainOptions' (off), so "given" could not be told.
OPTIONS = tuple(name for name in _DEFAULTS if name not in ("report", "progress"))

#: what `TrainOptions.trainer_kwargs` carries: a runner that builds its Trainer from it honours these
TRAINER = frozenset({"backend", "optimizer", "lr", "lr_schedule", "batch_size", "dtype", "seed",
                     "background_compile", "verbose"})

#: the files every runner writes or reads through tasks.py's shared helpers
FILES = frozenset({"checkpoint", "resume", "plot"})

_SPELLING = {"comm": "--distributed"}   # options whose flag is not the name with dashes


def flag(option: str, value=None) -> str:
    """The option as the user wrote it: '--steps 3', '--distributed', '--no-background-compile'."""
    name = _SPELLING.get(option, "--" + option.replace("_", "-"))
    if option == "comm" or value is None:
        return name
    if isinstance(value, bool):
        return name if value else f"--no-{name[2:]}"
    return f"{name} {value}"


def given(opts: TrainOptions) -> dict:
    """{option: value} of the options set to something other than their default."""
    return {name: getattr(opts, name) for name in OPTIONS if _differs(getattr(opts, name), _DEFAULTS[name])}


def _differs(value, default) -> bool:
    # `is` for None: an MPI communicator need not compare with None by ==
    return value is not None if default is None else value != default


def check_honoured(model, opts: TrainOptions, honours, rule: str, why=None) -> None:
    """Raise ValueError for the first given option not in ``honours`` (module doc).

    ``rule``: how the model trains, in words ("the perceptron rule"); ``why``: {option: a
    phrase that follows "which"}, the reason when it helps more than "does not use it".
    """
    for option, value in given(opts).items():
        if option in honours:
            continue
        reason = (why or {}).get(option, "does not use it")
        takes = ", ".join(sorted(flag(o) for o in honours)) or "no options"
        raise ValueError(f"{flag(option, value)}: {model.name!r} is trained by {rule}, which {reason}; "
                         f"it takes {takes}")
