"""Sample metrics that see layout: distances between sets of images in the features of a
network that is not the VAE (``toonvae.features``, EfficientNet-Lite0 on ImageNet).

Patch SWD (``toonvae.swd``) compares the statistics of small patches wherever they sit, so
a face with its eyes in the wrong place, or its quadrants swapped, scores like a whole one.
These compare whole images, each as one 1280-dim feature vector:

- ``fd``: the Fréchet distance between Gaussians fitted to the two sets (FID's formula, in
  these features rather than Inception's): |μ1 - μ2|² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½).
- ``kid``: the kernel distance (Bińkowski et al. 2018): the unbiased MMD² with the cubic
  polynomial kernel (x·y / d + 1)³, averaged over random subsets, as torch-fidelity does.
  Unbiased, so a set against itself gives about 0 at any size; reported ×1000.
- ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al. 2020, k = 5): the
  fraction of samples that fall inside the real images' k-nearest-neighbour balls, the
  fraction of real images inside the samples' balls, and the ball counts. Precision says
  whether samples look like data; recall and coverage whether they cover it.

All in float64 on the CPU; every random choice is seeded.
"""

from __future__ import annotations

import numpy as np
import torch

NEAREST_K = 5
KID_SUBSETS = 100


def fd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians of two feature sets (rows)."""
    a, b = a.double(), b.double()
    mu = a.mean(0) - b.mean(0)
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    # tr (Σa Σb)^½ = Σ √λ over the eigenvalues of Σa Σb, which are real and >= 0 (it is
    # similar to Σa^½ Σb Σa^½); rounding can leave tiny negative or imaginary parts.
    eig = torch.linalg.eigvals(sa @ sb).real.clamp(min=0)
    return float(mu @ mu + sa.trace() + sb.trace() - 2 * eig.sqrt().sum())


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m = len(x)
    return float((kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum())
                 / (m * (m - 1)) - 2 * kxy.mean())


def kid(a: torch.Tensor, b: torch.Tensor, seed: int, subset: int = 1000,
        subsets: int = KID_SUBSETS) -> float:
    """KID ×1000: the mean unbiased MMD² over ``subsets`` random subsets of
    min(``subset``, both sizes) rows from each set."""
    a, b = a.double(), b.double()
    m = min(subset, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(subsets):
        ia = torch.from_numpy(rng.choice(len(a), m, replace=False))
        ib = torch.from_numpy(rng.choice(len(b), m, replace=False))
        total += _mmd2_unbiased(a[ia], b[ib])
    return 1000 * total / subsets


def _kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # the 0th neighbour is the row itself


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (rows)."""
    real, fake = real.double(), fake.double()
    real_radius = _kth_neighbour_distance(real, k)
    fake_radius = _kth_neighbour_distance(fake, k)
    between = torch.cdist(real, fake)  # real x fake
    inside_real = between < real_radius[:, None]
    return {"precision": float(inside_real.any(0).double().mean()),
            "recall": float((between < fake_radius[None, :]).any(1).double().mean()),
            "density": float(inside_real.sum(0).double().mean() / k),
            "coverage": float((between.min(1).values < real_radius).double().mean())}


def scores(real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict[str, float | None]:
    """Every layout metric of ``fake`` features against ``real`` features. Sets of fewer
    than 2 images have none (null); the neighbour count k is at most a set's size - 1."""
    n = min(len(real), len(fake))
    if n < 2:
        return dict.fromkeys(("fd", "kid", "precision", "recall", "density", "coverage"))
    return {"fd": fd(real, fake), "kid": kid(real, fake, seed),
            **prdc(real, fake, min(NEAREST_K, n - 1))}
