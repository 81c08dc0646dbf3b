"""How far a model's prior is from its own posterior, level by level, in swd
(``benchmarks/arch_bench.py --prior-gaps``; experiments/hvae-gaps.json): decodes whose top latent levels are the posterior means of
train images and whose lower levels are the prior's draws. Where one level's prior misses the
codes its posterior gives, taking that level from the posterior closes that part of the gap.
"""

from __future__ import annotations

import torch

from toonvae.data import PreparedData, to_float
from toonvae.evaluation import floor_rows
from toonvae.metrics import decode_in_batches
from toonvae.sampler import posterior_means
from toonvae.swd import SlicedWasserstein


def prior_gaps(model, data: PreparedData, cfg, seed: int, device) -> dict[str, float]:
    """{levels: swd} of decodes whose top latent levels are the posterior means of the
    floor's train images and whose lower levels are the prior's draws, scored as the evaluate
    stage scores ``swd_prior`` (the same draws, test images and seed): ``none`` is
    ``swd_prior``, then one more level from the posterior per entry, down to ``all`` (the
    floor's images reconstructed)."""
    test, train_split = data.split("test"), data.split("train")
    n = min(len(test), len(train_split), cfg.swd_images)
    to_test = SlicedWasserstein(to_float(test[:n]), seed, device)
    floor = floor_rows(len(train_split), n, seed)  # the floor's train images
    codes = torch.from_numpy(posterior_means(model, train_split, cfg.batch_size, device,
                                             index=floor))
    draws = model.sample_latents(n, torch.Generator().manual_seed(seed))
    out = {"none": to_test(decode_in_batches(model, draws, cfg.batch_size, device))}
    levels = model.latent_levels()
    for i, (_, end) in enumerate(levels):
        z = draws.clone()
        z[:, :end] = codes[:, :end].to(z)
        name = "all" if i == len(levels) - 1 else ", ".join(lv for lv, _ in levels[:i + 1])
        out[name] = to_test(decode_in_batches(model, z, cfg.batch_size, device))
    return out
