"""Evaluation metrics on the test split, as defined in docs/reference/metrics.md (keep them stable).

Images are uint8 -> float in [0, 1]; reconstructions decode z = mu.
- mse: mean squared error over all pixels and channels.
- psnr: mean over images of 10 log10(1 / mse_i), in dB.
- ssim: SSIM (Wang et al. 2004; 11 px Gaussian window, sigma 1.5, data range 1), mean over
  images: torchmetrics' computation, op for op (``ssim_per_image``).
- kl: KL(q(z|x) || p(z)) in nats per image; kl_per_dim: the same per latent dimension.
  For hvae, z is the groups' standardised noise and these are the hierarchical KL (each
  group's, given the groups above, drawn), on the same draw as the ELBO's.
- active_units: latent dimensions whose posterior mean varies (variance > 0.01) over the test set.
- elbo_bpd: negative ELBO in bits per dimension for a discretized likelihood over 8-bit
  pixels (Gaussian, or logistic for models trained with it; the file names it), one z
  sample per image from a seeded generator.
- iwae_bpd: the importance-weighted bound (Burda et al. 2016) with k samples per image, on
  the first ``iwae_images`` test images; never above the ELBO, tighter as k grows.
- swd, swd_floor: see ``toonvae.swd``; fid: see ``toonvae.fid``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from toonvae import archs, losses
from toonvae.archs.base import LatentVAE
from toonvae.data import batches, to_float
from toonvae.progress import progress

ACTIVE_VARIANCE = 0.01


SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of each image pair (B, C, H, W) in [0, 1]: torchmetrics'
    StructuralSimilarityIndexMeasure(data_range=1), the same ops in the same order, so the
    same bits. Written here because importing torchmetrics loads torchvision and
    torch._dynamo (about 6 s a process on 2 cores); a test checks it against torchmetrics."""
    channels, dtype, device = pred.shape[1], pred.dtype, pred.device
    dist = torch.arange((1 - SSIM_WINDOW) / 2, (1 + SSIM_WINDOW) / 2, 1, dtype=dtype, device=device)
    gauss = torch.exp(-torch.pow(dist / SSIM_SIGMA, 2) / 2)
    gauss = (gauss / gauss.sum()).unsqueeze(0)
    kernel = torch.matmul(gauss.t(), gauss).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    pad = (SSIM_WINDOW - 1) // 2
    pred = torch.nn.functional.pad(pred, (pad, pad, pad, pad), mode="reflect")
    target = torch.nn.functional.pad(target.to(dtype), (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat((pred, target, pred * pred, target * target, pred * target))
    mu_p, mu_t, pp, tt, pt = torch.nn.functional.conv2d(stacked, kernel, groups=channels).split(
        len(pred))
    mu_p_sq, mu_t_sq, mu_pt = mu_p.pow(2), mu_t.pow(2), mu_p * mu_t
    var_p = torch.clamp(pp - mu_p_sq, min=0.0)
    var_t = torch.clamp(tt - mu_t_sq, min=0.0)
    cov = pt - mu_pt
    c1, c2 = pow(SSIM_K1, 2), pow(SSIM_K2, 2)
    upper = 2 * cov.to(dtype) + c2
    lower = (var_p + var_t).to(dtype) + c2
    ssim = ((2 * mu_pt + c1) * upper) / ((mu_p_sq + mu_t_sq + c1) * lower)
    return ssim.reshape(len(ssim), -1).mean(-1)


@torch.inference_mode()
def reconstruction_metrics(model: LatentVAE, test: np.ndarray, batch_size: int, seed: int,
                           device: torch.device | str = "cpu") -> dict:
    """mse, psnr, ssim, kl, elbo_bpd, active_units and kl_per_dim over ``test``."""
    model.eval()
    ssim_sum = torch.zeros((), device=device)
    generator = torch.Generator().manual_seed(seed)
    dims = 3 * test.shape[2] * test.shape[3]
    likelihood = archs.eval_likelihood(model.cfg)
    sums = {"mse": 0.0, "psnr": 0.0, "kl": 0.0, "nelbo": 0.0}
    kl_dims = torch.zeros(model.cfg.latent_dim, dtype=torch.float64)
    mus = []
    n = 0
    bar = progress(total=math.ceil(len(test) / batch_size), desc="reconstructing", unit="batch")
    with bar:
        for xb in batches(test, batch_size):
            x = to_float(xb, device)
            mu = model.encode(x)[0]
            recon = model.decode(mu)
            mse_i = losses.mse_per_image(x, recon)
            eps = torch.randn(mu.shape, generator=generator).to(device)
            # The ELBO's draw; a hierarchical model's posterior depends on the path drawn.
            sampled, _, mu_z, logvar_z = model.posterior(x, eps)
            nll = losses.recon_nll(x, sampled, model.log_scale, likelihood)
            kl_d = losses.kl_normal(mu_z, logvar_z)
            kl = kl_d.sum(1)
            sums["mse"] += mse_i.sum().item()
            sums["psnr"] += (10 * torch.log10(1.0 / mse_i.clamp(min=1e-10))).sum().item()
            sums["kl"] += kl.sum().item()
            sums["nelbo"] += (nll + kl).sum().item()
            kl_dims += kl_d.sum(0).double().cpu()
            mus.append(mu.double().cpu())
            ssim_sum += ssim_per_image(recon.float(), x).sum()
            n += len(x)
            bar.update()
    mu_var = torch.cat(mus).var(0) if n > 1 else torch.zeros(model.cfg.latent_dim)
    return {
        "mse": sums["mse"] / n,
        "psnr": sums["psnr"] / n,
        "ssim": float(ssim_sum / torch.tensor(float(n), device=device)),
        "kl": sums["kl"] / n,
        "elbo_bpd": losses.bits_per_dim(sums["nelbo"] / n, dims),
        "active_units": int((mu_var > ACTIVE_VARIANCE).sum()),
        "kl_per_dim": (kl_dims / n).tolist(),
        "n_test": n,
    }


def log_weights(model: LatentVAE, x: torch.Tensor, k: int, generator: torch.Generator,
                chunk: int) -> torch.Tensor:
    """log p(x, z) - log q(z|x) for k samples z ~ q(z|x) per image: shape (k, batch), fp64."""
    likelihood = archs.eval_likelihood(model.cfg)
    out = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn((m, len(x), model.cfg.latent_dim), generator=generator).to(x.device)
        mean, z, _, logvar = model.posterior(x, eps)  # z: m, B, D
        xs = x.expand(m, *x.shape).flatten(0, 1)
        log_px = -losses.recon_nll(xs, mean, model.log_scale, likelihood).view(m, -1)
        log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
        out.append(log_px.double() + log_pz.double() - log_qz.double())
    return torch.cat(out)


@torch.inference_mode()
def iwae_bpd(model: LatentVAE, images: np.ndarray, k: int, batch_size: int, seed: int,
             device: torch.device | str = "cpu") -> float:
    """-log p(x) bounded with k importance samples per image, in bits per dimension."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    dims = 3 * images.shape[2] * images.shape[3]
    per_batch = max(1, batch_size // k)  # images per pass, so one pass decodes ~batch_size
    chunk = min(k, batch_size)
    total, n = 0.0, 0
    bar = progress(total=math.ceil(len(images) / per_batch), desc=f"iwae k={k}", unit="batch")
    with bar:
        for xb in batches(images, per_batch):
            x = to_float(xb, device)
            lw = log_weights(model, x, k, generator, chunk)
            total += -(torch.logsumexp(lw, 0) - math.log(k)).sum().item()
            n += len(x)
            bar.update()
    return losses.bits_per_dim(total / n, dims)


@torch.inference_mode()
def decode_in_batches(model: LatentVAE, z: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    return torch.cat([model.decode(z[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(z), batch_size)])


def rounded(metrics: dict, digits: int = 6) -> dict:
    """Round floats to ``digits`` significant digits: stable, readable JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float):  # NaN would be invalid JSON: a metric without a value is null
            out[key] = float(f"{value:.{digits}g}") if math.isfinite(value) else None
        elif isinstance(value, dict):
            out[key] = rounded(value, digits)
        else:
            out[key] = value
    return out
