"""``graphnn models``, ``graphnn show MODEL``, ``graphnn train MODEL``."""
from __future__ import annotations

import argparse
import time

import numpy as np

from .. import models
from ..graph import Graph
from ..ops.base import fmt_shape


def register(sub):
    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("show", help="print a model's graph as text: ops, names, shapes")
    p.add_argument("model", help="a built-in model name or a Python file defining build()")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("train", help="train a model and report its loss (and accuracy)")
    p.add_argument("model", help="a built-in model name or a Python file defining build()")
    p.add_argument("--backend", default="numpy", help="numpy (reference), cpu (Numba), cuda")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="number of updates")
    group.add_argument("--epochs", type=int, help="number of passes over the training data")
    p.add_argument("--lr", type=float, help="learning rate (default: the model's)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (default: the model's; full batch if none)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], help="default: the model's (sgd)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks: mpiexec -n N graphnn train ... --distributed "
                        "(needs graphnn[mpi])")
    p.add_argument("--test-fraction", type=float,
                   help="hold out this fraction of the data as a test set (data without one)")
    p.add_argument("--patience", type=int,
                   help="early stopping: stop after this many epochs without a better test loss")
    p.add_argument("--checkpoint", metavar="PATH", help="save parameters (with the graph hash) here after every epoch and at the end")
    p.add_argument("--resume", metavar="PATH", help="start from a checkpoint saved from the same graph")
    p.add_argument("--plot", metavar="PNG", help="save the training curves as a PNG")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default: on)")
    p.add_argument("--verbose", action="store_true", help="say whether compiled code came from the cache")
    p.set_defaults(func=cmd_train)


def cmd_models(args):
    builders = models.available()
    width = max(map(len, builders))
    for name, fn in builders.items():
        print(f"{name:<{width}}  {fn.summary}")


def cmd_show(args):
    model = models.resolve(args.model)
    print(f"# {model.name}: {model.description}")
    print(graph_text(Graph([model.loss, model.output])))
    print(f"# loss: {model.loss.label()}   output: {model.output.label()}")


def graph_text(graph: Graph) -> str:
    """One line per node: %k = op(operands)  name (shape)  [element names]."""
    ids = {n: f"%{i}" for i, n in enumerate(graph.nodes)}
    lines = []
    for n in graph.nodes:
        if n.inputs:
            args = ", ".join(ids[x] for x in n.inputs)
            what = f"{n.op.label(n)}({args})"
        else:
            what = n.kind + ("" if n.kind != "parameter" or n.trainable else " (fixed)")
        name = n.name or ""
        elems = f"  [{', '.join(n.names[0])}]" if n.names else ""
        lines.append(f"{ids[n]:>4} = {what:<28} {name:<14} {fmt_shape(n.shape)}{elems}")
    return "\n".join(lines)


def cmd_train(args):
    from .. import perceptron
    from ..train import TASK_TRAINERS, Trainer

    if getattr(args, "distributed", False) and not hasattr(args, "comm"):
        from ..distributed import run_cli  # imports mpi4py; rank 0 prints, a failure stops all
        return run_cli(cmd_train, args)
    model = models.resolve(args.model)
    if getattr(args, "comm", None) is not None and (model.task == "perceptron" or model.task in TASK_TRAINERS):
        raise ValueError(f"--distributed trains gradient-descent models; {model.name!r} is task {model.task!r}")
    if model.task == "perceptron":
        return _train_perceptron(model, args, perceptron)
    if model.task in TASK_TRAINERS:
        return TASK_TRAINERS[model.task](model, args)
    options = {"verbose": True} if getattr(args, "verbose", False) and args.backend != "numpy" else {}
    started = time.perf_counter()
    trainer = Trainer(model, backend=args.backend, optimizer=args.optimizer, lr=args.lr,
                      batch_size=args.batch_size, dtype=args.dtype, seed=args.seed,
                      comm=getattr(args, "comm", None), test_fraction=getattr(args, "test_fraction", None),
                      backend_options=options)
    if getattr(args, "resume", None):
        trainer.load(args.resume)
        print(f"resumed from {args.resume} (epoch {trainer.epoch})")
    loss_name = model.loss.label()
    print(f"training {model.name} on {args.backend} ({trainer.optimizer!r}, "
          f"batch {trainer.batch_size or 'full'}, {args.dtype})")

    def log(row):
        where = f"step {row['step']:>7}" if "step" in row else f"epoch {row['epoch']:>4}"
        acc = f"  test accuracy {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
        print(f"{where}  {loss_name} {row['loss']:.10g}{acc}", flush=True)
        if getattr(args, "checkpoint", None) and "epoch" in row:
            trainer.save(args.checkpoint)  # every epoch: a crashed (MPI) run can --resume from it

    steps, epochs = args.steps, args.epochs
    if steps is None and epochs is None:
        steps, epochs = model.defaults.get("steps"), model.defaults.get("epochs")
    trainer.fit(epochs=epochs, steps=steps, log=log, progress=getattr(args, "progress", False),
                early_stopping=getattr(args, "patience", None))
    if trainer.stopped_early:
        best = trainer.early_stopping.best_row
        where = f"epoch {best['epoch']}" if "epoch" in best else f"step {best['step']}"
        print(f"early stopping: no better {trainer.early_stopping.monitor} for {args.patience} evaluations; "
              f"kept the parameters of {where}")
    if getattr(args, "verbose", False):
        print(f"trained in {time.perf_counter() - started:.2f} s (including compilation)")
    print(f"final loss: {trainer.history.last():.10g}")
    if model.task == "classification" and trainer.data.test is not None:
        print(f"test accuracy: {trainer.accuracy('test'):.4f}")
    if getattr(args, "checkpoint", None):
        print(f"checkpoint saved to {trainer.save(args.checkpoint)}")
    if getattr(args, "plot", None):
        print(f"training curves saved to {trainer.plot(args.plot)}")


def _train_perceptron(model, args, perceptron):
    epochs = args.epochs or model.defaults.get("epochs", 20)
    result = perceptron.train(model, lr=args.lr or model.defaults.get("lr", 0.1), max_epochs=epochs)
    for epoch, wrong in enumerate(result.errors, 1):
        print(f"epoch {epoch:>4}  misclassified {wrong}")
    weights = ", ".join(f"{n}={v:g}" for p, arr in result.weights.items()
                        for n, v in zip(p.names[0], np.ravel(arr)))
    state = "converged" if result.converged else "did not converge"
    print(f"perceptron rule {state} after {result.epochs} epochs: {weights}")
    X, T = model.data.train["x"], model.data.train["t"]
    out = perceptron.predict(model, result.weights, X)
    print("truth table (x1 x2 -> o / t):")
    for x, o, t in zip(X, out, T):
        print(f"  {x[0]:g} {x[1]:g} -> {o[0]:g} / {t[0]:g}")
    print(f"final loss: {float(np.sum((out - T) ** 2) / 2):.10g}")
