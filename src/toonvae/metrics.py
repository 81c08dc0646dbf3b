"""Evaluation metrics on the test split, as defined in the README (keep them stable).

Images are uint8 -> float in [0, 1]; reconstructions decode z = mu.
- mse: mean squared error over all pixels and channels.
- psnr: mean over images of 10 log10(1 / mse_i), in dB.
- ssim: torchmetrics' SSIM (11 px Gaussian window, sigma 1.5, data range 1), mean over images.
- kl: KL(q(z|x) || p(z)) in nats per image.
- elbo_bpd: negative ELBO in bits per dimension for a discretized likelihood over 8-bit
  pixels (Gaussian, or logistic for models trained with it; the file names it), one z
  sample per image from a seeded generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.image import StructuralSimilarityIndexMeasure

from toonvae import losses
from toonvae.data import batches, to_float
from toonvae.model import VAE
from toonvae.progress import progress


@torch.inference_mode()
def evaluate(model: VAE, test: np.ndarray, batch_size: int, seed: int,
             device: torch.device | str = "cpu") -> dict:
    model.eval()
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
    generator = torch.Generator().manual_seed(seed)
    dims = 3 * test.shape[2] * test.shape[3]
    likelihood = model.cfg.eval_likelihood
    sums = {"mse": 0.0, "psnr": 0.0, "kl": 0.0, "nelbo": 0.0}
    n = 0
    bar = progress(total=math.ceil(len(test) / batch_size), desc="evaluating", unit="batch")
    with bar:
        for xb in batches(test, batch_size):
            x = to_float(xb, device)
            mu, logvar = model.encode(x)
            recon = model.decode(mu)
            mse_i = losses.mse_per_image(x, recon)
            eps = torch.randn(mu.shape, generator=generator).to(device)
            z = mu + eps * torch.exp(0.5 * logvar.clamp(losses.LOGVAR_MIN, losses.LOGVAR_MAX))
            nll = losses.recon_nll(x, model.decode(z), model.log_scale, likelihood)
            kl = losses.kl_normal(mu, logvar).sum(1)
            sums["mse"] += mse_i.sum().item()
            sums["psnr"] += (10 * torch.log10(1.0 / mse_i.clamp(min=1e-10))).sum().item()
            sums["kl"] += kl.sum().item()
            sums["nelbo"] += (nll + kl).sum().item()
            ssim.update(recon.float(), x)
            n += len(x)
            bar.update()
    return {
        "mse": sums["mse"] / n,
        "psnr": sums["psnr"] / n,
        "ssim": float(ssim.compute()),
        "kl": sums["kl"] / n,
        "elbo_bpd": sums["nelbo"] / n / (dims * math.log(2.0)),
        "likelihood": f"discretized_{likelihood}",
        "n_test": n,
    }


def rounded(metrics: dict, digits: int = 6) -> dict:
    """Round floats to ``digits`` significant digits: stable, readable JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float):
            out[key] = float(f"{value:.{digits}g}")
        elif isinstance(value, dict):
            out[key] = rounded(value, digits)
        else:
            out[key] = value
    return out
