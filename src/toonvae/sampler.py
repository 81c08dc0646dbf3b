"""Where generated faces come from: the prior N(0, I), or a Gaussian mixture fitted to
the training set's posterior means (ex-post density estimation, Ghosh et al. 2020).

A VAE's aggregate posterior rarely fills the prior, so prior samples often decode from
latents the decoder never saw; sampling from a density fitted to where the training
faces actually sit gives sharper, more typical faces. The mixture is fitted once, after
training, on the training device, and stored in the model file.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from toonvae.data import batches, seeded_rows, to_float


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


@torch.inference_mode()
def posterior_draws(model, images, end: int, draws: int, seed: int, batch_size: int,
                    device, index: np.ndarray | None = None) -> torch.Tensor:
    """``draws`` posterior samples per image (or per row of ``index``) of the first ``end``
    latent coordinates (the top levels' standardised noise), (images * draws) x end on the
    CPU: what the learned prior (``toonvae.flow``) is fitted to."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for xb in batches(images, batch_size, index=index):
        noise = torch.randn(draws, len(xb), model.cfg.latent_dim, generator=generator)
        _, eps, _, _ = model.posterior(to_float(xb, device), noise.to(device))
        out.append(eps[..., :end].reshape(-1, end).float().cpu())
    return torch.cat(out)


def subset(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random ``limit`` of ``n`` rows; None when n <= limit (all)."""
    return None if n <= limit else seeded_rows(n, limit, [seed, n, limit])


FULL_COVARIANCE_MAX_DIM = 512  # above: diagonal covariances (hvae's 1344-dim latent)


def fit_gmm(means: np.ndarray, components: int, seed: int, device="cpu",
            reg_covar: float = 1e-4, tol: float = 1e-3,
            max_iter: int = 200) -> dict[str, torch.Tensor]:
    """Mixture on posterior means; its tensors, ready for ``torch.save``.

    scikit-learn's ``GaussianMixture(init_params="k-means++")`` algorithm (the same
    k-means++ seeding, EM updates, ``reg_covar`` and stopping rule), written in torch so
    that it runs on the training device: on a GPU the fit takes a fraction of a second,
    where scikit-learn's took ~48 s on 2 CPU cores for 10,000 codes. float64 where the
    device has it.

    Covariances are full (``scale_tril``) up to ``FULL_COVARIANCE_MAX_DIM`` dimensions and
    diagonal (``scales``, scikit-learn's ``covariance_type="diag"``) above: a full fit of
    1344 dimensions costs about 130 GFLOP per EM step and 72 MB in the model file.
    """
    x = np.asarray(means, dtype=np.float64)
    components = min(components, len(x))
    picked = kmeans_plusplus(x, components, seed)
    device = torch.device(device)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    data = torch.from_numpy(x).to(device, dtype)
    resp = torch.zeros(len(x), components, device=device, dtype=dtype)
    resp[torch.from_numpy(picked).to(device), torch.arange(components, device=device)] = 1.0
    diagonal = x.shape[1] > FULL_COVARIANCE_MAX_DIM
    m_step = _diagonal_parameters if diagonal else _gaussian_parameters
    e_step = _diagonal_responsibilities if diagonal else _log_responsibilities
    weights, centres, cov = m_step(data, resp, reg_covar)
    lower = -math.inf
    for _ in range(max_iter):
        log_resp, bound = e_step(data, weights, centres, cov)
        weights, centres, cov = m_step(data, log_resp.exp(), reg_covar)
        change, lower = bound - lower, bound
        if abs(change) < tol:
            break
    out = {"weights": weights.float().cpu(), "means": centres.float().cpu()}
    if diagonal:
        return {**out, "scales": cov.sqrt().float().cpu()}
    return {**out, "scale_tril": torch.linalg.cholesky(cov).float().cpu()}


def _diagonal_parameters(data, resp, reg_covar: float):
    """The M step with diagonal covariances (k, d), as scikit-learn computes them."""
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    centres = resp.T @ data / nk[:, None]
    avg_x2 = resp.T @ (data * data) / nk[:, None]
    avg_x_means = centres * (resp.T @ data) / nk[:, None]
    return nk / len(data), centres, avg_x2 - 2 * avg_x_means + centres**2 + reg_covar


def _diagonal_responsibilities(data, weights, centres, var):
    """The E step with diagonal covariances."""
    precision = 1.0 / var  # k, d
    mahalanobis = ((centres**2 * precision).sum(1)[None] - 2 * data @ (centres * precision).T
                   + (data**2) @ precision.T)  # n, k
    log_prob = (-0.5 * (data.shape[1] * math.log(2 * math.pi) + mahalanobis)
                - 0.5 * torch.log(var).sum(1)[None] + torch.log(weights))
    norm = torch.logsumexp(log_prob, dim=1, keepdim=True)
    return log_prob - norm, float(norm.mean())


def kmeans_plusplus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` rows of float64 ``x`` picked by greedy k-means++ (Arthur and
    Vassilvitskii 2007): scikit-learn's ``kmeans_plusplus(x, k, random_state=seed)``, the
    same draws and arithmetic, so the same picks. Written here because importing
    scikit-learn's clustering costs each training process about 2 s on 2 cores; a test
    checks it against scikit-learn."""
    rng = np.random.RandomState(seed)
    n = len(x)
    weight = np.ones(n, dtype=x.dtype)
    x_sq = np.einsum("ij,ij->i", x, x)

    def squared_distances(rows: np.ndarray) -> np.ndarray:  # rows x n, as scikit-learn's
        d = -2 * (rows @ x.T)
        d += np.einsum("ij,ij->i", rows, rows)[:, None]
        d += x_sq[None, :]
        return np.maximum(d, 0, out=d)

    trials = 2 + int(np.log(k))
    first = rng.choice(n, p=weight / weight.sum())
    picked = np.full(k, -1, dtype=int)
    picked[0] = first
    closest = squared_distances(x[first][None])
    potential = closest @ weight
    for c in range(1, k):
        draws = rng.uniform(size=trials) * potential
        candidates = np.searchsorted(np.cumsum(weight * closest), draws)
        np.clip(candidates, None, closest.size - 1, out=candidates)
        distances = squared_distances(x[candidates])
        np.minimum(closest, distances, out=distances)
        potentials = distances @ weight.reshape(-1, 1)
        best = np.argmin(potentials)
        potential, closest = potentials[best], distances[best]
        picked[c] = candidates[best]
    return picked


def _gaussian_parameters(data, resp, reg_covar: float):
    """The M step: mixture weights, means and regularised full covariances."""
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    centres = resp.T @ data / nk[:, None]
    diff = data[None] - centres[:, None]  # k, n, d
    cov = (diff * resp.T[:, :, None]).transpose(1, 2) @ diff / nk[:, None, None]
    cov = cov + reg_covar * torch.eye(data.shape[1], device=data.device, dtype=data.dtype)
    return nk / len(data), centres, cov


def _log_responsibilities(data, weights, centres, cov):
    """The E step: log responsibilities and the mean log-likelihood (the lower bound)."""
    chol = torch.linalg.cholesky(cov)  # k, d, d
    diff = (data[None] - centres[:, None]).transpose(1, 2)  # k, d, n
    y = torch.linalg.solve_triangular(chol, diff, upper=False)
    log_det = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)  # half the log det
    log_prob = (-0.5 * (data.shape[1] * math.log(2 * math.pi) + y.pow(2).sum(1))
                - log_det[:, None]).T + torch.log(weights)  # n, k
    norm = torch.logsumexp(log_prob, dim=1, keepdim=True)
    return log_prob - norm, float(norm.mean())


def sample_latents(n: int, latent_dim: int, generator: torch.Generator | None = None,
                   temperature: float = 1.0, gmm: dict | None = None) -> torch.Tensor:
    """``n`` latents from the prior, or from ``gmm`` when given; noise scaled by temperature."""
    eps = torch.randn(n, latent_dim, generator=generator) * temperature
    if gmm is None:
        return eps
    comp = torch.multinomial(gmm["weights"], n, replacement=True, generator=generator)
    if "scales" in gmm:  # diagonal covariances
        return gmm["means"][comp] + gmm["scales"][comp] * eps
    return gmm["means"][comp] + (gmm["scale_tril"][comp] @ eps[..., None]).squeeze(-1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: the path between Gaussian samples along which the norm
    stays typical (a straight line passes through the unlikely region near zero)."""
    omega = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
