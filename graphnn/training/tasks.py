"""Task runners: how a model is trained, chosen by its ``task``, for ``graphnn train``.

Gradient descent trains 'classification' and 'regression' models (and any task no runner
claims). Other tasks have their own rule, registered the same way by task name
(`register_task`): 'perceptron' (Rosenblatt's rule), 'hopfield' (Hebbian storage, then
recall), 'reconstruction' (autoencoders, with reconstruction errors), 'stacked-autoencoder'
(greedy layer-wise pretraining, then fine-tuning). A runner takes the model and
`TrainOptions`, reports each line through ``options.report(text)`` (print by default) and
returns what it trained (a Trainer, or the rule's result). It declares the options it
honours when registered; `run` refuses any other that is given (graphnn/training/options.py),
so no flag is ever silently ignored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import UnknownNameError
from ..files import check_writable, figure_format
from ..models.hopfield import hebbian, recall
from . import perceptron, pretraining
from .backends import BACKENDS
from .callbacks import ModelCheckpoint
from .checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from .options import FILES, OPTIONS, TRAINER, TrainOptions, check_honoured
from .plot import Curves, plot_curves
from .trainer import Trainer
from .validation import check_options


@dataclass(frozen=True)
class Runner:
    """A task runner and what it declares: ``train(model, options)`` trains; ``honours``: the
    TrainOptions it uses (`options.OPTIONS`, the others are refused when given); ``rule``:
    how it trains, in words, for those errors; ``why``: {option: why it does not apply}."""

    train: Callable
    honours: frozenset
    rule: str
    why: dict = field(default_factory=dict)

    def __call__(self, model, options):
        return self.train(model, options)


#: task name -> Runner
TASKS: dict = {}


def register_task(task: str, runner: Callable, *, honours=None, rule=None, why=None) -> None:
    """Train models whose ``task`` is ``task`` with ``runner(model, options)``.

    ``honours``: the TrainOptions fields the runner uses (`options.OPTIONS`); `run` refuses
    any other that is given, naming the flag and ``rule`` (how the runner trains, in words;
    default: the task's name). None: every option, for a runner written before options were
    declared (it then answers for the ones it ignores itself). ``why``: {option: a phrase
    after "which"}, a better reason than "does not use it" (see `options.check_honoured`).
    """
    honours = frozenset(OPTIONS if honours is None else honours)
    unknown = honours - set(OPTIONS)
    if unknown:
        raise ValueError(f"task {task!r} declares unknown options {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    TASKS[task] = Runner(runner, honours, rule or f"the {task!r} runner", dict(why or {}))


#: tasks gradient descent trains (metrics by task: accuracy, or mse/mae/r2)
DESCENT_TASKS = ("classification", "regression")


def runner_of(model) -> Runner:
    """The Runner of ``model.task``: gradient descent for classification and regression; a
    task nobody registered is an error listing the known ones (a typo trained as regression)."""
    if model.task in DESCENT_TASKS:
        return TASKS.get(model.task, GRADIENT_DESCENT)
    if model.task not in TASKS:
        known = ", ".join(sorted([*DESCENT_TASKS, *TASKS]))
        raise ValueError(f"model {model.name!r}: task {model.task!r} is none that training knows; tasks: {known}")
    return TASKS[model.task]


def run(model, options: TrainOptions):
    """Train ``model`` by the runner of its task (gradient descent when none is registered),
    after checking the options: their values (`validation.check_options`), the backend's
    name, and that the runner honours every option given (`options.check_honoured`)."""
    check_options(options)
    if options.backend not in BACKENDS:   # even for a runner that never builds a backend
        raise UnknownNameError(f"--backend {options.backend}: unknown backend {options.backend!r}; "
                               f"available: {', '.join(sorted(BACKENDS))}")
    runner = runner_of(model)
    check_honoured(model, options, runner.honours, runner.rule, runner.why)
    _check_outputs(options)
    return runner(model, options)


def _check_outputs(options: TrainOptions) -> None:
    """The files written after training: one that cannot be written fails now, named as given
    (not after the training, by the name of the temporary file beside it)."""
    for flag, given, target in (("--checkpoint", options.checkpoint, checkpoint_path),
                                ("--plot", options.plot, lambda path: path)):
        if given:
            try:
                check_writable(target(given))
            except OSError as e:
                raise OSError(f"{flag} {given}: {e}") from None
            if flag == "--plot":
                try:
                    figure_format(given)
                except ValueError as e:
                    raise ValueError(f"{flag} {e}") from None


def _shown(key):
    """'val_accuracy' → 'validation accuracy', 'test_loss' → 'test loss'."""
    prefix, _, name = key.partition("_")
    return f"{'validation' if prefix == 'val' else prefix} {name}"


def row_label(row) -> str:
    """'step      50' or 'epoch    3': what a history row counts, padded for a column."""
    return f"step {row['step']:>7}" if "step" in row else f"epoch {row['epoch']:>4}"


def _row_printer(loss_name, report):
    def log(row):
        where = row_label(row)
        measured = "".join(f"  {_shown(k)} {v:.4f}" for k, v in row.items()
                           if k not in ("epoch", "step", "loss", "test_loss"))
        report(f"{where}  {loss_name} {row['loss']:.10g}{measured}")
    return log


# -- checkpoints, resume and curves: the same for every runner ------------------------------------

def resume_trainer(trainer, opts: TrainOptions) -> None:
    """``--resume``: continue ``trainer`` exactly where the checkpoint left off."""
    if opts.resume:
        trainer.load(opts.resume)
        opts.report(f"resumed from {opts.resume} (epoch {trainer.epoch}) at step {trainer.backend.steps}")


def finish_trainer(trainer, opts: TrainOptions) -> None:
    """``--checkpoint`` and ``--plot`` at the end of a run."""
    if opts.checkpoint:
        opts.report(f"checkpoint saved to {trainer.save(opts.checkpoint)}")
    if opts.plot:
        opts.report(f"training curves saved to {trainer.plot(opts.plot)}")


def checkpoint_callbacks(opts: TrainOptions) -> list:
    """``--checkpoint``: saved after every epoch (a crashed run can --resume from it) and at the end."""
    return [ModelCheckpoint(opts.checkpoint, epochs_only=True)] if opts.checkpoint else []


def _rule_checkpoint(model, opts, params, epoch) -> None:
    if opts.checkpoint:
        full = {**model.initial_params(), **params}
        opts.report(f"checkpoint saved to {save_checkpoint(opts.checkpoint, model, full, epoch=epoch)}")


def _rule_plot(opts, curves, ylabel, title) -> None:
    if opts.plot and opts.writes_files:
        opts.report(f"curves saved to {plot_curves(curves, opts.plot, xlabel=curves.xlabel, ylabel=ylabel, title=title)}")


# -- gradient descent ----------------------------------------------------------------------------

def train_by_gradient_descent(model, opts: TrainOptions):
    """The Trainer with the options: validation, early stopping, checkpoints, curves, metrics."""
    report = opts.report
    started = time.perf_counter()
    validation = opts.validation_split
    if opts.patience and validation is None:
        validation = 0.1
        report("early stopping watches a validation set: 10% of the training data (--validation-split)")
    trainer = Trainer(model, **opts.trainer_kwargs(), comm=opts.comm, data=opts.dataset(model),
                      test_fraction=opts.test_fraction, validation_split=validation)
    resume_trainer(trainer, opts)
    report(f"training {model.name} on {opts.backend} ({trainer.optimizer!r}, "
           f"batch {trainer.batch_size or 'full'}, {opts.dtype})")
    epochs, steps = opts.schedule(model)
    trainer.fit(epochs=epochs, steps=steps, log=_row_printer(model.loss.label(), report), progress=opts.progress,
                early_stopping=opts.patience, callbacks=checkpoint_callbacks(opts))
    kept = trainer.kept_row
    if trainer.early_stopping is not None and kept is not None and kept is not trainer.history.records[-1]:
        where = f"epoch {kept['epoch']}" if "epoch" in kept else f"step {kept['step']}"
        why = "early stopping" if trainer.stopped_early else "best"
        report(f"{why}: no better {trainer.early_stopping.monitor} after {where}; kept its parameters")
    if opts.verbose:
        report(f"trained in {time.perf_counter() - started:.2f} s (including compilation)")
    if kept is not None:
        report(f"final loss: {kept['loss']:.10g}")   # the kept parameters' row, not the last one's
    for split, name in (("validation", "validation"), ("test", "test")):
        if getattr(trainer.data, split) is not None:
            for metric, value in trainer.evaluate(split=split).items():
                if metric != "loss":
                    report(f"{name} {metric}: {value:.4f}")
    finish_trainer(trainer, opts)
    return trainer


#: the runner of 'classification', 'regression' and any task no runner claims: every option
GRADIENT_DESCENT = Runner(train_by_gradient_descent, frozenset(OPTIONS), "gradient descent")


# -- the perceptron rule -------------------------------------------------------------------------

def train_perceptron(model, opts: TrainOptions):
    """Rosenblatt's rule from zero weights (or ``--resume``'s); the misclassified count per epoch."""
    report = opts.report
    epochs = opts.epochs or model.defaults.get("epochs", 20)
    start, done = None, 0
    if opts.resume:
        ck = load_checkpoint(opts.resume, model)
        start, done = ck.params, ck.epoch
        report(f"resumed from {opts.resume} (epoch {done})")
    result = perceptron.train(model, lr=opts.lr or model.defaults.get("lr", 0.1), max_epochs=epochs, start=start)
    for epoch, wrong in enumerate(result.errors, done + 1):
        report(f"epoch {epoch:>4}  misclassified {wrong}")
    weights = ", ".join(f"{n}={v:g}" for p, arr in result.weights.items()
                        for n, v in zip(p.names[0], np.ravel(arr)))
    state = "converged" if result.converged else "did not converge"
    report(f"perceptron rule {state} after {done + result.epochs} epochs: {weights}")
    X, T = model.data.train["x"], model.data.train["t"]
    out = perceptron.predict(model, result.weights, X)
    report("truth table (x1 x2 -> o / t):")
    for x, o, t in zip(X, out, T):
        report(f"  {x[0]:g} {x[1]:g} -> {o[0]:g} / {t[0]:g}")
    report(f"final loss: {float(np.sum((out - T) ** 2) / 2):.10g}")
    _rule_checkpoint(model, opts, result.weights, done + result.epochs)
    _rule_plot(opts, Curves("epoch", {"misclassified": (range(done + 1, done + 1 + len(result.errors)),
                                                        result.errors)}),
               "misclassified examples", f"{model.name}: the perceptron rule")
    return result


# -- Hopfield: storage and recall ----------------------------------------------------------------

def _fmt(v):
    return "(" + ", ".join(f"{x:+g}" if x else "0" for x in v) + ")"


def train_hopfield(model, opts: TrainOptions):
    """Store the model's patterns (Hebb) and recall from its probe, both ways."""
    report = opts.report
    P = model.extras["patterns"]
    W_node = model.extras["W"]
    if opts.resume:
        W = load_checkpoint(opts.resume, model).params[W_node]
        report(f"resumed from {opts.resume}: the stored weights")
    else:
        W = hebbian(P)
    report(f"storing {len(P)} pattern(s) of {P.shape[1]} units by the Hebbian rule W = Σ p pᵀ, w_ii = 0:")
    for p in P:
        report(f"  p = {_fmt(p)}")
    report("W =")
    for row in W:
        report("  [" + " ".join(f"{x:+3g}" if x else "  0" for x in row) + "]")
    results = {}
    probe = model.example["v"][0]
    steps = opts.steps or model.defaults.get("steps", 10)
    for mode in ("sync", "async"):
        r = recall(model, probe, mode=mode, max_steps=steps, params={W_node: W})
        results[mode] = r
        report(f"\n{mode}hronous recall from v = {_fmt(probe)}  (E = {r.energies[0]:g})")
        for k, (net, state, e, i) in enumerate(zip(r.nets, r.states[1:], r.energies[1:], r.updated), 1):
            who = f"unit {i + 1}" if i is not None else "all units"
            report(f"  step {k:>2} ({who}): net = {_fmt(net)} -> v = {_fmt(state)}  E = {e:g}")
        status = "converged" if r.converged else "cycles between states" if r.cycle else "stopped"
        if any(np.array_equal(r.final, p) for p in P):
            found = " = a stored pattern"
        elif any(np.array_equal(r.final, -p) for p in P):
            found = " = the negative of a stored pattern (also a minimum of E)"
        else:
            found = ""
        report(f"  {status}; final state {_fmt(r.final)}{found}")
    _rule_checkpoint(model, opts, {W_node: W}, 0)
    _rule_plot(opts, Curves("update", {f"{m}hronous": (range(len(r.energies)), r.energies)
                                       for m, r in results.items()}), "energy E", f"{model.name}: recall")
    return results


# -- autoencoders --------------------------------------------------------------------------------

def train_reconstruction(model, opts: TrainOptions):
    """The (denoising) autoencoders: train, then report reconstruction errors."""
    report = opts.report
    trainer = pretraining.make_trainer(model, **opts.trainer_kwargs(), comm=opts.comm)
    resume_trainer(trainer, opts)
    report(f"training {model.name} on {opts.backend} ({trainer.optimizer!r}, "
           f"batch {trainer.batch_size or 'full'}, {opts.dtype})")
    epochs, steps = opts.schedule(model)
    trainer.fit(epochs=epochs, steps=steps, log=_row_printer(model.loss.label(), report), progress=opts.progress,
                callbacks=checkpoint_callbacks(opts))
    report(f"final loss: {trainer.history.last():.10g}")
    errs = pretraining.reconstruction_errors(model, trainer.params)
    report(f"test reconstruction error (MSE per pixel): {errs['reconstruction']:.5f}   "
           f"predicting the mean image: {errs['mean image']:.5f}")
    if "noise" in model.extras:
        noisy = pretraining.reconstruction_errors(model, trainer.params, corrupted=True)
        report(f"denoising ({model.extras['noise']} {model.extras['level']:g}) test MSE: corrupted input "
               f"{noisy['corrupted input']:.5f} -> reconstruction {noisy['reconstruction']:.5f}")
    finish_trainer(trainer, opts)
    return trainer


def train_stacked(model, opts: TrainOptions):
    """Pretrain greedily, fine-tune, and compare with the same net not pretrained.

    ``--checkpoint`` saves the fine-tuned pretrained classifier (after every epoch and at
    the end); ``--resume`` continues that fine-tuning from it (no second pretraining);
    ``--plot`` draws both classifiers' curves. ``--lr``/``--lr-schedule``, ``--optimizer`` and
    ``--batch-size`` set the fine-tuning (the pretraining stages keep their own); the backend,
    dtype, seed and ``--no-progress`` apply to every stage.
    """
    report = opts.report
    if opts.resume:
        report(f"resuming the fine-tuning from {opts.resume} (no pretraining)")
    else:
        report(f"greedy layer-wise pretraining of {len(model.extras['stages'])} tied autoencoders "
               f"({'-'.join(map(str, model.extras['sizes']))}) on {opts.backend}")
    trainers: dict = {}

    def log(label, row):
        report(f"[{label}] epoch {row['epoch']:>4}  CE {row['loss']:.6g}  test accuracy "
               f"{row['test_accuracy']:.4f}")
        if opts.checkpoint and label == "pretrained":
            trainers[label].save(opts.checkpoint)

    results, errors = pretraining.compare_pretraining(model, epochs=opts.epochs, log=log, resume=opts.resume,
                                                      trainers=trainers, progress=opts.progress,
                                                      **opts.trainer_kwargs(), comm=opts.comm)
    for k, (rec, mean_img) in enumerate(errors, start=1):
        report(f"stage {k}: test reconstruction error {rec:.5f} (predicting the mean: {mean_img:.5f})")
    report(f"test accuracy: {results['pretrained']:.4f}")
    report(f"without pretraining: test accuracy {results['no pretraining']:.4f}")
    if opts.checkpoint:
        report(f"checkpoint saved to {trainers['pretrained'].save(opts.checkpoint)}")
    _rule_plot(opts, Curves("epoch", {f"test accuracy, {label}": (t.history.column("epoch"),
                                                                  t.history.column("test_accuracy"))
                                      for label, t in trainers.items()}),
               "test accuracy", f"{model.name}: fine-tuning")
    return results


# What each runner honours (options.py): the perceptron rule and Hopfield storage compute on the
# NumPy reference in float64 with no optimizer; the autoencoders train through a Trainer.
_BY_EPOCHS = "counts epochs (use --epochs)"
_REFERENCE = {"backend": "runs on the NumPy reference only", "dtype": "computes in float64",
              "optimizer": "has its own update, no optimizer", "seed": "is deterministic"}
register_task("perceptron", train_perceptron, honours={"lr", "epochs", *FILES}, rule="the perceptron rule",
              why={**_REFERENCE, "steps": _BY_EPOCHS, "batch_size": "updates after every example",
                   "lr_schedule": "uses one constant rate (--lr)"})
register_task("hopfield", train_hopfield, honours={"steps", *FILES}, rule="Hebbian storage and recall",
              why={**_REFERENCE, "epochs": "stores the patterns in one step (--steps bounds the recall)",
                   "lr": "has no learning rate", "lr_schedule": "has no learning rate"})
register_task("reconstruction", train_reconstruction, honours={*TRAINER, "epochs", "steps", "comm", *FILES},
              rule="gradient descent on the reconstruction error")
register_task("stacked-autoencoder", train_stacked, honours={*TRAINER, "epochs", "comm", *FILES},
              rule="greedy pretraining, then fine-tuning", why={"steps": _BY_EPOCHS})

__all__ = ["GRADIENT_DESCENT", "Runner", "TASKS", "TrainOptions", "register_task", "run", "runner_of", "train_by_gradient_descent", "train_hopfield",
           "train_perceptron", "train_reconstruction", "train_stacked"]
