"""``resnet``: residual blocks with GroupNorm, strided convs, one stride-2 stage per width
(``resnet_widths``: four up to 112 px, more for larger images), mirrored by the decoder."""

from __future__ import annotations

from torch import nn

from toonvae.archs.blocks import Block, Flatten, Residual, Unflatten


def resnet_widths(cfg) -> tuple[int, ...]:
    """One width per stride-2 stage. ``model.channels`` gives four; while the feature map
    after them would still be 8 px or more (and even), another stage of the first width
    goes in front, at full resolution. So 64 px keeps four stages down to 4x4, 128 px gets
    five and 256 px six, each ending at 4x4 with the same tail as at 64 px; sizes below
    128 px are unchanged (their last map, 1-7 px, is what it always was)."""
    widths = list(cfg.channels)
    while (cfg.image_size >> len(widths)) >= 8 and (cfg.image_size >> len(widths)) % 2 == 0:
        widths.insert(0, widths[0])
    return tuple(widths)


def encoder_stages(ch: tuple[int, ...]) -> list[Block]:
    """A stride-2 conv and a residual block per width: the bottom-up path (hvae's too)."""
    stages, c_in = [], 3
    for c in ch:
        stages.append(Block(f"conv 4x4/2, {c}", nn.Conv2d(c_in, c, 4, stride=2, padding=1)))
        stages.append(Block(f"res block {c}", Residual(c)))
        c_in = c
    return stages


def resnet_networks(cfg):
    """(encoder, decoder, features before the latent) for a ``ModelConfig``."""
    ch = resnet_widths(cfg)
    s = cfg.image_size >> len(ch)
    enc = encoder_stages(ch)
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
