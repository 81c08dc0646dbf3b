"""The training recipe: learning-rate schedule, KL warm-up, free bits, weight average."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from toonvae import losses
from toonvae.archs import ModelConfig, build
from toonvae.model import load_model
from toonvae.prepare import prepare
from toonvae.sources.synthetic import generate
from toonvae.train import Pass, Recipe, TrainConfig, TrainState, make_ema, train, train_epoch

CFG = TrainConfig(epochs=4, batch_size=8, lr=None, beta=2.0, device="cpu", threads=1, seed=0)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    r = Recipe(replace(CFG, warmup_steps=10, schedule="cosine"), lr=1.0, steps_per_epoch=25)
    lrs = [r.lr_at(s) for s in range(r.total)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0  # linear warm-up over 10 steps
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])), "not monotone after warm-up"
    assert math.isclose(lrs[10 + (r.total - 10) // 2], 0.5, abs_tol=0.02)
    assert lrs[-1] < 0.001
    short = Recipe(replace(CFG, warmup_steps=100, epochs=2), lr=1.0, steps_per_epoch=8)
    assert [short.lr_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # a quarter of 16 steps
    const = Recipe(replace(CFG, schedule="constant", warmup_steps=0), lr=0.3, steps_per_epoch=25)
    assert {const.lr_at(s) for s in range(100)} == {0.3}


def test_kl_warmup_ramps_beta_over_the_given_epochs():
    r = Recipe(replace(CFG, kl_warmup_epochs=2.0), lr=1.0, steps_per_epoch=10)
    assert r.beta_at(0) == 2.0 * 1 / 20 and r.beta_at(9) == 1.0 and r.beta_at(19) == 2.0
    assert r.beta_at(500) == 2.0
    assert Recipe(CFG, lr=1.0, steps_per_epoch=10).beta_at(0) == 2.0  # no warm-up


def test_free_bits_stop_the_kl_gradient_below_the_floor_only():
    x = torch.rand(4, 3, 8, 8)
    mean = torch.rand(4, 3, 8, 8)
    mu = torch.zeros(4, 3)
    mu[:, 0] = 2.0  # dimension 0 carries 2 nats; dimensions 1, 2 carry none
    mu.requires_grad_(True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    loss, recon, kl = losses.training_loss("gaussian", x, mean, mu, logvar, 1.0, free_bits=0.5)
    assert math.isclose(kl.item(), 2.0, rel_tol=1e-6)  # the reported KL is the true one
    assert math.isclose(loss.item(), recon.item() + 2.0 + 2 * 0.5, rel_tol=1e-6)
    loss.backward()
    assert mu.grad[:, 0].abs().min() > 0 and mu.grad[:, 1:].abs().max() == 0
    plain = losses.training_loss("gaussian", x, mean, mu.detach(), logvar.detach(), 1.0)[0]
    assert math.isclose(plain.item(), recon.item() + 2.0, rel_tol=1e-6)


def test_ema_starts_from_the_weights_and_averages_with_a_rising_decay():
    model = build(ModelConfig("resnet", 16, 4, (8, 8, 8, 8)))
    ema = make_ema(model, 0.999)
    w = next(model.parameters())
    ema.update_parameters(model)  # the first update copies
    assert torch.equal(next(ema.module.parameters()), w)
    with torch.no_grad():
        w.add_(1.0)
    ema.update_parameters(model)  # n=1: decay min(0.999, 2/11)
    d = 2 / 11
    assert torch.allclose(next(ema.module.parameters()), w - d, atol=1e-6)


@pytest.mark.slow  # over 5 s
def test_training_saves_the_weight_average_and_logs_the_negative_elbo(tmp_path):
    generate("cartoon", tmp_path / "raw", 40, seed=0, size=64, workers=1)
    data = tmp_path / "prepared"
    prepare(tmp_path / "raw", data, image_size=16, crop="center", box=None,
            val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)
    mc = ModelConfig("resnet", 16, 4, (8, 8, 8, 8))
    base = replace(CFG, epochs=2, beta=1.0, schedule="cosine", warmup_steps=2)
    runs = {}
    for name, cfg in {"ema": replace(base, ema=0.9), "raw": base,
                      "fb": replace(base, free_bits=1.0)}.items():
        out = tmp_path / name
        result = train(data, out / "model.pt", out / "curves", mc, cfg)
        runs[name] = (load_model(out / "model.pt")[0], result["history"])
    ema_model, raw_model = runs["ema"][0], runs["raw"][0]
    # Same seed, same batches: the raw weights are identical, so the saved ones differ only
    # by the average.
    diff = [(a - b).abs().max().item() for a, b in zip(ema_model.parameters(), raw_model.parameters())]
    assert max(diff) > 1e-4
    for history in (runs["raw"][1], runs["fb"][1]):
        tr = history[-1]["train"]
        assert math.isclose(tr["loss"], tr["recon"] + tr["kl"], abs_tol=0.02)
    # Free bits change training, not what is logged as the loss.
    assert runs["fb"][1][-1]["train"] != runs["raw"][1][-1]["train"]


def test_train_epoch_follows_the_recipe_per_batch():
    model = build(ModelConfig("resnet", 16, 4, (8, 8, 8, 8)))
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    cfg = replace(CFG, epochs=200, warmup_steps=100)  # 1000 steps: the warm-up is not capped
    recipe = Recipe(cfg, lr=0.01, steps_per_epoch=5)
    seen = []
    state = TrainState(model, opt, recipe, "gaussian")
    train_epoch(state, images, Pass(cfg.batch_size, "cpu"), np.random.default_rng(0), 1,
                after_step=lambda step, *_: seen.append(opt.param_groups[0]["lr"]))
    # epoch 1, batches 0..4 are global steps 5..9 of the warm-up
    assert seen == [0.01 * (s + 1) / 100 for s in range(5, 10)]


@pytest.mark.slow  # a benchmark script end to end
def test_the_recipe_benchmark_prints_ratios_to_its_baseline(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    generate("anime", tmp_path / "raw", 120, seed=0, size=48, workers=1)
    prepare(tmp_path / "raw", tmp_path / "prepared", image_size=32, crop="center", box=None,
            val_fraction=0.1, test_fraction=0.2, min_side=16, seed=0, workers=1)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "benchmarks.recipe_bench", "--data",
                          str(tmp_path / "prepared"),
                          "--epochs", "2", "--variants", "adam-constant,ema-0.99",
                          "--image-size", "32", "--latent-dim", "4", "--channels", "8,8,8,8",
                          "--swd-images", "8"], cwd=root, capture_output=True, text=True,
                         check=True)
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| variant | mse |") and len(rows) == 3
    assert rows[1].startswith("| adam-constant |") and rows[1].endswith("| 1.000 | 1.000 |")
    assert rows[2].startswith("| ema-0.99 |") and not rows[2].endswith("| 1.000 | 1.000 |")
