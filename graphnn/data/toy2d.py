"""Two-dimensional toy distributions for generative models, generated in code (seeded).

- `ring_of_gaussians`: k Gaussians of standard deviation ``std`` centred on a circle
  (`ring_centres`) — the classic test of a GAN's mode coverage (`modes_covered` counts the
  modes its samples reach).
- `two_moons`: two interleaved half circles with Gaussian noise — a diffusion model's data.
- `energy_distance`: how far apart two samples' distributions are (0 when they agree).
"""
from __future__ import annotations

import numpy as np


def ring_centres(k: int = 8, radius: float = 2.0) -> np.ndarray:
    angle = 2 * np.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def ring_of_gaussians(n: int, k: int = 8, radius: float = 2.0, std: float = 0.05, seed: int = 0) -> np.ndarray:
    """(n, 2) points: each from one of ``k`` Gaussians on a circle, chosen uniformly."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, k, n)
    return ring_centres(k, radius)[which] + std * rng.standard_normal((n, 2))


def modes_covered(samples, centres, reach: float = 0.5, min_share: float = 0.02) -> tuple:
    """(modes reached, share of samples near a mode): a sample is near a mode when it lies
    within ``reach`` of its centre; a mode is reached when at least ``min_share`` of all the
    samples are near it."""
    samples = np.asarray(samples)
    dist = np.linalg.norm(samples[:, None, :] - np.asarray(centres)[None], axis=2)
    near = dist.min(axis=1) <= reach
    counts = np.bincount(dist.argmin(axis=1)[near], minlength=len(centres))
    return int(np.sum(counts >= min_share * len(samples))), float(near.mean())


def two_moons(n: int, noise: float = 0.08, seed: int = 0) -> np.ndarray:
    """(n, 2) points on two interleaved half circles (centred, scaled to unit spread)."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    pts = np.where(which[:, None] == 0, upper, lower) + noise * rng.standard_normal((n, 2))
    return (pts - np.array([0.5, 0.25])) / np.array([0.87, 0.5])


def energy_distance(a, b) -> float:
    """The energy distance 2E‖A − B‖ − E‖A − A′‖ − E‖B − B′‖ of two samples (≥ 0; 0 iff the
    distributions agree), with every pair of points."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def mean_dist(x, y):
        return float(np.mean(np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)))
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)
