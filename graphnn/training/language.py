"""Language models: training with n-gram baselines beside the loss, and sampling text.

The task 'language-model' (the built-in ``transformer``) trains by gradient descent on
windows of the text, reports the validation loss in nats per character beside the unigram
and bigram models' (``model.extras['baselines']``), saves a checkpoint (``--checkpoint``,
default ``<model>.npz`` in the working directory: after every epoch and at the end;
``--resume`` continues from one) and prints a sample; ``--plot`` draws the curves. `generate` continues
a prompt one character at a time from a model's output logits; ``graphnn sample`` calls it
on a saved checkpoint.
"""
from __future__ import annotations

import numpy as np

from ..evaluate import Evaluator
from ..files import check_writable, keep_earlier
from .checkpoint import load_checkpoint
from .options import FILES, TRAINER
from .tasks import TrainOptions, checkpoint_callbacks, register_task, resume_trainer, row_label
from .trainer import Trainer


def default_checkpoint(model) -> str:
    """Where a language model's checkpoint goes unless ``--checkpoint`` says otherwise."""
    return f"{model.name}.npz"


def generate(model, params, prompt: str = "\n", length: int = 200, temperature: float = 0.8,
             seed: int = 0, predict=None) -> str:
    """``prompt`` followed by ``length`` characters drawn one at a time from softmax(logits/T).

    The model's first input is a window of ``block`` token ids and its output the logits
    (1, block, V); attention is causal, so the prompt sits at the start of the window (the
    positions after it do not influence it) and slides once it is longer than the window.
    ``predict(feeds)`` defaults to the NumPy reference evaluator with ``params``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    vocab = model.extras["vocab"]
    tokens = model.inputs[0]
    block = tokens.shape[1]
    ids = list(vocab.encode(prompt or "\n"))
    if predict is None:
        ev = Evaluator(model.output)
        predict = (lambda feeds: ev(feeds, params))  # noqa: E731
    rng = np.random.default_rng(seed)
    for _ in range(length):
        window = ids[-block:]
        feed = np.zeros((1, block), dtype=np.int64)
        feed[0, :len(window)] = window
        logits = np.asarray(predict({tokens.name: feed}), dtype=np.float64)[0, len(window) - 1] / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return vocab.decode(ids)


def sample_from_checkpoint(model, path, **kw) -> str:
    """`generate` with the parameters of a checkpoint saved from ``model``'s graph."""
    ck = load_checkpoint(path, model)
    params = {**model.initial_params(), **ck.params}
    return generate(model, params, **kw)


def train_language_model(model, opts: TrainOptions):
    """Gradient descent with validation loss, the n-gram baselines, a checkpoint and a sample."""
    report = opts.report
    if not opts.checkpoint:   # the default checkpoint: a folder that takes no file fails now, not at the end
        try:
            check_writable(default_checkpoint(model))
        except OSError as e:
            raise OSError(f"the checkpoint {default_checkpoint(model)} (the default, in the working directory): "
                          f"{e}; pass --checkpoint PATH") from None
    trainer = Trainer(model, **opts.trainer_kwargs(), comm=opts.comm)
    resume_trainer(trainer, opts)
    base = model.extras["baselines"]
    report(f"training {model.name} on {opts.backend} ({trainer.optimizer!r}, batch {trainer.batch_size}, "
           f"{opts.dtype}): {model.data.n_train} windows of {model.inputs[0].shape[1]} characters")
    report(f"baselines on the validation text: unigram {base['unigram']:.4f}, bigram {base['bigram']:.4f} "
           "nats/character")

    def log(row):
        report(f"{row_label(row)}  train CE {row['loss']:.4f}  "
               f"validation CE {row['val_loss']:.4f}")
    epochs, steps = opts.schedule(model)
    trainer.fit(epochs=epochs, steps=steps, log=log, progress=opts.progress, callbacks=checkpoint_callbacks(opts))
    val = trainer.evaluate(split="validation")["loss"]
    verdict = "below" if val < base["bigram"] else "NOT below"
    report(f"validation loss {val:.4f} nats/character: {verdict} the bigram baseline {base['bigram']:.4f} "
           f"(unigram {base['unigram']:.4f})")
    if not opts.checkpoint and opts.writes_files:
        # the default file: an earlier run's is kept, renamed, not overwritten
        kept = keep_earlier(default_checkpoint(model))
        if kept is not None:
            report(f"(the earlier {default_checkpoint(model)} is kept as {kept})")
    path = trainer.save(opts.checkpoint or default_checkpoint(model))
    report(f"checkpoint saved to {path} (graphnn sample {model.name} --checkpoint {path} --prompt …)")
    report("sample:\n" + generate(model, trainer.params, prompt="\n", length=160, seed=opts.seed))
    if opts.plot:
        report(f"training curves saved to {trainer.plot(opts.plot)}")
    return trainer


register_task("language-model", train_language_model, honours={*TRAINER, "epochs", "steps", "comm", *FILES},
              rule="gradient descent on windows of the text")
