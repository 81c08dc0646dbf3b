"""``hvae``: a hierarchical VAE with top-down latent groups (NVAE, Vahdat & Kautz 2020;
VDVAE, Child 2021), small enough to train in minutes on a CPU.

- Bottom-up: the resnet encoder's stages (a stride-2 conv and a residual block per width),
  keeping each stage's output.
- Top-down: from a learned map at the coarsest resolution, one latent group at each of the
  ``LEVELS`` coarsest resolutions (4, 8 and 16 px at 64 px). A group has
  - a prior p(z_l | z_<l) = N(mu_p, sigma_p), from the top-down state h;
  - a posterior q(z_l | x, z_<l) = N(mu_q, sigma_q), from h and the bottom-up features
    of the same resolution;
  - then z_l is projected into h, and a residual block follows.

  Between resolutions h is resized x2 and convolved (no checkerboard); after the last
  group the path goes on like the resnet decoder to the image.
- Means and log-scales are soft-clamped to +-5 (NVAE), the gradient norm is clipped
  (its registry entry's ``grad_clip_per_value``; VDVAE clips and skips), and the prior and posterior start at N(0, I) (their last convs start
  at zero), so training starts with no KL. Without these, a run with two groups per
  level blew its KL up to 3.6e12 nats in its second epoch.

The latent the rest of the pipeline sees is each group's standardised prior noise,
eps_l = (z_l - mu_p) / sigma_p, flattened top group first. Then
- the prior over eps is exactly N(0, I), so both samplers, traversals and attribute
  vectors work unchanged, and ``decode(eps)`` runs the top-down path;
- KL(q(eps_l | x, eps_<l) || N(0, I)) equals the group's KL(q(z_l) || p(z_l | z_<l)),
  so the training loss's KL is the hierarchical one, summed over groups;
- the temperature scales every group's prior spread (z_l = mu_p + t sigma_p eps_l), as
  NVAE does per level.
The posterior over eps depends on the upper groups' draws, so ``posterior`` draws all
groups along one path; ``encode`` gives the path where every group takes its mean.
"""

from __future__ import annotations

import torch
from torch import nn

from toonvae.archs.base import LatentVAE
from toonvae.archs.blocks import Block, Residual, upsample
from toonvae.archs.resnet import encoder_stages, resnet_widths
from toonvae.errors import ToonvaeError

GROUPS = (1, 1, 1)  # latent groups at each resolution, coarsest first. Two at each of the
# two coarsest (1664 latents) came out no better at 4 epochs on anime (mse 0.0084 against
# 0.0078, swd from the prior 82.5 against 80.4) and took longer per epoch
LEVELS = len(GROUPS)
BOUND = 5.0  # means and log standard deviations stay within +-BOUND


def latent_layout(cfg) -> list[tuple[int, int]]:
    """(channels, side) of each latent group, top first. ``latent_dim`` is the total:
    the same number of channels at every level; anything else is refused."""
    ch = resnet_widths(cfg)
    sides = [cfg.image_size >> (len(ch) - level) for level in range(LEVELS)]
    positions = sum(n * s * s for n, s in zip(GROUPS, sides))
    if cfg.latent_dim % positions or cfg.latent_dim < positions:
        maps = ", ".join(f"{n} x {s}x{s}" for n, s in zip(GROUPS, sides))
        raise ToonvaeError(
            f"latent_dim: {cfg.latent_dim} does not fit model.arch hvae at {cfg.image_size} "
            f"px: its latent is channels x {positions} positions (maps of {maps}), so "
            f"latent_dim must be a multiple of {positions}; the smallest is {positions}")
    return [(cfg.latent_dim // positions, s) for n, s in zip(GROUPS, sides) for _ in range(n)]


def _soft_clamp(x: torch.Tensor) -> torch.Tensor:
    """x squashed smoothly into (-BOUND, BOUND), as NVAE bounds means and log-scales: a
    group cannot blow its KL up by a huge mean or a vanishing scale in one step."""
    return BOUND * torch.tanh(x / BOUND)


class Group(nn.Module):
    """One latent group: its prior from h, its posterior from h and the encoder's map."""

    def __init__(self, width: int, channels: int, side: int):
        super().__init__()
        self.channels, self.side = channels, side
        self.label = f"latent {channels}x{side}x{side}: p(z|h), q(z|h, x)"
        self.prior = nn.Conv2d(width, 2 * channels, 3, padding=1)
        self.posterior = nn.Sequential(
            nn.GroupNorm(min(8, 2 * width), 2 * width), nn.SiLU(),
            nn.Conv2d(2 * width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * channels, 1))
        self.project = nn.Conv2d(channels, width, 1)
        self.cell = Residual(width)
        for conv in (self.prior, self.posterior[-1]):  # both start at N(0, I)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    @property
    def size(self) -> int:
        return self.channels * self.side * self.side

    def forward(self, h, feature=None, noise=None, eps=None):
        """(new h, eps, mu_eps, logvar_eps): with ``feature`` the posterior's draw (its
        mean where ``noise`` is None), else the prior's with the given ``eps``."""
        mu_p, log_p = (_soft_clamp(t) for t in self.prior(h).float().chunk(2, 1))
        sigma_p = log_p.exp()
        if feature is None:
            mu = logvar = None
            eps = eps.reshape(len(h), self.channels, self.side, self.side).float()
            z = mu_p + sigma_p * eps
        else:
            mu_q, log_q = (_soft_clamp(t) for t in
                           self.posterior(torch.cat((h, feature), 1)).float().chunk(2, 1))
            mu = (mu_q - mu_p) / sigma_p
            logvar = 2.0 * (log_q - log_p)
            eps = mu if noise is None else mu + noise.reshape(mu.shape) * torch.exp(0.5 * logvar)
            z = mu_p + sigma_p * eps
        h = self.cell(h + self.project(z.to(h.dtype)))
        flat = (lambda t: None if t is None else t.flatten(1))
        return h, flat(eps), flat(mu), flat(logvar)


class HVAE(LatentVAE):
    """Bottom-up encoder, top-down path with ``GROUPS`` latent groups; see the module."""

    def __init__(self, cfg):
        super().__init__(cfg)
        ch = resnet_widths(cfg)
        layout = iter(latent_layout(cfg))
        self.encoder = nn.Sequential(*encoder_stages(ch))
        rev = ch[::-1]
        top = cfg.image_size >> len(ch)
        self.start = nn.Parameter(torch.zeros(1, rev[0], top, top))
        # One entry per resolution, coarsest first: its latent groups, or a residual block.
        self.stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level, width in enumerate(rev):
            if level:
                self.ups.append(Block(f"resize x2, conv 3x3, {width}",
                                      *upsample(rev[level - 1], width)))
            if level < LEVELS:
                self.stages.append(nn.ModuleList(Group(width, *next(layout))
                                                 for _ in range(GROUPS[level])))
            else:
                self.stages.append(nn.ModuleList([Block(f"res block {width}", Residual(width))]))
        self.head = Block("GN, SiLU, resize x2, conv 3x3, 3",
                          nn.GroupNorm(min(8, ch[0]), ch[0]), nn.SiLU(), *upsample(ch[0], 3))

    def latent_levels(self) -> list[tuple[str, int]]:
        """(name, end offset) of each resolution's groups, top first (``4x4``, ``8x8``,
        ``16x16`` at 64 px)."""
        ends: dict[str, int] = {}
        end = 0
        for channels, side in latent_layout(self.cfg):
            end += channels * side * side
            ends[f"{side}x{side}"] = end
        return list(ends.items())

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's map at each latent resolution, coarsest first."""
        maps = []
        h = x
        for i, block in enumerate(self.encoder):
            h = block(h)
            if i % 2:  # after each residual block: one map per width
                maps.append(h)
        return maps[::-1][:LEVELS]

    def _top_down(self, n: int, features=None, noise=None, eps=None, rows=None):
        """(pixel means, eps, mu, logvar): the posterior's path with ``features`` (its
        mean where ``noise`` is None), else the prior's with the given ``eps``. ``rows``
        (a list) collects the architecture figure's rows on the way."""
        h = self.start.expand(n, -1, -1, -1)
        if rows is not None:
            rows.append(("decoder", "learned start", tuple(h.shape[1:])))
        parts: list[list[torch.Tensor]] = [[], [], []]
        offset = 0
        for level, stage in enumerate(self.stages):
            if level:
                h = self.ups[level - 1](h)
                if rows is not None:
                    rows.append(("decoder", self.ups[level - 1].label, tuple(h.shape[1:])))
            for cell in stage:
                if not isinstance(cell, Group):
                    h = cell(h)
                    if rows is not None:
                        rows.append(("decoder", cell.label, tuple(h.shape[1:])))
                    continue
                part = slice(offset, offset + cell.size)
                if features is None:
                    h, e, mu, logvar = cell(h, eps=eps[:, part])
                else:
                    h, e, mu, logvar = cell(h, features[level],
                                            None if noise is None else noise[:, part])
                for collected, value in zip(parts, (e, mu, logvar)):
                    collected.append(value)
                offset += cell.size
                if rows is not None:
                    rows.append(("latent", cell.label, (cell.channels, cell.side, cell.side)))
                    rows.append(("decoder", f"z -> 1x1 conv, res block {h.shape[1]}",
                                 tuple(h.shape[1:])))
        mean = torch.sigmoid(self.head(h))
        if rows is not None:
            rows.append(("decoder", self.head.label, tuple(mean.shape[1:])))
            rows.append(("output", "sigmoid", tuple(mean.shape[1:])))
        if features is None:
            return mean, None, None, None
        return (mean, *(torch.cat(collected, 1) for collected in parts))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior along the path where every group takes its mean."""
        _, _, mu, logvar = self._top_down(len(x), self._features(x))
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._top_down(len(z), eps=z)[0]

    def posterior(self, x: torch.Tensor, noise: torch.Tensor):
        """(pixel means, eps, mu, logvar) for one posterior draw per row of ``noise``
        (B, D), or m draws per image for ``noise`` of shape (m, B, D): eps, mu and logvar
        then have that shape, and the means are (m * B, 3, H, W)."""
        features = self._features(x)
        if noise.dim() == 3:
            features = [f.repeat(len(noise), 1, 1, 1) for f in features]
        mean, eps, mu, logvar = self._top_down(len(features[0]), features, noise.flatten(0, -2))
        return mean, eps.view_as(noise), mu.view_as(noise), logvar.view_as(noise)

    def forward(self, x: torch.Tensor):
        noise = torch.randn(len(x), self.cfg.latent_dim, device=x.device)
        mean, _, mu, logvar = self.posterior(x, noise)
        return mean, mu, logvar

    @torch.no_grad()
    def describe_rows(self) -> list[tuple[str, str, tuple[int, ...]]]:
        rows, h = self.encoder_rows()
        self._top_down(1, eps=torch.zeros(1, self.cfg.latent_dim, device=h.device), rows=rows)
        return rows
