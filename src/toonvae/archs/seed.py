"""``seed``: the original notebook's network (plain conv stack, BatchNorm, dropout)."""

from __future__ import annotations

from torch import nn

from toonvae.archs.base import FlatVAE
from toonvae.archs.blocks import Block, Flatten, Unflatten

SEED_ENCODER = (128, 128, 64, 32)  # the notebook's widths
SEED_DECODER = (32, 64, 128, 128)


def seed_networks(cfg):
    """(encoder, decoder, features before the latent) for a ``ModelConfig``."""
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


class SeedVAE(FlatVAE):
    """The flat latent (``FlatVAE``) on the notebook's ``seed_networks``."""
    networks = staticmethod(seed_networks)
