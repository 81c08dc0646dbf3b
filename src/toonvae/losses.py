"""Likelihoods, KL and the ELBO, all per image and in nats unless the name says bpd.

Pixels are 8-bit: x in {0, 1/255, ..., 1}. The discretized logistic puts on each
pixel value the probability mass of its 1/255-wide bin, with the two edge bins
stretched to -inf and +inf (as in PixelCNN++), so -log p(x|z) is a true code length
and the ELBO converts to bits per dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0  # keeps exp(logvar) finite in fp32
LOG_SCALE_MIN = -7.0  # a logistic narrower than ~1/1000 of the range gains nothing on 8-bit data
HALF_BIN = 1.0 / 510.0


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension, in nats, in fp32."""
    mu, logvar = mu.float(), logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def _discretized_nll(x, mean, log_scale, pieces) -> torch.Tensor:
    """The bin arithmetic both likelihoods share; ``pieces`` gives, from the standardized
    bin edges and centre, the log mass of the two open edge bins, the mass of an inner
    bin, the log density at its centre and the mass below which that density is used."""
    x, mean = x.float(), mean.float()
    log_scale = log_scale.float().clamp(min=LOG_SCALE_MIN).expand_as(mean)
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    plus_in = inv_s * (centered + HALF_BIN)
    min_in = inv_s * (centered - HALF_BIN)
    log_lowest, log_highest, cdf_delta, log_pdf, tiny = pieces(plus_in, min_in, inv_s * centered)
    # Where the bin mass underflows, use density x bin width instead.
    log_pdf_mid = log_pdf - log_scale - math.log(255.0)
    log_mass = torch.where(cdf_delta > tiny, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
    log_p = torch.where(x < HALF_BIN, log_lowest,
                        torch.where(x > 1.0 - HALF_BIN, log_highest, log_mass))
    return -log_p


def _logistic_pieces(plus_in, min_in, mid_in):
    return (plus_in - F.softplus(plus_in),  # log sigmoid(plus_in): the lowest bin
            -F.softplus(min_in),  # log(1 - sigmoid(min_in)): the highest bin
            torch.sigmoid(plus_in) - torch.sigmoid(min_in),
            mid_in - 2.0 * F.softplus(mid_in), 1e-5)


def _gaussian_pieces(plus_in, min_in, mid_in):
    ndtr = torch.special.ndtr
    # Take an inner bin's mass from the nearer tail, where both CDF values are small and exact.
    delta = torch.where(min_in > 0, ndtr(-min_in) - ndtr(-plus_in), ndtr(plus_in) - ndtr(min_in))
    return (torch.special.log_ndtr(plus_in), torch.special.log_ndtr(-min_in), delta,
            -0.5 * mid_in.pow(2) - 0.5 * math.log(2 * math.pi), 1e-6)


def discretized_logistic_nll(x: torch.Tensor, mean: torch.Tensor,
                             log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(x) per pixel and channel, in nats, for x and mean in [0, 1]."""
    return _discretized_nll(x, mean, log_scale, _logistic_pieces)


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor,
                             log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(x) per pixel and channel, in nats, for a Gaussian with std exp(log_scale)."""
    return _discretized_nll(x, mean, log_scale, _gaussian_pieces)


PIXEL_NLL = {"logistic": discretized_logistic_nll, "gaussian": discretized_gaussian_nll}


def recon_nll(x, mean, log_scale, likelihood: str = "logistic") -> torch.Tensor:
    """-log p(x|z) per image, nats."""
    return PIXEL_NLL[likelihood](x, mean, log_scale).flatten(1).sum(1)


def mse_per_image(x, mean) -> torch.Tensor:
    return (x.float() - mean.float()).pow(2).flatten(1).mean(1)


def optimal_log_scale(x, mean, likelihood: str) -> torch.Tensor:
    """Per-channel scale whose variance equals the batch's MSE (Gaussian: the ML scale).

    Training with this closed-form scale, as the sigma-VAE does, instead of a learned one
    avoids the long early phase where a slowly learned scale keeps the likelihood flat;
    it is computed without gradient. A logistic's variance is pi^2 s^2 / 3.
    """
    with torch.no_grad():
        mse = (x.float() - mean.float()).pow(2).mean((0, 2, 3), keepdim=True).clamp(min=1e-12)
        if likelihood == "logistic":
            log_s = 0.5 * torch.log(3.0 * mse) - math.log(math.pi)
        else:
            log_s = 0.5 * torch.log(mse)
        return log_s.clamp(min=LOG_SCALE_MIN)


def training_loss(likelihood: str, x, mean, mu, logvar, beta: float, free_bits: float = 0.0):
    """(loss to minimise, reconstruction term, KL) averaged over the batch.

    logistic, gaussian: the negative ELBO (beta = 1) in nats per image, optimal scale.
    mse: the notebook's objective, 1000 * mean squared error + KL.
    ``free_bits`` (nats per latent dimension) stops pushing a dimension's batch-mean KL
    below that floor (Kingma et al. 2016), so dimensions are not switched off early.
    The returned KL is always the true one.
    """
    kl_dims = kl_normal(mu, logvar)
    kl = kl_dims.sum(1)
    if likelihood == "mse":
        recon = 1000.0 * mse_per_image(x, mean)
    else:
        recon = recon_nll(x, mean, optimal_log_scale(x, mean, likelihood), likelihood)
    kl_term = kl.mean()
    if free_bits > 0:
        kl_term = kl_dims.mean(0).clamp(min=free_bits).sum()
    return recon.mean() + beta * kl_term, recon.mean(), kl.mean()


def bits_per_dim(nats_per_image, dims: int):
    """Nats per image (a float or a tensor) as bits per pixel value."""
    return nats_per_image / (dims * math.log(2.0))
