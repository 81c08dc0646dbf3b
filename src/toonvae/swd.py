"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, ProGAN).

A sample-quality metric that needs no pretrained network. Each image set is turned into
a Laplacian pyramid (5-tap binomial filter, down to 16 px); at every level, 128 7x7 RGB
patches per image are cut at seeded random positions, each set's descriptors are
normalised per channel, and the Wasserstein-1 distance between the two descriptor clouds
is averaged over 4 x 512 random unit directions. Reported x1e3 and averaged over
levels, as in the paper.
Written by hand: no maintained library implements this metric.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PATCH = 7
PATCHES_PER_IMAGE = 128
DIRECTIONS = 512
REPEATS = 4
MIN_LEVEL = 16

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)
    k = k.expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, min_size: int = MIN_LEVEL) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down, then the low-pass residual at min_size."""
    levels = []
    while x.shape[-1] > min_size:
        down = _blur(x)[..., ::2, ::2]
        up = F.interpolate(down, scale_factor=2, mode="nearest")
        levels.append(x - _blur(up))
        x = down
    levels.append(x)
    return levels


def _patches(level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PATCHES_PER_IMAGE random 7x7 patches per image, flattened: (N * P, 3 * 49).

    The positions come from a CPU generator, so they are the same on every device."""
    n, c, h, w = level.shape
    ys = torch.randint(0, h - PATCH + 1, (n, PATCHES_PER_IMAGE), generator=generator)
    xs = torch.randint(0, w - PATCH + 1, (n, PATCHES_PER_IMAGE), generator=generator)
    offs = torch.arange(PATCH)
    rows = ((ys[..., None] + offs)[..., :, None]).to(level.device)  # n, P, 7, 1
    cols = ((xs[..., None] + offs)[..., None, :]).to(level.device)  # n, P, 1, 7
    img = torch.arange(n, device=level.device)[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[img, rows, cols]  # n, P, 7, 7, c
    return patches.permute(0, 1, 4, 2, 3).reshape(n * PATCHES_PER_IMAGE, c, PATCH, PATCH)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    desc = desc / desc.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-8)
    return desc.flatten(1)


def level_descriptors(images: torch.Tensor, seed: int,
                      device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Normalised patch descriptors of each pyramid level of float images in [0, 1],
    computed on ``device`` (default: where the images are)."""
    generator = torch.Generator().manual_seed(seed)
    pyramid = laplacian_pyramid(images.float().to(device or images.device))
    return [_normalise(_patches(level, generator)) for level in pyramid]


def _sorted_projections(desc: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Each direction's projections of the descriptors, sorted: (directions, N)."""
    proj = (desc @ dirs).T.contiguous()
    if proj.device.type == "cpu":  # numpy sorts rows an order of magnitude faster here
        return torch.from_numpy(np.sort(proj.numpy(), axis=1))
    return proj.sort(dim=1).values


class SlicedWasserstein:
    """SWD x1e3 to a fixed reference set; the reference's sorted projections are kept,
    so scoring several sample sets against the same test images costs one pass each.
    Everything runs in torch on ``device`` (default: the reference's); the random
    directions and patch positions come from seeded CPU generators, so every device
    scores the same images the same way."""

    def __init__(self, reference: torch.Tensor, seed: int = 0,
                 device: torch.device | str | None = None):
        self.n, self.seed = len(reference), seed
        self.device = torch.device(device or reference.device)
        rng = np.random.default_rng(seed + 2)
        self.dirs, self.ref = [], []
        for desc in level_descriptors(reference, seed, self.device):
            dirs = [rng.standard_normal((desc.shape[1], DIRECTIONS)).astype(np.float32)
                    for _ in range(REPEATS)]
            dirs = [torch.from_numpy(d / np.linalg.norm(d, axis=0, keepdims=True))
                    .to(self.device) for d in dirs]
            self.dirs.append(dirs)
            self.ref.append([_sorted_projections(desc, d) for d in dirs])

    def __call__(self, images: torch.Tensor) -> float:
        """Mean over levels of the mean over random directions of the 1-D W1 distance."""
        if len(images) < self.n:
            raise ValueError(f"swd needs {self.n} images, got {len(images)}")
        per_level = []
        for desc, dirs, refs in zip(level_descriptors(images[:self.n], self.seed, self.device),
                                    self.dirs, self.ref, strict=True):
            per_level.append(torch.stack([(_sorted_projections(desc, d) - r).abs().mean()
                                          for d, r in zip(dirs, refs, strict=True)]).mean())
        return 1e3 * float(torch.stack(per_level).double().mean())


def swd(images_a: torch.Tensor, images_b: torch.Tensor, seed: int = 0,
        device: torch.device | str | None = None) -> float:
    """SWD x1e3 between two sets of float images in [0, 1], cut to the same size.

    Both sets are cut at the same seeded patch positions (common random numbers: less
    noise in a difference), so a set against itself scores exactly zero.
    """
    n = min(len(images_a), len(images_b))
    return SlicedWasserstein(images_b[:n], seed, device)(images_a[:n])
