"""How far a model's prior is from its own posterior, level by level, in swd
(``benchmarks/arch_bench.py --prior-gaps``; experiments/hvae-gaps.json): decodes whose top latent levels are the posterior means of
train images and whose lower levels are the prior's draws. Where one level's prior misses the
codes its posterior gives, taking that level from the posterior closes that part of the gap.
"""

from __future__ import annotations

import torch

from toonvae.data import PreparedData, to_float
from toonvae.evaluation import SampleScores, floor_rows
from toonvae.flow import fit_flow
from toonvae.metrics import decode_in_batches
from toonvae.sampler import posterior_draws, posterior_means
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


def learned_prior_swd(model, data: PreparedData, cfg, seed: int, device, depths: list[int],
                      draws: int = 4, steps: int = 3000) -> dict[str, dict[str, float]]:
    """For each depth k (up to the model's number of levels): a flow (toonvae.flow) fitted
    post hoc to ``draws`` posterior draws per train image of the top k latent levels, early
    stopped on the validation images' draws, and the scores of samples whose top k levels
    come from it and the rest from the prior, scored as the evaluate stage scores the prior's
    samples (``SampleScores``: swd and the layout metrics; the same prior draws below, test
    images and seed). Beside them, the flow's and N(0, I)'s NLL of the validation images'
    draws, in nats per dimension, and the step the fit stopped at."""
    test, train_split = data.split("test"), data.split("train")
    n = min(len(test), len(train_split), cfg.swd_images)
    score = SampleScores(to_float(test[:n]), seed, cfg.batch_size, device)
    levels = model.latent_levels()
    depths = sorted({min(k, len(levels)) for k in depths})
    deepest = levels[max(depths) - 1][1]  # one pass of draws, sliced for each depth
    fit_all, held_all = (posterior_draws(model, split, deepest, draws, seed + i, cfg.batch_size,
                                         device)
                         for i, split in enumerate((train_split, data.split("val"))))
    out = {}
    for k in depths:
        end = levels[k - 1][1]
        flow, nll = fit_flow(fit_all[:, :end], held_all[:, :end], seed, device, steps=steps)
        z = model.sample_latents(n, torch.Generator().manual_seed(seed))
        z[:, :end] = flow.sample(n, torch.Generator().manual_seed(seed + 1))
        name = ", ".join(lv for lv, _ in levels[:k])
        out[name] = {**score(decode_in_batches(model, z, cfg.batch_size, device)), **nll}
    return out
