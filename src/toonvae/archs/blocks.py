"""The building blocks the architectures share. Every block carries a ``label`` so the
architecture figure is drawn from the model itself (``toonvae.model.describe``)."""

from __future__ import annotations

from torch import nn


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


def upsample(c_in: int, c_out: int) -> list[nn.Module]:
    """x2 nearest-neighbour resize, then a 3x3 conv: every output pixel sees the same
    kernel taps, so there is no checkerboard (Odena et al. 2016), unlike a stride-2
    transposed conv whose kernel overlaps unevenly."""
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]
