"""CUDA smoke run and train-step throughput, GPU against CPU in the same run.

    PYTHONPATH=src python benchmarks/gpu_smoke.py --out /tmp/smoke [--images 2048]

Draws synthetic cartoon faces, prepares them, trains the default VAE for a few epochs
on the GPU through the project's own training loop, fits the likelihood scale,
evaluates and renders the figures, all on the device that ``train.device: auto``
picks. Then times train steps of the same model and batch on the GPU and on the CPU.
Needs no dvc/dvclive (the stages do; this calls the library directly).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from toonvae import figures, losses
from toonvae.data import PreparedData, to_float
from toonvae.metrics import evaluate
from toonvae.model import ModelConfig, build
from toonvae.prepare import prepare
from toonvae.runtime import pick_device, set_determinism
from toonvae.sources.synthetic import generate
from toonvae.train import TrainConfig, fit_log_scale, run_epoch


def steps_per_second(model, x, steps: int) -> float:
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if n != "log_scale"], 1e-3)

    def step():
        mean, mu, logvar = model(x)
        loss, _, _ = losses.training_loss("gaussian", x, mean, mu, logvar, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    out = args.out
    set_determinism(0)
    device = pick_device("auto")
    generate("cartoon", out / "raw", args.images, seed=0, size=128)
    prepare(out / "raw", out / "prepared", image_size=64, crop="box", box=(0.1, 0.08, 0.9, 0.88),
            val_fraction=0.05, test_fraction=0.05, min_side=16, seed=0)
    data = PreparedData(out / "prepared")
    cfg = ModelConfig("resnet", 64, 128, (16, 32, 64, 128), "auto")
    model = build(cfg).to(device)
    tc = TrainConfig(args.epochs, args.batch, None, 1.0, "auto", 0, 0)
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if n != "log_scale"], 2e-3)
    history = []
    t = time.perf_counter()
    for epoch in range(args.epochs):
        rng = np.random.default_rng([0, epoch])
        history.append(run_epoch(model, data.split("train"), tc, cfg.resolved_likelihood, device,
                                 optimizer=opt, rng=rng, epoch=epoch, desc=f"epoch {epoch + 1}"))
    train_s = time.perf_counter() - t
    fit_log_scale(model, data.split("val"), 64, device)
    metrics = evaluate(model, data.split("test"), 250, 0, device)
    figures.reconstructions(model, data.split("test"), out / "reconstruction.png", 16, 8, 0)
    figures.noise_samples(model, out / "noise.png", 16, 8, 0)

    x = to_float(data.split("train")[:args.batch], device)
    gpu = steps_per_second(model, x, 50)
    cpu_model = build(cfg)
    cpu_model.load_state_dict(model.state_dict())
    cpu = steps_per_second(cpu_model, x.cpu(), 5)
    report = {
        "device": str(device),
        "name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "train_loss_per_epoch": [round(h["loss"], 1) for h in history],
        "loss_decreased": bool(history[-1]["loss"] < history[0]["loss"]),
        "train_seconds": round(train_s, 2),
        "metrics": {k: v for k, v in metrics.items()},
        "train_steps_per_s_device": round(gpu, 2),
        "train_steps_per_s_cpu": round(cpu, 2),
        "device_vs_cpu_ratio": round(gpu / cpu, 2),
        "batch": args.batch,
    }
    print(json.dumps(report, indent=2))
    (out / "smoke.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
