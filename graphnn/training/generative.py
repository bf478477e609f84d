"""Task runners that are not one loss minimised over fixed data: the GAN's two players, the
diffusion model's fresh noise and reverse process, contrastive episodes.

- 'gan': the discriminator's and the generator's models (``model.extras``) each get a
  backend and an optimizer (Adam unless ``--optimizer`` says otherwise); per batch, one
  discriminator step on real data and fresh noise, then one generator step on fresh noise,
  each player's new weights copied into the other's backend (where ``stop_gradient`` holds them fixed). Reports both losses, the modes
  the samples cover, and draws samples against the data at several epochs.
- 'diffusion': every epoch a new draw of (t, ε) noises the clean data (the forward process);
  the network's MSE is trained on it; then `ddpm_sample` runs the reverse process from
  N(0, I), drawn at several steps, and the samples are compared with the data by the energy
  distance (beside the prior's).
- 'contrastive': new episodes every epoch; the zero-shot accuracy on the test digits.

Each returns what it trained. ``--checkpoint`` saves after every epoch (the GAN: both
players' weights), ``--resume`` continues from a checkpoint; the GAN's and the diffusion
model's pictures go to ``--plot`` (default ``<model>.png``), the contrastive model's
training curves too when asked.
"""
from __future__ import annotations

import numpy as np

from ..data.toy2d import energy_distance, modes_covered
from ..evaluate import Evaluator
from ..files import keep_earlier
from ..optim import make_optimizer
from .backends import make_backend
from .checkpoint import save_checkpoint
from .figures import scatter_panels
from .options import FILES, TRAINER
from .resume import read_checkpoint
from .tasks import TrainOptions, finish_trainer, register_task, resume_trainer
from .trainer import Trainer


def set_values(backend, values: dict) -> None:
    """Overwrite parameters ({node: array}) of a backend in place, on any backend."""
    setter = getattr(backend, "set_params", None)
    if setter is not None:
        return setter(values)
    for p, v in values.items():
        backend.params[p][...] = v


def _figure_path(model, opts, report):
    """``--plot``, else ``<model>.png`` in the working folder (an earlier one is kept, renamed)."""
    if opts.plot:
        return opts.plot
    kept = keep_earlier(f"{model.name}.png")
    if kept is not None:
        report(f"(the earlier {model.name}.png is kept as {kept})")
    return f"{model.name}.png"


def _epoch_done(trainer, opts) -> None:
    """``--checkpoint``: the trainer's state after every epoch (a crashed run can --resume)."""
    if opts.checkpoint:
        trainer.save(opts.checkpoint)


def _train_epochs(trainer, opts, epochs, fresh_data, line) -> None:
    """``epochs`` epochs, each on ``fresh_data()`` (a new draw); about ten lines reported,
    ``line(row)`` after the epoch number; the checkpoint after every epoch."""
    every = max(1, epochs // 10)
    for done in range(1, epochs + 1):   # counted from this run's start: a resumed one goes on from its epoch
        trainer.fit(fresh_data(), epochs=1, log=None, progress=False)
        _epoch_done(trainer, opts)
        if done % every == 0 or done == epochs:
            opts.report(f"epoch {trainer.epoch:>4}  {line(trainer.history.records[-1])}")


def _epochs(model, opts):
    """--epochs, else the model's (--steps is refused for these runners: see their registration)."""
    return opts.epochs if opts.epochs is not None else model.defaults["epochs"]


# -- GAN ---------------------------------------------------------------------------------------

def gan_players(model, backend="numpy", dtype="float64", lr=None, optimizer=None, **hyper):
    """(discriminator backend, generator backend), each with its own optimizer: the model's
    (Adam, β₁ = 0.5) unless ``optimizer`` names another; ``lr`` a number or a schedule."""
    d = model.defaults
    name = optimizer or d.get("optimizer", "adam")
    opt = {"lr": lr or d["lr"], **({"beta1": d.get("beta1", 0.9)} if name == "adam" else {}), **hyper}
    return tuple(make_backend(backend, model.extras[k], make_optimizer(name, **opt), dtype)
                 for k in ("discriminator", "generator"))


def gan_epoch(model, disc, gen, real, batch_size, rng) -> tuple:
    """One pass over ``real`` in shuffled batches, alternating a discriminator step and a
    generator step; returns the mean (L_D, L_G)."""
    noise = model.extras["noise"]
    d_params, g_params = model.extras["discriminator"].params, model.extras["generator"].params
    order = rng.permutation(len(real))
    losses = []
    for start in range(0, len(order), batch_size):
        xb = real[order[start:start + batch_size]]
        ld = disc.train_step({"x": xb, "z": rng.standard_normal((len(xb), noise))})
        set_values(gen, {p: disc.params[p] for p in d_params})
        lg = gen.train_step({"z": rng.standard_normal((len(xb), noise))})
        set_values(disc, {p: gen.params[p] for p in g_params})
        losses.append((ld, lg))
    return tuple(np.mean(losses, axis=0))


def gan_samples(model, gen, n, rng):
    return np.asarray(gen.predict({"z": rng.standard_normal((n, model.extras["noise"]))}))


def train_gan(model, opts: TrainOptions):
    """Alternating updates; losses and modes covered per epoch; samples vs data as a PNG."""
    report, epochs = opts.report, _epochs(model, opts)
    disc, gen = gan_players(model, opts.backend, opts.dtype, opts.learning_rate(), opts.optimizer)
    start = 0          # epochs the resumed run had trained: the log and the checkpoint go on from there
    if opts.resume:    # both players' weights (the optimizers start afresh)
        ck = read_checkpoint(opts.resume, model, opts.comm)   # data-parallel: rank 0 reads, then broadcasts
        for player in (disc, gen):
            set_values(player, {p: ck.params[p] for p in model.params})
        start = int(ck.epoch)
        report(f"resumed both players from {opts.resume} (epoch {start})")
    real = model.data.train["x"]
    batch = opts.batch_size or model.defaults["batch_size"]
    rng = np.random.default_rng(opts.seed)
    if opts.comm is not None:
        disc, gen = _data_parallel_players(model, disc, gen, real, opts.comm)
    report(f"training {model.name} on {opts.backend}: discriminator and generator alternate, "
           f"{type(disc.optimizer).__name__} each, "
           f"batch {batch}, {len(real)} real points, {len(model.extras['centres'])} modes")
    shown = sorted({max(1, round(epochs * f)) for f in (0.1, 0.25, 0.5, 1.0)})
    panels, check = [], np.random.default_rng(opts.seed + 1)
    for epoch in range(1, epochs + 1):
        ld, lg = gan_epoch(model, disc, gen, real, batch, rng)
        if epoch in shown or epoch == epochs:
            fake = gan_samples(model, gen, 1000, check)
            covered, near = modes_covered(fake, model.extras["centres"])
            report(f"epoch {start + epoch:>4}  L_D {ld:.4f}  L_G {lg:.4f}  modes covered {covered}/"
                   f"{len(model.extras['centres'])}  samples near a mode {near:.0%}")
            panels.append((f"epoch {start + epoch}", fake))
        if opts.checkpoint and opts.writes_files:
            weights = {**{p: disc.params[p] for p in model.extras["discriminator"].params},
                       **{p: gen.params[p] for p in model.extras["generator"].params}}
            save_checkpoint(opts.checkpoint, model, {**model.initial_params(), **weights}, epoch=start + epoch)
    covered, near = modes_covered(gan_samples(model, gen, 2000, check), model.extras["centres"])
    report(f"final: {covered} of {len(model.extras['centres'])} modes covered, {near:.0%} of 2000 samples "
           "within 0.5 of a mode's centre")
    if opts.writes_files:
        path = scatter_panels(_figure_path(model, opts, report), panels, reference=real[:1000],
                              title="GAN: generated (blue) vs real (grey) samples")
        report(f"samples vs data saved to {path}")
    if opts.checkpoint:
        report(f"checkpoint saved to {opts.checkpoint} (both players)")
    return disc, gen


def _data_parallel_players(model, disc, gen, real, comm):
    """Each player sharding every batch over the ranks (graphnn.training.distributed): every
    rank draws the same batches and noise from the seed, so the run is the single process's."""
    from .distributed import DataParallel

    z = np.random.default_rng(0).standard_normal((len(real), model.extras["noise"]))
    return DataParallel(disc, comm, {"x": real, "z": z}), DataParallel(gen, comm, {"z": z})


# -- diffusion -----------------------------------------------------------------------------------

def ddpm_sample(model, predict, n, rng, keep=()):
    """Ancestral sampling: x_T ~ N(0, I), then x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε_θ)/√α_t + √β_t z
    (no noise at the last step). Returns (x_0, {t: x_t for t in keep})."""
    s, steps = model.extras["schedule"], model.extras["timesteps"]
    x = rng.standard_normal((n, 2))
    kept = {steps: x.copy()} if steps in keep else {}
    for t in range(steps, 0, -1):
        eps_hat = np.asarray(predict({"x_t": x, "t": np.full((n, 1), float(t))}))
        x = (x - s["beta"][t] / np.sqrt(1.0 - s["alpha_bar"][t]) * eps_hat) / np.sqrt(s["alpha"][t])
        if t > 1:
            x = x + np.sqrt(s["beta"][t]) * rng.standard_normal(x.shape)
        if t - 1 in keep:
            kept[t - 1] = x.copy()
    return x, kept


def train_diffusion(model, opts: TrainOptions):
    """ε-prediction on fresh noise each epoch; samples by the reverse process, compared with the data."""
    from ..models.generative import noised

    report, epochs = opts.report, _epochs(model, opts)
    trainer = Trainer(model, **opts.trainer_kwargs(), comm=opts.comm)
    resume_trainer(trainer, opts)
    rng = np.random.default_rng(opts.seed)
    x0, schedule, steps = model.extras["x0"], model.extras["schedule"], model.extras["timesteps"]
    report(f"training {model.name} on {opts.backend} ({trainer.optimizer!r}, batch {trainer.batch_size}): "
           f"T = {steps}, a new draw of (t, ε) for the {len(x0)} points every epoch")
    _train_epochs(trainer, opts, epochs, lambda: noised(x0, schedule, rng),
                  lambda row: f"MSE(ε, ε̂) {row['loss']:.4f}  test {row['test_loss']:.4f}")
    keep = sorted({steps, steps // 2, steps // 5, steps // 10, 0})   # the shape forms late
    samples, kept = ddpm_sample(model, trainer.predict, 2000, np.random.default_rng(opts.seed + 1), keep)
    data = model.extras["x0"][:2000]
    prior = np.random.default_rng(opts.seed + 2).standard_normal((2000, 2))
    ed, ed_prior = energy_distance(samples, data), energy_distance(prior, data)
    report(f"samples vs data: energy distance {ed:.4f} (the prior N(0, I): {ed_prior:.4f}); "
           f"mean {np.round(samples.mean(0), 3).tolist()} vs {np.round(data.mean(0), 3).tolist()}, "
           f"std {np.round(samples.std(0), 3).tolist()} vs {np.round(data.std(0), 3).tolist()}")
    panels = [(f"t = {t}" + (" (noise)" if t == steps else " (samples)" if t == 0 else ""), kept[t])
              for t in sorted(kept, reverse=True)]
    if opts.writes_files:
        path = scatter_panels(_figure_path(model, opts, report), panels, reference=data[:1000],
                              title="DDPM: the reverse process from noise (blue) to data (grey)")
        report(f"reverse process saved to {path}")
    if opts.checkpoint:
        report(f"checkpoint saved to {opts.checkpoint}")
    return trainer


# -- contrastive ---------------------------------------------------------------------------------

def zero_shot_accuracy(model, params, images, labels) -> float:
    """Each image's class: the digit name whose embedding is nearest (largest u·v)."""
    from ..models.contrastive import name_ids

    u_node, v_node = model.extras["image_embedding"], model.extras["text_embedding"]
    n, group = len(images), model.inputs[0].shape[1]
    padded = np.concatenate([images, np.zeros(((-n) % group, images.shape[1]))])
    u = Evaluator(u_node)({"x": padded.reshape(-1, group, images.shape[1])}, params)
    u = u.reshape(-1, u_node.shape[-1])[:n]
    v = Evaluator(v_node)({"name": name_ids(np.arange(10))[None]}, params)[0]
    return float(np.mean(np.argmax(u @ v.T, axis=1) == labels))


def train_contrastive(model, opts: TrainOptions):
    """New episodes every epoch; the zero-shot accuracy on the test digits at the end."""
    from ..models.contrastive import episodes

    report, epochs = opts.report, _epochs(model, opts)
    trainer = Trainer(model, **opts.trainer_kwargs(), comm=opts.comm)
    resume_trainer(trainer, opts)
    rng = np.random.default_rng(opts.seed)
    (train_x, test_x), (train_y, test_y) = model.extras["images"], model.extras["labels"]
    report(f"training {model.name} on {opts.backend} ({trainer.optimizer!r}, {trainer.batch_size} episodes of "
           f"10 image-name pairs per step)")
    def line(row):
        scale = float(np.exp(np.ravel(trainer.params[model.find("s")])[0]))
        return f"InfoNCE {row['loss']:.4f}  test {row['test_loss']:.4f}  logit scale exp(s) {scale:.2f}"
    _train_epochs(trainer, opts, epochs, lambda: episodes(train_x, train_y, rng), line)
    acc = zero_shot_accuracy(model, trainer.params, test_x, test_y)
    report(f"zero-shot accuracy on the {len(test_y)} test digits: {acc:.4f} (chance 0.1000)")
    finish_trainer(trainer, opts)
    return trainer


# What each runner honours (options.py). All three train by epochs: each epoch is a new draw.
_BY_EPOCHS = {"steps": "counts epochs, each a new draw (use --epochs)"}
register_task("gan", train_gan, rule="alternating discriminator and generator updates", why=_BY_EPOCHS,
              honours={"backend", "dtype", "optimizer", "lr", "lr_schedule", "batch_size", "seed", "epochs", "comm",
                       *FILES})
register_task("diffusion", train_diffusion, honours={*TRAINER, "epochs", "comm", *FILES}, why=_BY_EPOCHS,
              rule="ε-prediction on fresh noise")
register_task("contrastive", train_contrastive, honours={*TRAINER, "epochs", "comm", *FILES}, why=_BY_EPOCHS,
              rule="InfoNCE on fresh episodes")
