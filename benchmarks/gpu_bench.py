"""GPU smoke run and epoch throughput, each figure against a baseline from the same run.

    python -m benchmarks.gpu_bench --out /tmp/gpu [--images 63632] [--batches 256 1024]

1. Smoke: draws ``--smoke-images`` synthetic cartoon faces, prepares them and runs the
   project's own ``train.train`` with ``train.device: auto``: on a GPU that is bf16
   autocast, channels_last and the whole split in device memory. Checks that the loss
   fell and that the model file loads. Reports the path it took.
2. Throughput: one epoch over ``--images`` images at 64 px (``--image-size``; 63,632 is the Kaggle anime
   set's size; the faces are the smoke set's, tiled) through ``train.run_epoch``, for
   each batch size and for bf16 and fp32, with the data in device memory; and, as the
   baseline, the same epoch fed from the split on disk (host reads + copies).
   Images/s, epoch seconds, and model FLOP utilisation against the card's bf16 dense
   peak (datasheet) and against a large bf16 matmul measured here. The goal is an
   epoch in under 3 s on one H100.
3. With ``--compile``: the same epoch with ``torch.compile`` (and its compile time).
4. With ``--profile``: ``torch.profiler`` over 20 optimizer steps at the first batch size
   through ``train.run_epoch``: the step's wall time against its summed device-kernel time,
   kernels launched per step, and host-device synchronisations per step (what a fixed cost
   per step is made of). On the CPU it reports the wall time and the ops per step.

Without a GPU it runs the same code on the CPU with what you give it (use small
``--images``); the tests do that, so the script cannot rot unseen.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from toonvae import archs, losses
from toonvae.archs import ModelConfig, build
from toonvae.data import ImageRows, PreparedData
from toonvae.model import load_model
from toonvae.optim import make_optimizer
from toonvae.prepare import prepare
from toonvae.progress import log
from toonvae.runtime import pick_device, set_determinism, use_channels_last
from toonvae.sources.synthetic import generate
from toonvae.train import (Pass, Recipe, TrainConfig, TrainState, stage_on_device, train,
                           train_epoch)

CONSTANT = TrainConfig(schedule="constant", warmup_steps=0)  # the lr of the arch throughout

# Dense bf16 tensor-core peaks from NVIDIA's datasheets, FLOP/s (no sparsity).
DATASHEET_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12,
                  "L4": 121e12, "A10": 125e12}


def datasheet_peak(name: str) -> float | None:
    for key, peak in DATASHEET_BF16.items():  # longest names first where they overlap
        if key in name:
            return peak
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device, dtype, n: int = 8192, repeat: int = 20) -> float:
    if device.type == "cpu":
        n, repeat = 1024, 3
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - start)


def flops_per_image(cfg: ModelConfig) -> float:
    model = build(cfg)
    x = torch.rand(8, 3, cfg.image_size, cfg.image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        mean, mu, logvar = model(x)
        losses.training_loss(archs.likelihood(cfg), x, mean, mu, logvar, 1.0)[0].backward()
    return counter.get_total_flops() / len(x)


def timed_epoch(cfg: ModelConfig, data, batch: int, precision: str, device,
                channels_last: bool, compile_model: bool = False) -> dict:
    """Seconds of the second of two epochs (the first warms kernels and allocator)."""
    torch.manual_seed(0)
    model = build(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for n, p in model.named_parameters() if n != "log_scale"]
    lr = archs.arch(cfg.arch).lr
    opt = make_optimizer("adam", params, lr, 0.0, device)
    state = TrainState(model, opt, Recipe(CONSTANT, lr, 1), archs.likelihood(cfg),
                       precision=precision, channels_last=channels_last)
    how = Pass(batch, device, channels_last=channels_last)
    out = {}
    if compile_model:
        state.net = torch.compile(model)  # compiles on first use: the warm epoch's time shows it
    for epoch in range(2):
        sync(device)
        start = time.perf_counter()
        result = train_epoch(state, data, how, np.random.default_rng(epoch), 0,
                             desc=f"batch {batch} {precision}")
        sync(device)
        seconds = time.perf_counter() - start
        if epoch == 0 and compile_model:
            out["compile_seconds"] = round(seconds, 1)
    images = len(data) // batch * batch
    return {**out, "epoch_seconds": round(seconds, 3), "images_per_s": round(images / seconds),
            "loss": round(result["loss"], 1)}


def profile_steps(cfg: ModelConfig, data, batch: int, precision: str, device,
                  channels_last: bool, steps: int = 20) -> dict:
    """One profiled run of ``steps`` optimizer steps (after a warm-up run of as many)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    lr = archs.arch(cfg.arch).lr
    opt = make_optimizer("adamw", [p for n, p in model.named_parameters() if n != "log_scale"],
                         lr, 0.01, device)
    state = TrainState(model, opt, Recipe(CONSTANT, lr, 1), archs.likelihood(cfg),
                       precision=precision, channels_last=channels_last)
    steps = max(1, min(steps, len(data) // batch))
    subset = data[:batch * steps]

    def run():
        train_epoch(state, subset, Pass(batch, device, channels_last=channels_last),
                    np.random.default_rng(0), 0, desc="profile")
        sync(device)

    run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
    wall = time.perf_counter() - start
    events = prof.events()
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    syncs = [e for e in events if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize",
                                             "cudaEventSynchronize", "cudaMemcpy")]
    out = {"batch": batch, "precision": precision, "steps": steps,
           "step_ms_profiled": round(1e3 * wall / steps, 2)}
    if device.type == "cuda":
        kernel_us = sum(e.device_time for e in kernels)
        out.update({"kernel_ms_per_step": round(kernel_us / 1e3 / steps, 2),
                    "kernels_per_step": round(len(kernels) / steps, 1),
                    "syncs_per_step": round(len(syncs) / steps, 2),
                    "device_busy": round(kernel_us / 1e6 / wall, 3)})
    else:
        out["ops_per_step"] = round(len([e for e in events if e.name.startswith("aten::")])
                                    / steps, 1)
    top = prof.key_averages().table(sort_by="self_cuda_time_total" if device.type == "cuda"
                                    else "self_cpu_time_total", row_limit=15)
    return out, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=63632)
    ap.add_argument("--smoke-images", type=int, default=4096)
    ap.add_argument("--smoke-epochs", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over 20 steps")
    args = ap.parse_args()
    out = args.out
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": str(device), "name": name, "torch": torch.__version__}

    log("1: smoke run through train.train")
    generate("cartoon", out / "raw", args.smoke_images, seed=0, size=128)
    prepare(out / "raw", out / "prepared", image_size=args.image_size, crop="box",
            box=(0.1, 0.08, 0.9, 0.88), val_fraction=0.05, test_fraction=0.05, min_side=16,
            seed=0)
    cfg = ModelConfig("resnet", args.image_size, 128)
    start = time.perf_counter()
    result = train(out / "prepared", out / "model.pt", out / "curves", cfg,
                   TrainConfig(epochs=args.smoke_epochs, batch_size="auto",
                               device=args.device, seed=0))
    losses_per_epoch = [h["train"]["loss"] for h in result["history"]]
    model, _ = load_model(out / "model.pt")
    report["smoke"] = {"seconds": round(time.perf_counter() - start, 1),
                       "train_loss_per_epoch": losses_per_epoch,
                       "loss_decreased": losses_per_epoch[-1] < losses_per_epoch[0],
                       "model_loads": model.cfg == cfg}

    log("2: epoch throughput")
    set_determinism(0)
    faces = PreparedData(out / "prepared").split("train")
    tiled = np.resize(faces[:], (args.images, *faces.shape[1:]))  # repeat the faces
    np.save(out / "tiled.npy", tiled)
    del tiled
    on_disk = ImageRows(out / "tiled.npy")
    budget = None if device.type == "cuda" else 1 << 40
    on_device = stage_on_device(on_disk, device, budget)
    channels_last = use_channels_last(device)
    per_image = flops_per_image(cfg)
    peak = datasheet_peak(name)
    measured = matmul_flops(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    report.update({"images": args.images, "image_size": args.image_size,
                   "gflop_per_image": round(per_image / 1e9, 4),
                   "datasheet_bf16_tflops": peak and peak / 1e12,
                   "measured_matmul_tflops": round(measured / 1e12, 1),
                   "channels_last": channels_last,
                   "data_in_device_memory": isinstance(on_device, torch.Tensor)})
    runs = []
    precisions = ["bf16", "fp32"] if device.type == "cuda" else ["fp32"]
    for batch in args.batches:
        for precision in precisions:
            runs.append({"batch": batch, "precision": precision, "data": "device memory",
                         **timed_epoch(cfg, on_device, batch, precision, device, channels_last)})
    runs.append({"batch": args.batches[-1], "precision": precisions[0], "data": "host reads",
                 **timed_epoch(cfg, on_disk, args.batches[-1], precisions[0], device,
                               channels_last)})
    if args.compile:
        runs.append({"batch": args.batches[-1], "precision": precisions[0],
                     "data": "device memory", "compiled": True,
                     **timed_epoch(cfg, on_device, args.batches[-1], precisions[0], device,
                                   channels_last, compile_model=True)})
    for r in runs:
        achieved = per_image * r["images_per_s"]
        r["mfu_vs_datasheet"] = peak and round(achieved / peak, 4)
        r["mfu_vs_measured_matmul"] = round(achieved / measured, 4)
    report["runs"] = runs
    if args.profile:
        report["profile"], top = profile_steps(cfg, on_device, args.batches[0], precisions[0],
                                               device, channels_last)
        (out / "profile.txt").write_text(top)
        print(top)
    print(json.dumps(report, indent=2))
    (out / "gpu_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    best = min((r for r in runs if r["data"] == "device memory"), key=lambda r: r["epoch_seconds"])
    host = runs[len(args.batches) * len(precisions)]
    same = next(r for r in runs if r["data"] == "device memory" and r["batch"] == host["batch"]
                and r["precision"] == host["precision"])
    print(f"best epoch over {args.images} images on {name}: {best['epoch_seconds']} s "
          f"(batch {best['batch']}, {best['precision']}, {best['images_per_s']} images/s, "
          f"MFU {best['mfu_vs_datasheet']} of the datasheet bf16 peak); goal < 3 s on an H100")
    print(f"data in device memory / host reads, batch {host['batch']}: "
          f"{same['images_per_s'] / host['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
