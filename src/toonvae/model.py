"""The VAE around the networks, chosen by name (``model.arch``), and its model file.

- ``resnet``: the default; see ``toonvae.archs.resnet``.
- ``seed``: the original notebook's network; see ``toonvae.archs.seed``.
- ``hvae``: a hierarchical VAE with top-down latent groups; see ``toonvae.archs.hvae``.

Every model has the same face to the pipeline (``LatentVAE``): a flat latent of
``latent_dim`` with the prior N(0, I), ``encode``, ``decode``, ``posterior`` draws and
the samplers. Every block carries a ``label`` so the architecture figure is drawn from the
model itself (see ``describe``), never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toonvae.errors import ToonvaeError
from toonvae.files import atomic_path
from toonvae.losses import LOGVAR_MAX, LOGVAR_MIN

ARCHS = ("resnet", "seed", "hvae")


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    image_size: int
    latent_dim: int
    channels: tuple[int, ...] = (16, 32, 64, 128)
    likelihood: str = "auto"
    upsample: str = "resize-rgb"

    @property
    def resolved_likelihood(self) -> str:
        """The training objective: the notebook's MSE for seed, a Gaussian ELBO otherwise."""
        if self.likelihood != "auto":
            return self.likelihood
        return "mse" if self.arch == "seed" else "gaussian"

    @property
    def eval_likelihood(self) -> str:
        """The discretized likelihood of the reported ELBO; MSE is a fixed-scale Gaussian."""
        return "logistic" if self.resolved_likelihood == "logistic" else "gaussian"

    def to_dict(self) -> dict:
        return {"arch": self.arch, "image_size": self.image_size,
                "latent_dim": self.latent_dim, "channels": list(self.channels),
                "likelihood": self.likelihood, "upsample": self.upsample}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(arch=d["arch"], image_size=int(d["image_size"]),
                   latent_dim=int(d["latent_dim"]), channels=tuple(d["channels"]),
                   likelihood=d["likelihood"],
                   # Model files written before the setting existed have tconv decoders.
                   upsample=d.get("upsample", "tconv"))


def model_config(p) -> ModelConfig:
    """The ModelConfig that params.yaml (a ``toonvae.params.Params``) describes."""
    return ModelConfig(arch=p.model.arch, image_size=p.image_size, latent_dim=p.latent_dim,
                       channels=tuple(p.model.channels), likelihood=p.model.likelihood,
                       upsample=p.model.upsample)


class LatentVAE(nn.Module):
    """What every architecture shows the pipeline: a flat latent of ``cfg.latent_dim``
    with the prior N(0, I), ``encode`` (the posterior's mean and log-variance), ``decode``
    (pixel means in [0, 1]), ``posterior`` (posterior draws from given standard-normal
    noise), and sampling from the prior or from the fitted mixture.

    ``grad_clip``: where set, training clips the gradient's norm to it.

    ``log_scale`` (one per colour channel) is the scale of the discretized likelihood
    (``cfg.eval_likelihood``), fitted after training (``train.fit_log_scale``), so every
    model, the notebook's MSE one too, has an ELBO.
    """

    grad_clip: float | None = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.arch not in ARCHS:
            raise ToonvaeError(f"model.arch: {cfg.arch!r} is not allowed; expected one of "
                               + ", ".join(ARCHS))
        if cfg.image_size % 16:
            raise ToonvaeError(f"image_size: {cfg.image_size} is not allowed; the {cfg.arch} "
                               "architecture needs a multiple of 16")
        self.cfg = cfg
        self.log_scale = nn.Parameter(torch.full((1, 3, 1, 1), -2.0), requires_grad=False)
        # The Gaussian mixture over posterior means (see toonvae.sampler), fitted after
        # training and kept beside the weights: plain tensors, not parameters.
        self.gmm: dict[str, torch.Tensor] | None = None

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

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0, sampler: str = "prior") -> torch.Tensor:
        """``n`` latents (on the CPU) from the prior or from the fitted mixture."""
        from toonvae.sampler import SAMPLERS, sample_latents

        if sampler not in SAMPLERS:
            raise ToonvaeError(f"sampler {sampler!r} is not allowed; expected one of "
                               + ", ".join(SAMPLERS))
        if sampler == "gmm" and self.gmm is None:
            raise ToonvaeError("this model has no fitted mixture for sampler 'gmm'; "
                               "retrain it or use sampler 'prior'")
        return sample_latents(n, self.cfg.latent_dim, generator, temperature,
                              self.gmm if sampler == "gmm" else None)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, sampler: str = "prior") -> torch.Tensor:
        z = self.sample_latents(n, generator, temperature, sampler)
        return self.decode(z.to(self.log_scale.device))


class VAE(LatentVAE):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) set by the likelihood:
    the flat-latent architectures, resnet and seed."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        from toonvae.archs.resnet import resnet_networks
        from toonvae.archs.seed import seed_networks

        build = seed_networks if cfg.arch == "seed" else resnet_networks
        self.encoder, self.decoder, feat = build(cfg)
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
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
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


def build(cfg: ModelConfig) -> LatentVAE:
    if cfg.arch == "hvae":
        from toonvae.archs.hvae import HVAE

        return HVAE(cfg)
    return VAE(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def describe(model: LatentVAE) -> list[tuple[str, str, tuple[int, ...]]]:
    """(part, label, output shape) for each block, by running one dummy image through."""
    was_training = model.training
    model.eval()
    rows = model.describe_rows()
    model.train(was_training)
    return rows


FORMAT_VERSION = 1


def save_model(model: LatentVAE, path, extra: dict | None = None) -> None:
    """Weights plus the config that rebuilds them, written via a temp file and a rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT_VERSION, "config": model.cfg.to_dict(), "state_dict": state,
            **(extra or {})}
    if model.gmm is not None:
        blob["gmm"] = {k: v.detach().cpu() for k, v in model.gmm.items()}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_model(path, device: str | torch.device = "cpu") -> tuple[LatentVAE, dict]:
    """Rebuild a model saved by ``save_model``; untrusted files load with weights_only."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir() or not path.suffix:  # a model directory, as the stages write them
        path = path / "model.pt"
    if not path.is_file():
        raise ToonvaeError(f"{path}: no model file; run the train stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ToonvaeError(f"{path}: not a readable toonvae model ({type(exc).__name__}); "
                           "retrain it") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ToonvaeError(f"{path}: model format {blob.get('format') if isinstance(blob, dict) else '?'}"
                           f" is not {FORMAT_VERSION}; retrain it with this version")
    try:
        model = build(ModelConfig.from_dict(blob["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ToonvaeError(f"{path}: its config is not a toonvae model's ({exc}); "
                           "retrain it") from None
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ToonvaeError(f"{path}: weights do not match the architecture in the file "
                           f"({str(exc).splitlines()[0]}); retrain it") from None
    model.gmm = _checked_gmm(blob.get("gmm"), model.cfg.latent_dim, path)
    return model.to(device).eval(), blob


def _checked_gmm(gmm, latent_dim: int, path) -> dict[str, torch.Tensor] | None:
    if gmm is None:
        return None
    try:
        k = len(gmm["weights"])
        spread = (gmm["scales"].shape == (k, latent_dim) if "scales" in gmm
                  else gmm["scale_tril"].shape == (k, latent_dim, latent_dim))
        ok = gmm["means"].shape == (k, latent_dim) and spread
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ToonvaeError(f"{path}: its latent mixture does not fit latent_dim {latent_dim}; "
                           "retrain it")
    return gmm
