"""``resnet``: residual blocks with GroupNorm, strided convs, one stride-2 stage per width
(``resnet_widths``: four up to 112 px, more for larger images), mirrored by the decoder."""

from __future__ import annotations

from torch import nn

from toonvae.archs.base import FlatVAE
from toonvae.archs.blocks import Block, Flatten, Residual, Unflatten, upsample


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
    inner = "tconv" if cfg.upsample == "resize-rgb" else cfg.upsample
    for c_in, c in zip(rev, rev[1:]):
        dec.append(Block(f"res block {c_in}", Residual(c_in)))
        label, layers = upsampler(inner, c_in, c)
        dec.append(Block(label, *layers))
    dec.append(Block(f"res block {ch[0]}", Residual(ch[0])))
    label, layers = upsampler("tconv" if cfg.upsample == "tconv" else "resize", ch[0], 3)
    dec.append(Block(f"GN, SiLU, {label}", nn.GroupNorm(min(8, ch[0]), ch[0]), nn.SiLU(), *layers))
    return nn.Sequential(*enc), nn.Sequential(*dec), feat


def upsampler(kind: str, c_in: int, c_out: int) -> tuple[str, list[nn.Module]]:
    """(label, layers) of a x2 upsampling: ``resize`` (nearest, then a 3x3 conv: no
    checkerboard) or ``tconv`` (a 4x4 stride-2 transposed conv, the decoder of models
    trained before ``model.upsample`` existed). ``model.upsample: resize-rgb`` resizes
    only in the last one, which writes the RGB image."""
    if kind == "tconv":
        return f"tconv 4x4/2, {c_out}", [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
    return f"resize x2, conv 3x3, {c_out}", upsample(c_in, c_out)


class ResnetVAE(FlatVAE):
    """The flat latent (``FlatVAE``) on ``resnet_networks``."""
    networks = staticmethod(resnet_networks)
