"""model.arch: hvae: the hierarchical KL, the prior sampler per level, the temperature,
the bounds, and training that stays seeded and resumable."""

import math
import re

import numpy as np
import pytest
import torch

from toonvae import metrics
from toonvae.archs import ModelConfig, build
from toonvae.archs.hvae import HVAE, LEVELS, latent_layout
from toonvae.checkpoint import Checkpointer
from toonvae.errors import ToonvaeError
from toonvae.model import describe, load_model
from toonvae.train import TrainConfig, train

# 32 px, four widths: latent groups of 2x2, 4x4 and 8x8, so 84 positions; 2 channels each.
TINY = ModelConfig("hvae", 32, 168, channels=(8, 8, 16, 16))


def randomised(cfg=TINY, seed=0) -> HVAE:
    """A tiny hvae with every weight random: prior and posterior no longer start equal."""
    torch.manual_seed(seed)
    model = build(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3 / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
        for stage in model.stages[:LEVELS]:
            for group in stage:  # scales well away from 1: e^-1 to e^1
                group.prior.bias.uniform_(-1, 1)
                group.posterior[-1].bias.uniform_(-1, 1)
    return model.eval()


def test_latent_dim_is_the_total_and_others_are_refused_in_one_line():
    assert latent_layout(TINY) == [(2, 2), (2, 4), (2, 8)]
    assert latent_layout(ModelConfig("hvae", 64, 1344)) == [(4, 4), (4, 8), (4, 16)]
    with pytest.raises(ToonvaeError) as err:
        build(ModelConfig("hvae", 64, 128))
    assert str(err.value) == (
        "latent_dim: 128 does not fit model.arch hvae at 64 px: its latent is channels x 336 "
        "positions (maps of 1 x 4x4, 1 x 8x8, 1 x 16x16), so latent_dim must be a multiple of "
        "336; the smallest is 336")


def test_shapes_and_the_architecture_rows():
    model = build(TINY)
    x = torch.rand(3, 3, 32, 32)
    mean, mu, logvar = model(x)
    assert mean.shape == x.shape and mu.shape == logvar.shape == (3, 168)
    # Every group starts at N(0, I) for prior and posterior: no KL at initialisation.
    assert mu.abs().max() == 0 and logvar.abs().max() == 0
    rows = describe(model)
    assert rows[0][2] == (3, 32, 32) and rows[-1][2] == (3, 32, 32)
    assert [shape for part, _, shape in rows if part == "latent"] == [(2, 2, 2), (2, 4, 4),
                                                                      (2, 8, 8)]
    assert not any("tconv" in label for _, label, _ in rows)  # resize-then-conv upsampling


def test_the_architecture_figure_draws_the_groups(tmp_path):
    from PIL import Image

    from toonvae.figures import architecture

    architecture(build(TINY), tmp_path / "vae.png")
    image = np.asarray(Image.open(tmp_path / "vae.png"))
    assert image.shape[1] > 1000 and image.std() > 10


def test_the_prior_sampler_draws_every_level():
    model = randomised()
    z = model.sample_latents(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, 168)
    base = model.decode(z)
    assert base.shape == (5, 3, 32, 32)
    offset = 0
    for channels, side in latent_layout(TINY):  # each level's noise reaches the image
        size = channels * side * side
        moved = z.clone()
        moved[:, offset:offset + size] += 1.0
        assert (model.decode(moved) - base).abs().max() > 1e-4, side
        offset += size
    assert offset == 168


def test_temperature_scales_the_spread_of_prior_samples():
    model = randomised()
    spread = []
    for t in (0.0, 0.5, 1.0):
        samples = model.sample(64, torch.Generator().manual_seed(1), temperature=t)
        spread.append(float(samples.std(0).mean()))
    assert spread[0] < 1e-6  # t = 0: every sample is the prior's mean path
    assert spread[0] < spread[1] < spread[2]


@pytest.mark.slow  # over 5 s: 4,000 draws through the path twice
def test_hierarchical_kl_matches_a_monte_carlo_estimate():
    """The KL the loss uses (each group's Gaussian KL in eps, given the groups drawn above)
    against log q(z|x) - log p(z) of the same draws, computed here in z-space by walking
    the top-down path with torch.distributions; that walk must reach the model's image."""
    model = randomised()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    n = 4000
    noise = torch.randn(n, 168, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        image, eps, mu, logvar = model.posterior(x.expand(n, -1, -1, -1), noise)
        analytic = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1)
        features = model._features(x.expand(n, -1, -1, -1))
        h = model.start.expand(n, -1, -1, -1)
        log_ratio = torch.zeros(n)
        offset = 0
        groups = [(level, g) for level, stage in enumerate(model.stages[:LEVELS]) for g in stage]
        for i, (level, group) in enumerate(groups):
            if level and groups[i - 1][0] != level:
                h = model.ups[level - 1](h)
            mu_p, log_p = (5 * torch.tanh(t / 5) for t in group.prior(h).chunk(2, 1))
            mu_q, log_q = (5 * torch.tanh(t / 5) for t in
                           group.posterior(torch.cat((h, features[level]), 1)).chunk(2, 1))
            p = torch.distributions.Normal(mu_p, log_p.exp())
            q = torch.distributions.Normal(mu_q, log_q.exp())
            e = eps[:, offset:offset + group.size].reshape(mu_p.shape)
            z = mu_p + p.scale * e
            log_ratio += (q.log_prob(z) - p.log_prob(z)).flatten(1).sum(1)
            h = group.cell(h + group.project(z))
            offset += group.size
        for level in range(LEVELS, len(model.stages)):  # the path on to the image
            h = model.stages[level][0](model.ups[level - 1](h))
        assert torch.allclose(torch.sigmoid(model.head(h)), image, atol=1e-5)
    mc, err = float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n))
    assert float(analytic.mean()) > 1.0  # a KL worth measuring
    assert abs(float(analytic.mean()) - mc) < 4 * err + 1e-3, (float(analytic.mean()), mc, err)
    # The per-draw analytic KL depends on the path: groups below the top see the draw above.
    assert float(analytic.std()) > 1e-3


def test_iwae_is_below_the_elbo(prepared):
    from toonvae.data import PreparedData

    model = randomised()
    test = PreparedData(prepared).split("train")[:24]
    elbo = metrics.reconstruction_metrics(model, test, 64, seed=0)["elbo_bpd"]
    bounds = [metrics.iwae_bpd(model, test, k, 256, seed=0) for k in (1, 16)]
    assert abs(bounds[0] - elbo) < 0.01 * elbo  # k = 1 is the ELBO
    assert bounds[1] < bounds[0] and bounds[1] < elbo


CFG = TrainConfig(epochs=2, batch_size=16, lr=None, device="cpu", threads=1, seed=0,
                  warmup_steps=2, checkpoint_every=2, gmm_components=2)


def test_training_is_seeded_and_a_killed_run_resumes_to_the_same_weights(prepared, tmp_path,
                                                                          monkeypatch):
    train(prepared, tmp_path / "a" / "model.pt", tmp_path / "a" / "curves", TINY, CFG)
    train(prepared, tmp_path / "b" / "model.pt", tmp_path / "b" / "curves", TINY, CFG)
    a, _ = load_model(tmp_path / "a")
    b, _ = load_model(tmp_path / "b")
    for (key, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), key
    assert a.stages[0][0].posterior[-1].weight.abs().sum() > 0  # trained away from N(0, I)

    saves, original = [], Checkpointer.save

    def killed_after_three(self, *args, **kwargs):
        original(self, *args, **kwargs)
        saves.append(1)
        if len(saves) == 3:  # mid-way through the first epoch's checkpoints
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", killed_after_three)
    ckpt = tmp_path / "c" / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        train(prepared, tmp_path / "c" / "model.pt", tmp_path / "c" / "curves", TINY, CFG, ckpt)
    assert ckpt.is_file()
    monkeypatch.setattr(Checkpointer, "save", original)
    train(prepared, tmp_path / "c" / "model.pt", tmp_path / "c" / "curves", TINY, CFG, ckpt)
    c, _ = load_model(tmp_path / "c")
    for (key, wa), wc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(wa, wc), key
    assert np.array_equal(a.gmm["means"].numpy(), c.gmm["means"].numpy())
    assert c.sample(4, torch.Generator().manual_seed(0)).shape == (4, 3, 32, 32)


@pytest.mark.slow  # the benchmark script (its step timing on the tiny pipeline's data)
def test_the_architecture_benchmark_plans_epochs_and_prints_tables(tiny_pipeline):
    """benchmarks/arch_bench.py's smoke test: --plan times each arch's training step (the
    train stage's own, toonvae.train.train_step) and gives it epochs; --table renders rows."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    from toonvae.tables import brief_table, table

    bench = [sys.executable, "-m", "benchmarks.arch_bench", "--repo", str(tiny_pipeline[0]),
             "--datasets", "cartoon", "--hvae-latent-dim", "84"]
    plan = subprocess.run(bench + ["--plan", "--archs", "resnet,hvae+batch_size=4,hvae+epochs=5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert re.search(r"cartoon resnet: \d+ epochs \(a training image costs 1\.000x",
                     plan.stdout), plan.stdout
    assert re.search(r"cartoon hvae\+batch_size=4: \d+ epochs \(a training image costs "
                     r"\d+\.\d{3}x the first's\)", plan.stdout), plan.stdout
    assert "cartoon hvae+epochs=5: 5 epochs (as given)" in plan.stdout and "| " not in plan.stdout
    rows = ROOT / "experiments" / "upsample.json"
    for extra, render in (([], table), (["--brief"], brief_table)):
        shown = subprocess.run(bench + ["--table", str(rows), *extra], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
        assert render(json.loads(rows.read_text())) in shown


def test_the_prior_gap_runs_from_the_prior_to_the_reconstructions(prepared):
    from toonvae.data import PreparedData, to_float
    from toonvae.evaluation import sample_quality
    from toonvae.params import EvaluateParams
    from toonvae.swd import SlicedWasserstein
    from toonvae.prior_gaps import prior_gaps

    model, data, cpu = randomised(), PreparedData(prepared), torch.device("cpu")
    cfg = EvaluateParams(batch_size=4, fid_weights=None)
    gaps = prior_gaps(model, data, cfg, 0, cpu)
    assert list(gaps) == ["none", "2x2", "2x2, 4x4", "all"]
    test, train_split = data.split("test"), data.split("train")
    # none: the evaluate stage's own swd_prior, the same draws and test images
    assert gaps["none"] == sample_quality(model, test, train_split, cfg, "prior", 0,
                                          cpu)["swd_prior"]
    # all: the floor's train images (the evaluate stage's draw of them), reconstructed
    n = len(test)
    floor = np.sort(np.random.default_rng(0).choice(len(train_split), n, replace=False))
    to_test = SlicedWasserstein(to_float(test), 0, cpu)
    with torch.no_grad():
        codes = model.encode(to_float(train_split[floor]))[0]
        assert gaps["all"] == pytest.approx(to_test(model.decode(codes)), rel=1e-4)
        # 2x2: the top group's 2 x 2x2 = 8 dims from the posterior, the rest the prior's
        z = model.sample_latents(n, torch.Generator().manual_seed(0))
        z[:, :8] = codes[:, :8]
        assert gaps["2x2"] == pytest.approx(to_test(model.decode(z)), rel=1e-4)
    assert len(set(gaps.values())) == 4  # every level moves the decodes
