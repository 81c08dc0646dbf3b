"""Where generated faces come from: the prior N(0, I), or a Gaussian mixture fitted to
the training set's posterior means (ex-post density estimation, Ghosh et al. 2020).

A VAE's aggregate posterior rarely fills the prior, so prior samples often decode from
latents the decoder never saw; sampling from a density fitted to where the training
faces actually sit gives sharper, more typical faces. The mixture is fitted by
scikit-learn once, after training, and stored in the model file.
"""

from __future__ import annotations

import numpy as np
import torch

from toonvae.data import batches, to_float

SAMPLERS = ("prior", "gmm")


@torch.inference_mode()
def posterior_means(model, images: np.ndarray, batch_size: int, device,
                    index: np.ndarray | None = None) -> np.ndarray:
    """mu(x) of every image (or of the rows ``index``), as float32 numpy (N x latent_dim)."""
    model.eval()
    out = [model.encode(to_float(xb, device))[0].float()
           for xb in batches(images, batch_size, index=index)]
    # One read-back at the end: the host does not wait for the device batch by batch.
    return (torch.cat(out).cpu().numpy() if out
            else np.zeros((0, model.cfg.latent_dim), np.float32))


def subset(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random ``limit`` of ``n`` rows; None when n <= limit (all)."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng([seed, n, limit]).choice(n, limit, replace=False))


def fit_gmm(means: np.ndarray, components: int, seed: int) -> dict[str, torch.Tensor]:
    """Full-covariance mixture on posterior means; its tensors, ready for ``torch.save``."""
    from sklearn.mixture import GaussianMixture  # slow import; only train needs it

    components = min(components, len(means))
    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4,
                          init_params="k-means++", max_iter=200, random_state=seed)
    gmm.fit(means.astype(np.float64))
    return {"weights": torch.from_numpy(gmm.weights_).float(),
            "means": torch.from_numpy(gmm.means_).float(),
            "scale_tril": torch.from_numpy(np.linalg.cholesky(gmm.covariances_)).float()}


def sample_latents(n: int, latent_dim: int, generator: torch.Generator | None = None,
                   temperature: float = 1.0, gmm: dict | None = None) -> torch.Tensor:
    """``n`` latents from the prior, or from ``gmm`` when given; noise scaled by temperature."""
    eps = torch.randn(n, latent_dim, generator=generator) * temperature
    if gmm is None:
        return eps
    comp = torch.multinomial(gmm["weights"], n, replacement=True, generator=generator)
    return gmm["means"][comp] + (gmm["scale_tril"][comp] @ eps[..., None]).squeeze(-1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: the path between Gaussian samples along which the norm
    stays typical (a straight line passes through the unlikely region near zero)."""
    omega = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
