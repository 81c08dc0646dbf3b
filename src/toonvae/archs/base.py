"""What every architecture shares: the face it shows the pipeline (``LatentVAE``), and
the flat latent that resnet and seed put on their networks (``FlatVAE``). Every block carries a ``label`` so the architecture figure is drawn from the
model itself (``toonvae.model.describe``), never by hand.
"""

from __future__ import annotations

import torch
from torch import nn

from toonvae.archs.config import SAMPLERS, ModelConfig
from toonvae.errors import ToonvaeError
from toonvae.losses import LOGVAR_MAX, LOGVAR_MIN
from toonvae.sampler import sample_latents


class LatentVAE(nn.Module):
    """What every architecture shows the pipeline: a flat latent of ``cfg.latent_dim``
    with the prior N(0, I), ``encode`` (the posterior's mean and log-variance), ``decode``
    (pixel means in [0, 1]), ``posterior`` (posterior draws from given standard-normal
    noise), and sampling from the prior or from the fitted mixture.

    ``log_scale`` (one per colour channel) is the scale of the discretized likelihood
    (``toonvae.archs.eval_likelihood``), fitted after training (``train.fit_log_scale``), so every
    model, the notebook's MSE one too, has an ELBO.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.image_size % 16:
            raise ToonvaeError(f"image_size: {cfg.image_size} is not allowed; the {cfg.arch} "
                               "architecture needs a multiple of 16")
        self.cfg = cfg
        self.log_scale = nn.Parameter(torch.full((1, 3, 1, 1), -2.0), requires_grad=False)
        # The Gaussian mixture over posterior means (see toonvae.sampler), fitted after
        # training and kept beside the weights: plain tensors, not parameters.
        self.gmm: dict[str, torch.Tensor] | None = None
        # The learned prior over the top latent levels' ε (toonvae.flow), fitted after
        # training; a submodule once set (it moves with the model), saved beside the weights.
        self.flow = None

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    def encoder_rows(self) -> tuple[list[tuple[str, str, tuple[int, ...]]], torch.Tensor]:
        """The architecture figure's rows from the input through ``self.encoder``, and the
        encoder's output for one blank image (``describe_rows`` goes on from there)."""
        size = self.cfg.image_size
        h = torch.zeros(1, 3, size, size, device=self.log_scale.device)
        rows = [("input", "image", tuple(h.shape[1:]))]
        for block in self.encoder:
            h = block(h)
            rows.append(("encoder", block.label, tuple(h.shape[1:])))
        return rows, h

    def require_sampler(self, sampler: str) -> None:
        """Raise, in one line, unless this model can draw from ``sampler``."""
        if sampler not in SAMPLERS:
            raise ToonvaeError(f"sampler {sampler!r} is not allowed; expected one of "
                               + ", ".join(SAMPLERS))
        if sampler == "gmm" and self.gmm is None:
            raise ToonvaeError("this model has no fitted mixture for sampler 'gmm'; "
                               "retrain it or use sampler 'prior'")
        if sampler == "flow" and self.flow is None:
            raise ToonvaeError("this model has no learned prior for sampler 'flow'; retrain "
                               "it with sampler.flow_levels above 0 or use sampler 'prior'")

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0, sampler: str = "prior") -> torch.Tensor:
        """``n`` latents (on the CPU) from the prior, the fitted mixture, or the prior with
        its top levels from the learned flow (the prior's draws below, then the flow's, from
        the same generator)."""
        self.require_sampler(sampler)
        z = sample_latents(n, self.cfg.latent_dim, generator, temperature,
                           self.gmm if sampler == "gmm" else None)
        if sampler == "flow":
            z[:, :self.flow.dim] = self.flow.sample(n, generator, temperature)
        return z

    def latent_levels(self) -> list[tuple[str, int]]:
        """(name, end offset) of each level of the latent, top first: one for a flat latent."""
        return [("all", self.cfg.latent_dim)]

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, sampler: str = "prior") -> torch.Tensor:
        z = self.sample_latents(n, generator, temperature, sampler)
        return self.decode(z.to(self.log_scale.device))


class FlatVAE(LatentVAE):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) set by the likelihood,
    around the encoder and decoder that a subclass's ``networks`` gives."""

    @staticmethod
    def networks(cfg: ModelConfig) -> tuple[nn.Module, nn.Module, int]:
        """(encoder, decoder, features before the latent)."""
        raise NotImplementedError

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.encoder, self.decoder, feat = self.networks(cfg)
        self.to_mu = nn.Linear(feat, cfg.latent_dim)
        self.to_logvar = nn.Linear(feat, cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        # Reparameterisation; the noise comes from torch's seeded global generator.
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
        return self.decode(z), mu, logvar

    def posterior(self, x: torch.Tensor, noise: torch.Tensor):
        """(pixel means, z, mu, logvar) for z = mu + noise * sigma: one draw per row of
        ``noise`` (B, D), or m per image for (m, B, D), whose means are (m * B, 3, H, W).
        The encoder runs once; mu and logvar keep the shape (B, D)."""
        mu, logvar = self.encode(x)
        logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        z = mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z.flatten(0, -2)), z, mu, logvar

    @torch.no_grad()
    def describe_rows(self) -> list[tuple[str, str, tuple[int, ...]]]:
        rows, h = self.encoder_rows()
        h = self.to_mu(h)
        rows.append(("latent", "dense -> mu, log sigma^2", tuple(h.shape[1:])))
        for block in self.decoder:
            h = block(h)
            rows.append(("decoder", block.label, tuple(h.shape[1:])))
        rows.append(("output", "sigmoid", tuple(h.shape[1:])))
        return rows
