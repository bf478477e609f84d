"""Training the zoo's autoencoders: reconstruction reports and greedy layer-wise pretraining.

Registered in `graphnn.train.TASK_TRAINERS`, so ``graphnn train autoencoder`` (task
'reconstruction') and ``graphnn train stacked-autoencoder`` (task 'stacked-autoencoder')
land here; the Python API is `reconstruction_errors`, `pretrain_stacked` and
`compare_pretraining`. Every trainer runs in training mode (`with_training_feeds`), so the
denoising autoencoder's corruption and any dropout are active while training only.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..data import Dataset
from ..evaluate import evaluate
from ..ops.dropout import STEP, TRAINING, with_training_feeds
from ..train import TASK_TRAINERS, Trainer


def make_trainer(model, args=None, **kw) -> Trainer:
    """A Trainer in training mode, with the CLI's options (``args``) where given."""
    opts = {}
    if args is not None:
        opts = dict(backend=args.backend, optimizer=args.optimizer, lr=args.lr,
                    batch_size=args.batch_size, dtype=args.dtype, seed=args.seed)
    opts.update(kw)
    return with_training_feeds(Trainer(model, **opts))


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


def _fit(trainer, args, log):
    epochs = args.epochs if args is not None else None
    steps = args.steps if args is not None else None
    if epochs is None and steps is None:
        epochs, steps = trainer.model.defaults.get("epochs"), trainer.model.defaults.get("steps")
    return trainer.fit(epochs=epochs, steps=steps, log=log)


def _printer(loss_name):
    def log(row):
        where = f"step {row['step']:>7}" if "step" in row else f"epoch {row['epoch']:>4}"
        acc = f"  test accuracy {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
        print(f"{where}  {loss_name} {row['loss']:.10g}{acc}", flush=True)
    return log


def train_reconstruction(model, args):
    """CLI trainer for the (denoising) autoencoders: train, then report reconstruction errors."""
    trainer = make_trainer(model, args)
    print(f"training {model.name} on {args.backend} ({trainer.optimizer!r}, batch {trainer.batch_size or 'full'}, "
          f"{args.dtype})")
    _fit(trainer, args, _printer(model.loss.label()))
    print(f"final loss: {trainer.history.last():.10g}")
    errs = reconstruction_errors(model, trainer.params)
    print(f"test reconstruction error (MSE per pixel): {errs['reconstruction']:.5f}   "
          f"predicting the mean image: {errs['mean image']:.5f}")
    if "noise" in model.extras:
        noisy = reconstruction_errors(model, trainer.params, corrupted=True)
        print(f"denoising ({model.extras['noise']} {model.extras['level']:g}) test MSE: corrupted input "
              f"{noisy['corrupted input']:.5f} -> reconstruction {noisy['reconstruction']:.5f}")


# -- stacked autoencoder -------------------------------------------------------------------

def pretrain_stacked(model, *, backend="numpy", epochs=None, lr=None, seed=0, log=None):
    """Greedy layer-wise pretraining: each stage's tied autoencoder trained on the codes below.

    Returns (params for the classifier: every parameter, encoders pretrained; per-stage
    reconstruction errors [(test MSE, mean-image MSE)]).
    """
    params = model.initial_params()
    train_x, test_x = model.data.train["x"], model.data.test["x"]
    errors = []
    for stage in model.extras["stages"]:
        data = Dataset({stage.inputs[0].name: train_x}, {stage.inputs[0].name: test_x})
        trainer = make_trainer(stage, backend=backend, data=data, lr=lr, seed=seed)
        trainer.fit(epochs=epochs or stage.defaults["epochs"], log=log)
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
                        log=None):
    """Test accuracy of the classifier fine-tuned from pretrained encoders vs from random weights."""
    params, errors = pretrain_stacked(model, backend=backend, epochs=pretrain_epochs, seed=seed)
    epochs = epochs or model.defaults["epochs"]
    classifier = dataclasses.replace(model, task="classification")  # fine-tuning is plain classification
    results = {}
    for label, start in (("pretrained", params), ("no pretraining", None)):
        trainer = make_trainer(classifier, backend=backend, lr=lr, seed=seed, params=start)
        trainer.fit(epochs=epochs, log=(lambda row, label=label: log(label, row)) if log else None)
        results[label] = trainer.accuracy("test")
    return results, errors


def train_stacked(model, args):
    """CLI trainer: pretrain greedily, fine-tune, and compare with the same net not pretrained."""
    print(f"greedy layer-wise pretraining of {len(model.extras['stages'])} tied autoencoders "
          f"({'-'.join(map(str, model.extras['sizes']))}) on {args.backend}")

    def log(label, row):
        print(f"[{label}] epoch {row['epoch']:>4}  CE {row['loss']:.6g}  test accuracy {row['test_accuracy']:.4f}",
              flush=True)

    results, errors = compare_pretraining(model, backend=args.backend, epochs=args.epochs, lr=args.lr,
                                          seed=args.seed, log=log)
    for k, (rec, mean_img) in enumerate(errors, start=1):
        print(f"stage {k}: test reconstruction error {rec:.5f} (predicting the mean: {mean_img:.5f})")
    print(f"test accuracy: {results['pretrained']:.4f}")
    print(f"without pretraining: test accuracy {results['no pretraining']:.4f}")


TASK_TRAINERS["reconstruction"] = train_reconstruction
TASK_TRAINERS["stacked-autoencoder"] = train_stacked
