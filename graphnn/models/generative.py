"""Generative models on 2-D data: a GAN on a ring of Gaussians and a DDPM on two moons.

`gan`: generator G (noise z → point) and discriminator D (point → logit), both MLPs. One
graph holds both players' objectives; each reaches the other player only through
``stop_gradient``, so the model's gradient of L = L_D + L_G is exactly (∂L_D/∂θ_D, ∂L_G/∂θ_G):

    L_D = mean softplus(−D(x)) + mean softplus(D(x̃)),  x̃ = sg[G(z)]     real → 1, fake → 0
    L_G = mean softplus(−D̄(G(z)))                        non-saturating: −log σ(D(G(z)))

where D̄ is D with its weights behind stop_gradient (held fixed: the generator's gradient
flows *through* the discriminator without changing it) and sg[·] is stop_gradient. ``extras['discriminator']`` and
``extras['generator']`` are the two players' own models (sharing these nodes), which the
task 'gan' trains in alternation with two Adam optimizers (graphnn.training.generative).

`diffusion`: Ho et al.'s DDPM. A linear β schedule over T steps; the network ε_θ(x_t, t) — an
MLP on x_t and a sinusoidal embedding of t — learns the noise in x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε
by mean squared error; the task 'diffusion' draws fresh (t, ε) every epoch and samples by
the ancestral reverse process.
"""
from __future__ import annotations

import numpy as np
import sympy
from .. import losses
from ..data import Dataset
from ..data.toy2d import ring_centres, ring_of_gaussians, two_moons
from ..model import Model
from ..ops import add, concat, constant, dense, fmap, input, linear, matmul, mean, neg, parameter, relu, stop_gradient
from ..ops.embedding import time_embedding_frequencies
from ..ops.elementwise import softplus
from . import register


def _mlp_params(prefix, sizes, rng):
    return [(parameter(f"{prefix}.W{k}", shape=(a, b), init="he", rng=rng),
             parameter(f"{prefix}.b{k}", shape=(b,), init="zeros"))
            for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)]


def _apply_mlp(v, layers, prefix, mark="", frozen=False, name=None):
    """ReLU hidden layers, a linear last one, units named ``<prefix>.net<mark>k`` (``mark`` a
    combining accent: D.ñet1 is the discriminator's unit on the fakes x̃); ``frozen``: every
    weight behind stop_gradient, named with a bar (D.W̄1 = sg[D.W1]: held fixed)."""
    bar = "\u0304"
    for k, (W, b) in enumerate(layers, start=1):
        if frozen:
            W = stop_gradient(W, name=f"{prefix}.W{bar}{k}")
            b = stop_gradient(b, name=f"{prefix}.b{bar}{k}")
        last = k == len(layers)
        net = linear(v, W, b, name=(name if last else f"{prefix}.net{mark}{k}"))
        v = net if last else relu(net, name=f"{prefix}.h{mark}{k}")
    return v


@register("gan", "GAN on a ring of 8 Gaussians: generator and discriminator MLPs, non-saturating loss, "
                 "alternating Adam steps (stop_gradient holds the other player)")
def gan(modes: int = 8, noise: int = 4, hidden: int = 64, n: int = 2048, seed: int = 0):
    """``noise``-dimensional z ~ N(0, I); G and D with two hidden ReLU layers of ``hidden``."""
    rng = np.random.default_rng(seed)
    x, z = input("x", (None, 2)), input("z", (None, noise))
    G = _mlp_params("G", (noise, hidden, hidden, 2), rng)
    D = _mlp_params("D", (2, hidden, hidden, 1), rng)
    fake = _apply_mlp(z, G, "G", name="G(z)")
    d_real = _apply_mlp(x, D, "D", name="D(x)")
    # the discriminator's step: the generated points x̃ are data (no gradient into G) ...
    d_fake = _apply_mlp(stop_gradient(fake, name="x̃"), D, "D", "\u0303", name="D(x̃)")
    # ... the generator's step: through D̄ = D with its weights held fixed
    d_gen = _apply_mlp(fake, D, "D", "\u0304", frozen=True, name="D̄(G(z))")
    loss_d = add(mean(softplus(neg(d_real), name="softplus(−D(x))"), name="L_real"),
                 mean(softplus(d_fake, name="softplus(D(x̃))"), name="L_fake"), name="L_D")
    loss_g = mean(softplus(neg(d_gen), name="softplus(−D̄(G(z)))"), name="L_G")
    loss = add(loss_d, loss_g, name="L")
    data_rng = np.random.default_rng(seed + 1)
    train = {"x": ring_of_gaussians(n, modes, seed=seed), "z": data_rng.standard_normal((n, noise))}
    defaults = {"lr": 5e-4, "batch_size": 64, "epochs": 150, "optimizer": "adam", "beta1": 0.5}
    disc = Model("gan/discriminator", loss_d, d_real, (x, z), Dataset(train), defaults=defaults)
    gen = Model("gan/generator", loss_g, fake, (z,), Dataset({"z": train["z"]}), defaults=defaults)
    return Model("gan", loss, fake, (x, z), Dataset(train), example={k: v[:2] for k, v in train.items()},
                 defaults=defaults, task="gan",
                 description=f"GAN: G {noise}-{hidden}-{hidden}-2 and D 2-{hidden}-{hidden}-1 (ReLU), "
                             f"non-saturating loss, on {modes} Gaussians on a circle",
                 extras={"discriminator": disc, "generator": gen, "centres": ring_centres(modes),
                         "noise": noise})


# -- DDPM ------------------------------------------------------------------------------------

def noise_schedule(timesteps: int) -> dict:
    """DDPM's linear β schedule (10⁻⁴ … 0.02 over 1000 steps) rescaled to ``timesteps`` steps,
    so that Σβ ≈ 10 and x_T is noise (ᾱ_T ≈ 5·10⁻⁵): {'beta', 'alpha', 'alpha_bar'}, arrays
    indexed by t = 0…T (t = 0: β = 0, ᾱ = 1)."""
    scale = 1000.0 / timesteps
    beta = np.concatenate([[0.0], np.linspace(1e-4 * scale, min(0.02 * scale, 0.5), timesteps)])
    alpha = 1.0 - beta
    return {"beta": beta, "alpha": alpha, "alpha_bar": np.cumprod(alpha)}


def noised(x0, schedule, rng) -> dict:
    """Feeds of one training draw: t ~ U{1…T}, ε ~ N(0, I), x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε."""
    n, timesteps = len(x0), len(schedule["beta"]) - 1
    t = rng.integers(1, timesteps + 1, n)
    eps = rng.standard_normal(x0.shape)
    ab = schedule["alpha_bar"][t][:, None]
    return {"x_t": np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * eps, "t": t[:, None].astype(np.float64), "ε": eps}


def fourier_features(v, frequencies, name):
    """[sin(v ω), cos(v ω)] for every coordinate of v (…, d) and frequency ω: one product with
    the constant Ω = I_d ⊗ (ω₁ … ω_F), then sin and cos — (…, 2·d·F), named ``name``."""
    omega = np.kron(np.eye(v.shape[-1]), np.asarray(frequencies, dtype=np.float64)[None, :])
    angle = matmul(v, constant(omega, name=f"{name}.Ω"), name=f"{name}.angle")
    a = sympy.Symbol("a")
    return concat([fmap(sympy.sin(a), {a: angle}, fn="sin", name=f"{name}.sin"),
                   fmap(sympy.cos(a), {a: angle}, fn="cos", name=f"{name}.cos")], axis=-1, name=name)


@register("diffusion", "DDPM on two moons: linear noise schedule, ε-prediction MLP with a sinusoidal time "
                       "embedding, MSE, ancestral sampling")
def diffusion(timesteps: int = 50, hidden: int = 64, embed: int = 16, n: int = 2048, seed: int = 0):
    """T = ``timesteps`` noise levels; ε_θ = MLP([x_t, γ(x_t), emb(t)]) with two hidden ReLU layers."""
    rng = np.random.default_rng(seed)
    x_t, t, eps = input("x_t", (None, 2)), input("t", (None, 1)), input("ε", (None, 2))
    # a 2-D input is too little for an MLP to carve the data's thin shape: it also sees x_t's
    # Fourier features (frequencies 1, 2, 4, 8), and t through the sinusoidal time embedding
    h = concat([x_t, fourier_features(x_t, 2.0 ** np.arange(4), "γ"),
                fourier_features(t, time_embedding_frequencies(embed), "emb")], axis=-1, name="input")
    h = dense(h, hidden, "relu", name="h1", init="he", rng=rng)
    h = dense(h, hidden, "relu", name="h2", init="he", rng=rng)
    eps_hat = dense(h, 2, name="ε̂", rng=rng)   # the DDPM paper's ε_θ(x_t, t), named without θ
    loss = losses.mse(eps_hat, eps, name="L")
    schedule = noise_schedule(timesteps)
    x0 = two_moons(n, seed=seed)
    data_rng = np.random.default_rng(seed + 1)
    train, test = noised(x0, schedule, data_rng), noised(two_moons(n // 4, seed=seed + 7), schedule, data_rng)
    return Model("diffusion", loss, eps_hat, (x_t, t, eps), Dataset(train, test),
                 example={k: v[:2] for k, v in train.items()},
                 defaults={"lr": 1e-3, "batch_size": 32, "epochs": 200, "optimizer": "adam"}, task="diffusion",
                 description=f"DDPM, T = {timesteps}: ε_θ(x_t, t) MLP [2 + 16 + {embed}]-{hidden}-{hidden}-2, "
                             "loss ‖ε − ε_θ‖², on two moons",
                 extras={"schedule": schedule, "x0": x0, "timesteps": timesteps})
