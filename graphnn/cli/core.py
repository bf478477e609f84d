"""``graphnn models``, ``graphnn show MODEL``, ``graphnn train MODEL``."""
from __future__ import annotations

import argparse
import dataclasses

from .. import models
from ..graph import Graph
from ..ops.base import fmt_shape
from .common import add_model_arguments, resolve_model


def register(sub):
    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("show", help="print a model's graph as text: ops, names, shapes")
    add_model_arguments(p, "show")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("train", help="train a model and report its loss (and accuracy)")
    add_model_arguments(p, "train")
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
    p.add_argument("--data", metavar="FILE",
                   help="train on your own data: a .npz (one array per input name) or .csv (columns named "
                        "in the model: see docs/own-data.md)")
    p.add_argument("--test-data", metavar="FILE", help="a test set in the same format (with --data)")
    p.add_argument("--validation-split", type=float,
                   help="hold out this fraction of the training data as a validation set (early stopping "
                        "watches it)")
    p.add_argument("--lr-schedule", metavar="EXPR",
                   help="the learning rate as an expression in the step count t, e.g. '0.5*0.99**t' "
                        "(no recompilation; instead of --lr; never negative)")
    p.add_argument("--patience", type=int,
                   help="early stopping: stop after this many epochs without a better validation loss "
                        "(validation split 0.1 unless --validation-split)")
    p.add_argument("--checkpoint", metavar="PATH", help="save parameters (with the graph hash) here after every epoch and at the end")
    p.add_argument("--resume", metavar="PATH", help="start from a checkpoint saved from the same graph")
    p.add_argument("--plot", metavar="PNG", help="save the training curves as a PNG")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default: on)")
    p.add_argument("--background-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="start training at once on the numpy reference while the compiled backend compiles "
                        "in the background, then switch (default: on for --backend cpu)")
    p.add_argument("--verbose", action="store_true",
                   help="say whether compiled code came from the cache, and when training switched to it")
    p.set_defaults(func=cmd_train)


def cmd_models(args):
    builders = models.available()
    width = max(map(len, builders))
    for name, fn in builders.items():
        print(f"{name:<{width}}  {fn.summary}")


def cmd_show(args):
    model = resolve_model(args)
    print(f"# {model.name}: {model.description}")
    print(graph_text(Graph([model.loss, model.output])))
    print(f"# loss: {model.loss.label()}   output: {model.output.label()}")


def graph_text(graph: Graph) -> str:
    """One line per node: %k = op(operands)  name (shape)  [element names]; an op that holds
    a number shows its formula (``%4 = 1 − %3``, ``%3 = 3·%2``), the same text the ops view draws."""
    from ..draw.labels import op_label, shows_formula

    ids = {n: f"%{i}" for i, n in enumerate(graph.nodes)}
    lines = []
    for n in graph.nodes:
        if n.inputs and shows_formula(n):
            what = op_label(n, ids, html=False)
        elif n.inputs:
            args = ", ".join(ids[x] for x in n.inputs)
            what = f"{n.op.label(n)}({args})"
        else:
            what = n.kind + ("" if n.kind != "parameter" or n.trainable else " (fixed)")
        name = n.name or ""
        elems = f"  [{', '.join(n.names[0])}]" if n.names else ""
        lines.append(f"{ids[n]:>4} = {what:<28} {name:<14} {fmt_shape(n.shape)}{elems}")
    return "\n".join(lines)


def cmd_train(args):
    """Train by the runner of the model's task (graphnn.training.tasks)."""
    from ..training import tasks

    if getattr(args, "distributed", False) and not hasattr(args, "comm"):
        from ..training.distributed import run_cli  # imports mpi4py; rank 0 prints, a failure stops all
        return run_cli(cmd_train, args)
    model = resolve_model(args)
    fields = {f.name for f in dataclasses.fields(tasks.TrainOptions)} - {"report"}
    options = tasks.TrainOptions(**{k: getattr(args, k) for k in fields if getattr(args, k, None) is not None})
    tasks.run(model, options)
