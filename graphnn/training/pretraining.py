"""Autoencoders: reconstruction errors and greedy layer-wise pretraining.

`reconstruction_errors`, `pretrain_stacked` and `compare_pretraining` (tasks.py runs them
for ``graphnn train autoencoder`` and ``graphnn train stacked-autoencoder``). Every
trainer runs in training mode (`with_training_feeds`), so the denoising autoencoder's
corruption and any dropout are active while training only.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..data import Dataset
from ..evaluate import evaluate
from ..ops.dropout import STEP, TRAINING
from .backends import with_training_feeds
from .trainer import Trainer


def make_trainer(model, **kw) -> Trainer:
    """A Trainer in training mode (``kw`` as for `Trainer`, ``comm`` included)."""
    return with_training_feeds(Trainer(model, **kw))


def reconstruction_errors(model, params, split="test", corrupted=False):
    """Mean squared error per pixel of the reconstruction, and of predicting the mean training image.

    With ``corrupted`` (denoising), the input is corrupted as in training (a fixed step)
    and the error is still measured against the clean images; also returns the corrupted
    input's own error.
    """
    x_node = model.inputs[0]
    clean = (model.data.test if split == "test" else model.data.train)[x_node.name]
    feeds = {x_node: clean}
    if corrupted:
        feeds.update({TRAINING: 1.0, STEP: 10 ** 6})
    out = {"reconstruction": float(np.mean((evaluate(model.output, feeds, params) - clean) ** 2)),
           "mean image": float(np.mean((model.data.train[x_node.name].mean(axis=0) - clean) ** 2))}
    if corrupted:
        x_tilde = model.find("x̃")
        out["corrupted input"] = float(np.mean((evaluate(x_tilde, feeds, params) - clean) ** 2))
    return out


# -- stacked autoencoder -------------------------------------------------------------------

#: Trainer keywords that say how a run computes rather than what it optimizes: the pretraining
#: stages take these from the caller too (their optimizer, rate and batch size are their own)
RUN_SETTINGS = ("backend", "dtype", "seed", "background_compile", "backend_options", "comm")


def pretrain_stacked(model, *, backend="numpy", epochs=None, lr=None, seed=0, log=None, progress=None, **run):
    """Greedy layer-wise pretraining: each stage's tied autoencoder trained on the codes below.

    ``run``: more of `RUN_SETTINGS` (dtype, …) for every stage's Trainer; ``progress`` as for
    `Trainer.fit`. Returns (params for the classifier: every parameter, encoders pretrained;
    per-stage reconstruction errors [(test MSE, mean-image MSE)]).
    """
    params = model.initial_params()
    train_x, test_x = model.data.train["x"], model.data.test["x"]
    errors = []
    for stage in model.extras["stages"]:
        data = Dataset({stage.inputs[0].name: train_x}, {stage.inputs[0].name: test_x})
        trainer = make_trainer(stage, backend=backend, data=data, lr=lr, seed=seed, **run)
        trainer.fit(epochs=epochs or stage.defaults["epochs"], log=log, progress=progress)
        stage_params = trainer.params
        for p, v in stage_params.items():
            params[p] = np.array(v, dtype=np.float64)
        feeds_tr, feeds_te = {stage.inputs[0]: train_x}, {stage.inputs[0]: test_x}
        recon = evaluate(stage.output, feeds_te, stage_params)
        errors.append((float(np.mean((recon - test_x) ** 2)), float(np.mean((train_x.mean(0) - test_x) ** 2))))
        code = stage.extras["code"]  # the next stage trains on this stage's codes
        train_x, test_x = evaluate(code, feeds_tr, stage_params), evaluate(code, feeds_te, stage_params)
    return params, errors


def compare_pretraining(model, *, backend="numpy", epochs=None, pretrain_epochs=None, lr=None, seed=0,
                        log=None, resume=None, trainers=None, progress=None, **trainer_kw):
    """Test accuracy of the classifier fine-tuned from pretrained encoders vs from random weights.

    ``resume``: a checkpoint of the pretrained classifier to continue fine-tuning from (no
    pretraining is run; the stage errors are then empty). ``trainers``: a dict to receive
    each classifier's Trainer by label, before it trains (to save or plot it).
    ``trainer_kw``: more `Trainer` keywords for the fine-tuning (optimizer, batch_size, dtype,
    …); those in `RUN_SETTINGS` apply to the pretraining stages too. ``progress``: as for
    `Trainer.fit`, every stage.
    """
    run = {k: v for k, v in trainer_kw.items() if k in RUN_SETTINGS}
    if resume is None:
        params, errors = pretrain_stacked(model, backend=backend, epochs=pretrain_epochs, seed=seed,
                                          progress=progress, **run)
    else:
        params, errors = None, []
    epochs = epochs or model.defaults["epochs"]
    classifier = dataclasses.replace(model, task="classification")  # fine-tuning is plain classification
    results = {}
    trainers = {} if trainers is None else trainers
    for label, start in (("pretrained", params), ("no pretraining", None)):
        trainer = trainers[label] = make_trainer(classifier, backend=backend, lr=lr, seed=seed, params=start,
                                                 **trainer_kw)
        if resume is not None and label == "pretrained":
            trainer.load(resume)
        trainer.fit(epochs=epochs, log=(lambda row, label=label: log(label, row)) if log else None,
                    progress=progress)
        results[label] = trainer.accuracy("test")
    return results, errors
