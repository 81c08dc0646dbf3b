"""The fast paths of training: the on-disk reader, and the GPU path (device-resident data,
deferred loss read-back, bf16 autocast, channels_last) run on the CPU, since CI has no GPU."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from toonvae import losses
from toonvae.archs import ModelConfig, build
from toonvae.data import ImageRows, PreparedData, batches
from toonvae.errors import ToonvaeError
from toonvae.runtime import autocast, resolve_precision, set_determinism
from toonvae.train import (Pass, Recipe, TrainConfig, TrainState, stage_on_device, train_epoch,
                           validate)

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig("resnet", 32, 4, channels=(8, 8, 16, 16))
CFG = TrainConfig(epochs=1, batch_size=8, lr=None, beta=1.0, device="cpu", threads=1, seed=0)


def test_image_rows_index_like_the_array(prepared):
    rows = PreparedData(prepared).split("train")
    whole = np.load(prepared / "train.npy")
    assert rows.shape == whole.shape and len(rows) == len(whole)
    rng = np.random.default_rng(0)
    for key in (0, 5, -1, slice(3, 20), slice(None), slice(0, 40, 7), slice(30, 10),
                np.sort(rng.permutation(len(whole))[:9]), rng.permutation(len(whole))[:9],
                np.array([3, 3, 1, -2]), np.array([], dtype=int), [4, 5, 6]):
        got = rows[key]
        assert np.array_equal(got, whole[key]), key
        assert got.flags.writeable and got.flags.c_contiguous
    assert np.array_equal(np.asarray(rows), whole)
    for bad in (len(whole), -len(whole) - 1, np.array([0, len(whole)])):
        with pytest.raises(IndexError):
            rows[bad]


def test_image_rows_refuse_a_truncated_or_foreign_file(tmp_path, prepared):
    cut = tmp_path / "train.npy"
    cut.write_bytes((prepared / "train.npy").read_bytes()[:-5000])
    with pytest.raises(ToonvaeError, match=r"train.npy: not a prepared image array .*; rerun "
                                           r"the preprocess stage"):
        ImageRows(cut)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10, np.uint8))
    with pytest.raises(ToonvaeError, match="not a prepared image array"):
        ImageRows(flat)
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    with pytest.raises(ToonvaeError, match=r"text.npy: unreadable"):
        ImageRows(text)


def test_batches_of_a_tensor_match_batches_read_from_disk(prepared):
    rows = PreparedData(prepared).split("train")
    staged = stage_on_device(rows, torch.device("cpu"), budget_bytes=1 << 30)
    assert isinstance(staged, torch.Tensor) and staged.dtype == torch.uint8
    for a, b in zip(batches(rows, 8, shuffle=True, rng=np.random.default_rng(3)),
                    batches(staged, 8, shuffle=True, rng=np.random.default_rng(3))):
        assert torch.equal(torch.from_numpy(a), b)
    assert stage_on_device(rows, torch.device("cpu"), budget_bytes=100) is rows  # too big


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_share_each_batch_and_see_every_image_once(prepared, processes):
    rows = PreparedData(prepared).split("train")  # 48 images
    for shuffle, drop_last, size in ((True, True, 12), (False, False, 9)):
        def run(rank):
            return list(batches(np.arange(len(rows)), size, shuffle=shuffle, drop_last=drop_last,
                                rng=np.random.default_rng(7), shard=(rank, processes)))
        whole = list(batches(np.arange(len(rows)), size, shuffle=shuffle, drop_last=drop_last,
                             rng=np.random.default_rng(7)))
        shards = [run(r) for r in range(processes)]
        assert all(len(s) == len(whole) for s in shards), "every process takes every step"
        for step, batch in enumerate(whole):
            parts = [s[step] for s in shards]
            assert sorted(np.concatenate(parts)) == sorted(batch), (shuffle, step)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _trained(data, sync_every=None, precision="fp32", channels_last=False):
    set_determinism(0, 1)
    model = build(TINY)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if n != "log_scale"], 2e-3)
    state = TrainState(model, opt, Recipe(CFG, 2e-3, 6), "gaussian", precision=precision,
                       channels_last=channels_last)
    how = Pass(CFG.batch_size, "cpu", sync_every=sync_every, channels_last=channels_last)
    result = train_epoch(state, data, how, np.random.default_rng(0), 0)
    return result, model.state_dict()


def test_device_data_and_deferred_read_back_train_the_same_weights(prepared):
    rows = PreparedData(prepared).split("train")
    staged = stage_on_device(rows, torch.device("cpu"), budget_bytes=1 << 30)
    base, weights = _trained(rows)
    for data, sync_every in ((staged, 1), (rows, 4), (staged, 32)):
        result, other = _trained(data, sync_every=sync_every)
        assert result == base
        assert all(torch.equal(weights[k], other[k]) for k in weights)


def test_deferred_read_back_still_names_the_first_bad_batch(prepared):
    rows = PreparedData(prepared).split("train")
    model = build(TINY)
    with torch.no_grad():
        model.to_mu.weight.fill_(float("inf"))
    with pytest.raises(ToonvaeError, match=r"^the validation loss became nan at epoch 1, "
                                           r"batch 1 of 6"):
        validate(model, rows, "gaussian", Pass(CFG.batch_size, "cpu", sync_every=4))


def test_bf16_autocast_keeps_kl_and_likelihood_in_fp32(prepared):
    rows = PreparedData(prepared).split("train")
    x = torch.from_numpy(rows[:8]).float() / 255
    torch.manual_seed(0)
    model = build(TINY)
    with autocast("bf16", torch.device("cpu")):
        mean, mu, logvar = model(x)
    assert mu.dtype == torch.bfloat16  # the network did run in bf16
    assert losses.kl_normal(mu, logvar).dtype == torch.float32
    loss, recon, kl = losses.training_loss("gaussian", x, mean, mu, logvar, 1.0)
    assert loss.dtype == recon.dtype == kl.dtype == torch.float32
    torch.manual_seed(0)
    ref = losses.training_loss("gaussian", x, *model(x), 1.0)[0]
    assert abs(loss.item() - ref.item()) < 0.02 * abs(ref.item())
    result, _ = _trained(rows, precision="bf16", channels_last=True)
    assert np.isfinite(result["loss"])


def test_channels_last_computes_the_same_loss(prepared):
    rows = PreparedData(prepared).split("train")
    base, _ = _trained(rows)
    result, _ = _trained(rows, channels_last=True)
    assert result["loss"] == pytest.approx(base["loss"], rel=1e-4)


def test_precision_and_determinism_switches():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    set_determinism(0, deterministic=False)
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    set_determinism(0)
    assert not torch.backends.cudnn.benchmark and torch.are_deterministic_algorithms_enabled()


@pytest.mark.slow  # a benchmark script end to end
def test_the_gpu_benchmark_runs_its_code_on_the_cpu(tmp_path):
    """benchmarks/gpu_bench.py end to end at toy sizes: smoke train, epochs, report."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_bench", "--out", str(tmp_path),
                           "--device", "cpu", "--images", "32", "--smoke-images", "32",
                           "--smoke-epochs", "2", "--batches", "16", "--profile",
                           "--image-size", "16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best epoch over 32 images on cpu" in proc.stdout
    assert "data in device memory / host reads, batch 16" in proc.stdout
    report = (tmp_path / "gpu_bench.json").read_text()
    assert '"loss_decreased": true' in report and '"model_loads": true' in report
    assert json.loads(report)["image_size"] == 16
    blob = torch.load(tmp_path / "model.pt", weights_only=True)  # the smoke run's model
    assert blob["config"]["image_size"] == 16
    profile = json.loads(report)["profile"]
    assert profile["steps"] == 2 and profile["ops_per_step"] > 10
    assert "aten::" in (tmp_path / "profile.txt").read_text()


@pytest.mark.slow  # a benchmark script end to end
def test_the_train_benchmark_prints_its_ratios(tmp_path):
    """benchmarks/train_bench.py at toy sizes, so the script cannot rot unseen."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_bench", "--images", "32",
                           "--reps", "1", "--steps", "1", "--matmul-size", "256",
                           "--image-size", "32", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("ratio 1 (anime), our loop / compute limit: ",
                 "ratio 2 (cartoon, 256 px files), our loop / ImageFolder + DataLoader",
                 "ratio 3, seed train step FLOP/s / fp32 matmul FLOP/s: ",
                 "tried, compute limit / default: default 1.0, channels_last"):
        assert line in proc.stdout
    report = json.loads(out.read_text())
    # A quarter of the 0.3205 GFLOP the README gives at 64 px (the convs scale with pixels).
    assert report["image_size"] == 32
    assert report["resnet_gflop_per_image"] == pytest.approx(0.3205 / 4, rel=1e-3)
    assert 0 < report["anime"]["ratio_loop_vs_compute_limit"] < 10



@pytest.mark.parametrize("device, processes, want", [
    ("cpu", 1, 32), ("mps", 1, 32), ("cuda", 1, 512),
    ("cuda", 2, 1024),  # one GPU per process, each with the full per-device batch
    ("cpu", 2, 32), ("cpu", 3, 33),  # gloo processes share the CPU's batch evenly
])
def test_auto_batch_size_suits_each_device_type(device, processes, want):
    from toonvae.train import resolve_batch_size

    assert resolve_batch_size("auto", torch.device(device), processes) == want
    assert resolve_batch_size(48, torch.device(device), processes) == 48  # a number wins
    # hvae trains at 16 on a CPU (more steps in the same time), at the others' batch elsewhere
    hvae = resolve_batch_size("auto", torch.device(device), processes, "hvae")
    assert hvae == ({"cpu": 16 if processes == 1 else 16 + (-16) % processes}.get(device, want))
    assert resolve_batch_size(48, torch.device(device), processes, "hvae") == 48


def test_auto_batch_trains_at_the_cpu_batch_and_reports_where_the_time_went(prepared,
                                                                           tmp_path):
    from dataclasses import replace

    from toonvae.train import train

    result = train(prepared, tmp_path / "m.pt", tmp_path / "curves", TINY,
                   replace(CFG, batch_size="auto", epochs=2))
    assert result["batch_size"] == 32 and result["lr"] == pytest.approx(0.004)
    seconds = result["parts"].seconds
    assert set(seconds) == {"epochs", "validation", "logging", "log-scale fit",
                            "posterior means", "mixture fit", "save"}
    assert all(s >= 0 for s in seconds.values()) and seconds["epochs"] > 0
    total = sum(seconds.values()) + 1.0
    line = result["parts"].breakdown("epochs", total)
    outside = (total - seconds["epochs"]) / total
    assert line.startswith(f"{outside:.1%} outside epochs (epochs {seconds['epochs']:.1f}s, ")
    assert line.endswith(", other 1.0s)")


def test_log_scale_fit_and_mixture_use_capped_subsets(prepared, tmp_path, monkeypatch):
    """The work after the epochs does not grow with the data: a cap below the split
    changes the fitted scale's inputs and the mixture's, and a cap above it changes
    nothing (so the committed default runs keep their bytes)."""
    from toonvae import train as train_module
    from toonvae.sampler import subset

    assert subset(100, 100, 0) is None
    picked = subset(1000, 50, 0)
    assert len(picked) == 50 and np.all(np.diff(picked) > 0) and picked.max() < 1000
    assert np.array_equal(picked, subset(1000, 50, 0)) and not np.array_equal(picked,
                                                                              subset(1000, 50, 1))

    def run(name):
        out = tmp_path / name / "m.pt"
        train_module.train(prepared, out, tmp_path / name / "curves", TINY, CFG)
        return torch.load(out, weights_only=True)

    whole = run("whole")
    monkeypatch.setattr(train_module, "GMM_IMAGES", 10)
    capped = run("capped")
    assert torch.equal(whole["state_dict"]["encoder.0.0.weight"],
                       capped["state_dict"]["encoder.0.0.weight"])
    assert not torch.equal(whole["gmm"]["means"], capped["gmm"]["means"])
    monkeypatch.setattr(train_module, "GMM_IMAGES", 10_000)
    assert torch.equal(run("again")["gmm"]["means"], whole["gmm"]["means"])


def test_log_scale_grid_in_chunks_finds_the_minimum_of_a_loop_over_scales(prepared, tmp_path,
                                                                         monkeypatch):
    from toonvae import train as train_module
    from toonvae.archs.resnet import ResnetVAE
    from toonvae.data import to_float

    class NoisyCopy(ResnetVAE):  # reconstructions with a known error: the image plus noise
        def forward(self, x):
            return (x + 0.03 * torch.randn_like(x)).clamp(0, 1), None, None

    model = NoisyCopy(TINY)
    val = np.asarray(PreparedData(prepared).split("train"))[:32]  # two batches of 16

    def looped(images):  # one likelihood pass per scale, as the grid was first searched
        grid = torch.linspace(losses.LOG_SCALE_MIN, 0.0, 141)
        nll = torch.zeros(len(grid), 3)
        with torch.inference_mode():
            for xb in batches(images, 16):
                x = to_float(xb)
                mean = model(x)[0]
                for i, s in enumerate(grid):
                    nll[i] += losses.discretized_gaussian_nll(x, mean, s.view(1, 1, 1, 1)).sum(
                        (0, 2, 3))
        return grid[nll.argmin(0)].view(1, 3, 1, 1)

    fits = []
    for elements in (2**23, 5000):  # all 141 scales at once, and chunks of a few
        monkeypatch.setattr(train_module, "GRID_ELEMENTS", elements)
        torch.manual_seed(1)
        train_module.fit_log_scale(model, val, 16, "cpu")
        fits.append(model.log_scale.clone())
    torch.manual_seed(1)
    want = looped(val)
    assert torch.equal(fits[0], want) and torch.equal(fits[1], want)
    assert -4 < float(want.mean()) < -3  # about log(0.03): a real minimum inside the grid
    torch.manual_seed(1)
    train_module.fit_log_scale(model, val, 16, "cpu", max_images=8)
    torch.manual_seed(1)
    assert torch.equal(model.log_scale, looped(val[:8]))


def test_prefetched_batches_arrive_in_order_and_errors_reach_the_consumer(prepared):
    from toonvae.data import prefetched

    rows = PreparedData(prepared).split("train")
    want = list(batches(rows, 8, shuffle=True, rng=np.random.default_rng(2)))
    got = list(prefetched(batches(rows, 8, shuffle=True, rng=np.random.default_rng(2)), depth=2))
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))

    def broken():
        yield want[0]
        raise ToonvaeError("the file ended early")

    with pytest.raises(ToonvaeError, match="ended early"):
        list(prefetched(broken()))
    first = next(iter(prefetched(iter(want), depth=1)))  # a consumer that stops early
    assert np.array_equal(first, want[0])
