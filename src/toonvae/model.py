"""Encoders, decoders and the VAE around them; architectures are chosen by name.

- ``seed``: the original notebook's network (plain conv stack, BatchNorm, dropout).
- ``resnet``: the default: residual blocks with GroupNorm, strided convs, one stride-2
  stage per width (``resnet_widths``: four up to 112 px, more for larger images), mirrored
  by the decoder.

Every block carries a ``label`` so the architecture figure is drawn from the model
itself (see ``describe``), never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toonvae.errors import ToonvaeError
from toonvae.files import atomic_path

ARCHS = ("resnet", "seed")
SEED_ENCODER = (128, 128, 64, 32)  # the notebook's widths
SEED_DECODER = (32, 64, 128, 128)


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    image_size: int
    latent_dim: int
    channels: tuple[int, ...] = (16, 32, 64, 128)
    likelihood: str = "auto"

    @property
    def resolved_likelihood(self) -> str:
        """The training objective: the notebook's MSE for seed, a Gaussian ELBO for resnet."""
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
                "likelihood": self.likelihood}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(arch=d["arch"], image_size=int(d["image_size"]),
                   latent_dim=int(d["latent_dim"]), channels=tuple(d["channels"]),
                   likelihood=d["likelihood"])


def model_config(p) -> ModelConfig:
    """The ModelConfig that params.yaml (a ``toonvae.params.Params``) describes."""
    return ModelConfig(arch=p.model.arch, image_size=p.image_size, latent_dim=p.latent_dim,
                       channels=tuple(p.model.channels), likelihood=p.model.likelihood)


class Block(nn.Sequential):
    """nn.Sequential with a human label for the architecture figure."""

    def __init__(self, label: str, *layers: nn.Module):
        super().__init__(*layers)
        self.label = label


class Residual(nn.Module):
    """GroupNorm-SiLU-conv twice, plus the identity: keeps gradients healthy."""

    def __init__(self, ch: int):
        super().__init__()
        groups = min(8, ch)
        self.body = nn.Sequential(
            nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class Flatten(Block):
    def __init__(self, label):
        super().__init__(label, nn.Flatten())


class Unflatten(Block):
    def __init__(self, label, shape):
        super().__init__(label, nn.Unflatten(1, shape))


def _seed_networks(cfg: ModelConfig):
    s = cfg.image_size // 16
    enc, c_in = [], 3
    for i, c in enumerate(SEED_ENCODER):
        layers = [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
        if i >= 1:  # the notebook drops out after layers 2-4
            layers.append(nn.Dropout(0.2))
        enc.append(Block(f"conv 3x3/2, {c}, BN, LReLU" + (", drop" if i else ""), *layers))
        c_in = c
    enc.append(Flatten("flatten"))
    feat = SEED_ENCODER[-1] * s * s
    dec = [Block(f"dense {feat}", nn.Linear(cfg.latent_dim, feat)),
           Unflatten("reshape", (SEED_DECODER[0], s, s))]
    c_in = SEED_DECODER[0]
    for c in SEED_DECODER:
        dec.append(Block(f"tconv 3x3/2, {c}, BN, LReLU, drop",
                         nn.ConvTranspose2d(c_in, c, 3, stride=2, padding=1, output_padding=1),
                         nn.BatchNorm2d(c), nn.LeakyReLU(0.2), nn.Dropout(0.2)))
        c_in = c
    dec.append(Block("conv 3x3, 3", nn.Conv2d(c_in, 3, 3, padding=1)))
    return nn.Sequential(*enc), nn.Sequential(*dec), feat


def resnet_widths(cfg: ModelConfig) -> tuple[int, ...]:
    """One width per stride-2 stage. ``model.channels`` gives four; while the feature map
    after them would still be 8 px or more (and even), another stage of the first width
    goes in front, at full resolution. So 64 px keeps four stages down to 4x4, 128 px gets
    five and 256 px six, each ending at 4x4 with the same tail as at 64 px; sizes below
    128 px are unchanged (their last map, 1-7 px, is what it always was)."""
    widths = list(cfg.channels)
    while (cfg.image_size >> len(widths)) >= 8 and (cfg.image_size >> len(widths)) % 2 == 0:
        widths.insert(0, widths[0])
    return tuple(widths)


def _resnet_networks(cfg: ModelConfig):
    ch = resnet_widths(cfg)
    s = cfg.image_size >> len(ch)
    enc = [Block(f"conv 4x4/2, {ch[0]}", nn.Conv2d(3, ch[0], 4, stride=2, padding=1)),
           Block(f"res block {ch[0]}", Residual(ch[0]))]
    for c_in, c in zip(ch, ch[1:]):
        enc.append(Block(f"conv 4x4/2, {c}", nn.Conv2d(c_in, c, 4, stride=2, padding=1)))
        enc.append(Block(f"res block {c}", Residual(c)))
    enc.append(Block("GN, SiLU", nn.GroupNorm(min(8, ch[-1]), ch[-1]), nn.SiLU()))
    enc.append(Flatten("flatten"))
    feat = ch[-1] * s * s
    dec = [Block(f"dense {feat}", nn.Linear(cfg.latent_dim, feat)),
           Unflatten("reshape", (ch[-1], s, s))]
    rev = ch[::-1]
    for c_in, c in zip(rev, rev[1:]):
        dec.append(Block(f"res block {c_in}", Residual(c_in)))
        dec.append(Block(f"tconv 4x4/2, {c}", nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1)))
    dec.append(Block(f"res block {ch[0]}", Residual(ch[0])))
    dec.append(Block("GN, SiLU, tconv 4x4/2, 3",
                     nn.GroupNorm(min(8, ch[0]), ch[0]), nn.SiLU(),
                     nn.ConvTranspose2d(ch[0], 3, 4, stride=2, padding=1)))
    return nn.Sequential(*enc), nn.Sequential(*dec), feat


class VAE(nn.Module):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) set by the likelihood.

    The decoder gives the pixel means in [0, 1]; ``log_scale`` (one per colour channel)
    is the scale of the discretized likelihood (``cfg.eval_likelihood``), fitted after
    training (``train.fit_log_scale``), so every model, the notebook's MSE one too, has
    an ELBO.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.arch not in ARCHS:
            raise ToonvaeError(f"model.arch: {cfg.arch!r} is not allowed; expected one of "
                               + ", ".join(ARCHS))
        if cfg.image_size % 16:
            raise ToonvaeError(f"image_size: {cfg.image_size} is not allowed; the {cfg.arch} "
                               "architecture needs a multiple of 16")
        self.cfg = cfg
        build = _seed_networks if cfg.arch == "seed" else _resnet_networks
        self.encoder, self.decoder, feat = build(cfg)
        self.to_mu = nn.Linear(feat, cfg.latent_dim)
        self.to_logvar = nn.Linear(feat, cfg.latent_dim)
        self.log_scale = nn.Parameter(torch.full((1, 3, 1, 1), -2.0), requires_grad=False)
        # The Gaussian mixture over posterior means (see toonvae.sampler), fitted after
        # training and kept beside the weights: plain tensors, not parameters.
        self.gmm: dict[str, torch.Tensor] | None = None

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

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

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


def build(cfg: ModelConfig) -> VAE:
    return VAE(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def describe(model: VAE) -> list[tuple[str, str, tuple[int, ...]]]:
    """(part, label, output shape) for each block, by running one dummy image through."""
    rows: list[tuple[str, str, tuple[int, ...]]] = []
    was_training = model.training
    model.eval()
    size = model.cfg.image_size
    x = torch.zeros(1, 3, size, size, device=model.log_scale.device)
    rows.append(("input", "image", tuple(x.shape[1:])))
    h = x
    for block in model.encoder:
        h = block(h)
        rows.append(("encoder", block.label, tuple(h.shape[1:])))
    mu = model.to_mu(h)
    rows.append(("latent", "dense -> mu, log sigma^2", tuple(mu.shape[1:])))
    h = mu
    for block in model.decoder:
        h = block(h)
        rows.append(("decoder", block.label, tuple(h.shape[1:])))
    rows.append(("output", "sigmoid", tuple(h.shape[1:])))
    model.train(was_training)
    return rows


FORMAT_VERSION = 1


def save_model(model: VAE, path, extra: dict | None = None) -> None:
    """Weights plus the config that rebuilds them, written via a temp file and a rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT_VERSION, "config": model.cfg.to_dict(), "state_dict": state,
            **(extra or {})}
    if model.gmm is not None:
        blob["gmm"] = {k: v.detach().cpu() for k, v in model.gmm.items()}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_model(path, device: str | torch.device = "cpu") -> tuple[VAE, dict]:
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
    model = VAE(ModelConfig.from_dict(blob["config"]))
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
        ok = (gmm["means"].shape == (k, latent_dim)
              and gmm["scale_tril"].shape == (k, latent_dim, latent_dim))
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ToonvaeError(f"{path}: its latent mixture does not fit latent_dim {latent_dim}; "
                           "retrain it")
    return gmm
