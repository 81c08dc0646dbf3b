"""How far a model's prior is from its own posterior, level by level, in swd
(``arch_bench.py --prior-gaps``): decodes whose top latent levels are the posterior means of
train images and whose lower levels are the prior's draws. Where one level's prior misses the
codes its posterior gives, taking that level from the posterior closes that part of the gap.
"""

from __future__ import annotations

import numpy as np
import torch

from toonvae.data import PreparedData, to_float
from toonvae.metrics import decode_in_batches
from toonvae.sampler import posterior_means
from toonvae.swd import SlicedWasserstein


def latent_levels(model) -> list[tuple[str, int]]:
    """(name, end offset) of each level of the latent, top first: hvae's maps (``4x4``,
    ``8x8``, ``16x16`` at 64 px, each group's eps in order), or one level for a flat latent."""
    if model.cfg.arch != "hvae":
        return [("all", model.cfg.latent_dim)]
    from toonvae.archs.hvae import latent_layout

    ends: dict[str, int] = {}
    end = 0
    for channels, side in latent_layout(model.cfg):
        end += channels * side * side
        ends[f"{side}x{side}"] = end
    return list(ends.items())


def prior_gaps(model, data: PreparedData, cfg, seed: int, device) -> dict[str, float]:
    """{levels: swd} of decodes whose top latent levels are the posterior means of the
    floor's train images and whose lower levels are the prior's draws, scored as the evaluate
    stage scores ``swd_prior`` (the same draws, test images and seed): ``none`` is
    ``swd_prior``, then one more level from the posterior per entry, down to ``all`` (the
    floor's images reconstructed)."""
    test, train_split = data.split("test"), data.split("train")
    n = min(len(test), len(train_split), cfg.swd_images)
    to_test = SlicedWasserstein(to_float(test[:n]), seed, device)
    # the floor's train images, drawn as toonvae.evaluation.sample_quality draws them
    floor = np.sort(np.random.default_rng(seed).choice(len(train_split), n, replace=False))
    codes = torch.from_numpy(posterior_means(model, train_split, cfg.batch_size, device,
                                             index=floor))
    draws = model.sample_latents(n, torch.Generator().manual_seed(seed))
    out = {"none": to_test(decode_in_batches(model, draws, cfg.batch_size, device))}
    levels = latent_levels(model)
    for i, (_, end) in enumerate(levels):
        z = draws.clone()
        z[:, :end] = codes[:, :end].to(z)
        name = "all" if i == len(levels) - 1 else ", ".join(lv for lv, _ in levels[:i + 1])
        out[name] = to_test(decode_in_batches(model, z, cfg.batch_size, device))
    return out
