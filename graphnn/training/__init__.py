"""Everything about running training, in one place.

- trainer.py      `Trainer` (data, schedule, history, predict/evaluate/gradients), `fit`
- metrics.py      metrics by task, by name;  callbacks.py  early stopping, checkpoints, hooks
- backends.py     the backend protocol, the NumPy reference backend, the registry of
                  backends by name (compiled ones load lazily from codegen/), training mode
- tasks.py        task runners by ``model.task``: gradient descent, the perceptron rule,
                  Hopfield storage and recall, autoencoders and greedy pretraining
- options.py      `TrainOptions`, and the check that a runner is given only the options it honours
- language.py     the 'language-model' runner (n-gram baselines, checkpoint) and `generate`
- generative.py   the 'gan' (alternating players), 'diffusion' (DDPM) and 'contrastive' runners
- perceptron.py   Rosenblatt's rule;  pretraining.py  reconstruction errors, greedy pretraining
- distributed.py  data-parallel training over MPI;  plot.py  curves
- checkpoint.py   atomic, validated checkpoints;  resume.py  what a backend gives a checkpoint
                  and takes back (exact resume);  validation.py  options and data checked first

Depends on the core (graph, ops, autodiff, evaluate) and on nothing above it: codegen
imports the backend protocol from here, never the other way round.
"""
from .backends import (BACKENDS, Backend, BackendUnavailableError, NumpyBackend, TrainingFeeds, backend_factory,
                       epoch_by_steps, make_backend, register_backend, training_feeds, uses_training_mode,
                       with_training_feeds)
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .keywords import KeywordError
from .tasks import TASKS, TrainOptions, register_task
from .trainer import History, Trainer, fit
from . import generative, language  # noqa: F401,E402  (their task runners register themselves)

__all__ = ["BACKENDS", "Backend", "BackendUnavailableError", "Callback", "Checkpoint", "CheckpointError",
           "EarlyStopping", "History", "KeywordError", "LambdaCallback", "ModelCheckpoint", "NumpyBackend", "TASKS",
           "TrainOptions", "Trainer", "TrainingFeeds", "backend_factory", "epoch_by_steps", "fit", "load_checkpoint",
           "make_backend", "register_backend", "register_task", "save_checkpoint", "training_feeds",
           "uses_training_mode", "with_training_feeds"]
