"""Figures that walk the latent space: interpolations, traversals, temperatures and
attribute vectors. Every random choice comes from the seed, so the PNGs are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toonvae.archs.base import LatentVAE
from toonvae.data import seeded_rows, to_float
from toonvae.figures import labelled_rows, save_grid
from toonvae.sampler import posterior_means, slerp


@torch.inference_mode()
def _means(model: LatentVAE, images: np.ndarray) -> torch.Tensor:
    return model.encode(to_float(images, model.log_scale.device))[0].float().cpu()


@torch.inference_mode()
def _decode(model: LatentVAE, z: torch.Tensor) -> torch.Tensor:
    return model.decode(z.to(model.log_scale.device)).float().cpu()


def interpolation(model: LatentVAE, test: np.ndarray, path: Path, pairs: int, steps: int,
                  seed: int) -> None:
    """Rows from one test face to another (straight lines between their codes, the two
    originals at the ends), then rows along great circles between prior samples."""
    idx = seeded_rows(len(test), 2 * pairs, seed)
    originals = to_float(test[idx])
    mu = _means(model, test[idx])
    t = torch.linspace(0, 1, steps)[:, None]
    rows = []
    for i in range(0, len(idx) - 1, 2):
        line = _decode(model, (1 - t) * mu[i] + t * mu[i + 1])
        rows.append(torch.cat([originals[i:i + 1], line, originals[i + 1:i + 2]]))
    generator = torch.Generator().manual_seed(seed)
    t2 = torch.linspace(0, 1, steps + 2)[:, None]
    for _ in range(max(1, pairs // 2)):
        a, b = torch.randn(2, model.cfg.latent_dim, generator=generator)
        rows.append(_decode(model, slerp(a, b, t2)))
    save_grid(torch.cat(rows), path, columns=steps + 2)


def traversal(model: LatentVAE, test: np.ndarray, kl_per_dim: list[float], path: Path, dims: int,
              steps: int, seed: int) -> None:
    """One row per latent dimension with the most KL: a test face's code with that one
    coordinate swept from -3 to +3 prior standard deviations."""
    face = _means(model, test[seeded_rows(len(test), 1, seed)])[0]
    order = np.argsort(kl_per_dim)[::-1][:dims]
    values = torch.linspace(-3, 3, steps)
    rows = []
    labels = []
    for d in order:
        z = face.repeat(steps, 1)
        z[:, d] = values
        rows.append(_decode(model, z))
        labels.append(f"z[{d}]")
    labelled_rows(rows, labels, path, title="-3 σ  …  0  …  +3 σ along the dimensions with the most KL")


def temperature(model: LatentVAE, path: Path, n: int, temperatures: tuple[float, ...],
                seed: int) -> None:
    """Prior samples at each temperature, then the mixture sampler's and the learned
    prior's (where the model has them), same seed per row."""
    rows, labels = [], []
    samplers = ["prior"] + [name for name, fitted in (("gmm", model.gmm), ("flow", model.flow))
                            if fitted is not None]
    for sampler in samplers:
        for temp in temperatures:
            rows.append(model.sample(n, torch.Generator().manual_seed(seed), temp,
                                     sampler=sampler).float().cpu())
            labels.append(f"{sampler}, T={temp:g}")
    labelled_rows(rows, labels, path)


def attribute_vectors(model: LatentVAE, train: np.ndarray, train_y: np.ndarray, test: np.ndarray,
                      test_y: np.ndarray, names: list[str], wanted: tuple[str, ...],
                      path: Path, faces: int, seed: int) -> list[str]:
    """For each wanted attribute: the mean code of faces with its second most common value
    minus that of its most common value, added to test faces that have the most common
    one. Each face is shown reconstructed, then with 1x and 2x the vector added. Returns
    the row labels."""
    train_mu = torch.from_numpy(posterior_means(model, train, 500, model.log_scale.device))
    rows, labels = [], []
    for attr in wanted:
        if attr not in names:
            continue
        j = names.index(attr)
        values, counts = np.unique(train_y[train_y[:, j] >= 0, j], return_counts=True)
        if len(values) < 2:
            continue
        a, b = values[np.argsort(counts)[::-1][:2]]
        vector = train_mu[train_y[:, j] == b].mean(0) - train_mu[train_y[:, j] == a].mean(0)
        candidates = np.flatnonzero(test_y[:, j] == a)
        if not len(candidates):
            continue
        chosen = candidates[seeded_rows(len(candidates), faces, seed)]
        mu = _means(model, test[chosen])
        edits = [_decode(model, mu + k * vector) for k in (0, 1, 2)]
        rows.append(torch.stack(edits, dim=1).flatten(0, 1))
        labels.append(f"{attr} {a}→{b}")
    if rows:
        labelled_rows(rows, labels, path, title="each face: reconstruction, + 1x and + 2x the "
                      "attribute vector (mean code of value b minus mean code of value a)")
    return labels

