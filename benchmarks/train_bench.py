"""Train-step speed on this machine; every figure is a ratio to a baseline run here too.

    python -m benchmarks.train_bench [--images 1024] [--reps 3] [--steps 10] [--compile] [--out FILE]

(``--image-size 32`` runs every part at a quarter of the pixels: the tests' smoke run.)

Draws synthetic anime faces (the default dataset, JPEGs as in the Kaggle layout) into a
scratch folder, prepares them as the preprocess stage does, then, on the CPU:

1. input pipeline: the project's train loop (``train.run_epoch`` over the prepared split
   read from disk) against the compute limit: the same model, batch and optimiser
   stepping on one batch already in memory. Target: ratio >= 0.95.
2. against what users write: the same model and step fed by torchvision ``ImageFolder``
   + Resize/CenterCrop/ToTensor + ``DataLoader(num_workers=2, shuffle=True)`` from the
   raw files. Target: our epoch >= 3x faster. Also both input pipelines alone, with no
   model: the images/s each can feed a device that computes faster than this CPU.
3. against the hardware: model FLOPs of a train step (``torch.utils.flop_counter``) per
   second, as a fraction of the FLOP/s of a 2048 x 2048 fp32 matmul, for the default
   (resnet) and the notebook's (seed) architecture.
4. what was tried to raise it: channels_last, fused Adam, batch 64 and 128, one thread,
   and with ``--compile`` torch.compile (its compile time too), each against the
   default setting's compute-limit images/s.

Timings are interleaved over ``--reps`` rounds and the median is kept: these machines
are shared and a single timing can be off by 30%.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from toonvae import archs
from toonvae.archs import ModelConfig, build
from toonvae.data import PreparedData, batches, to_float
from toonvae.optim import Adam
from toonvae.prepare import prepare
from toonvae.progress import log
from toonvae.sources.synthetic import generate
from toonvae.train import Pass, Recipe, TrainConfig, TrainState, train_epoch
from toonvae.train import train_step as project_step

SIZE, LATENT, BATCH = 64, 128, 32  # SIZE: params.yaml's image_size, or --image-size
# The two default datasets as params.yaml draws them: (style, raw px, crop, crop box).
DATASETS = (("anime", 104, "center", None), ("cartoon", 256, "box", (0.1, 0.08, 0.9, 0.88)))


def make_model(arch: str, channels_last: bool = False, fused: bool = False):
    torch.manual_seed(0)
    cfg = ModelConfig(arch, SIZE, LATENT)
    model = build(cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for n, p in model.named_parameters() if n != "log_scale"]
    # What training uses (toonvae.optim.Adam), or torch's fused CPU kernel to compare.
    lr = archs.arch(arch).lr
    opt = torch.optim.Adam(params, lr=lr, fused=True) if fused else Adam(params, lr=lr)
    return model, opt, archs.likelihood(cfg)


CONSTANT = TrainConfig(schedule="constant", warmup_steps=0)


def train_step(model, opt, likelihood, x):
    """The train stage's own step (``toonvae.train.train_step``) at a constant lr."""
    return project_step(TrainState(model, opt, Recipe(CONSTANT, opt.param_groups[0]["lr"], 1),
                                   likelihood), x)


def compute_limit(model, opt, likelihood, x, steps: int, forward=None) -> float:
    """Images/s stepping on one in-memory batch: no input pipeline at all."""
    step_model = model if forward is None else forward
    train_step(step_model, opt, likelihood, x)  # warm: allocator, kernel choice
    start = time.perf_counter()
    for _ in range(steps):
        train_step(step_model, opt, likelihood, x)
    return steps * len(x) / (time.perf_counter() - start)


def our_epoch(model, opt, likelihood, rows, seed: int) -> float:
    """Images/s of the project's own loop, data read from the prepared split on disk."""
    state = TrainState(model, opt, Recipe(CONSTANT, opt.param_groups[0]["lr"], 1), likelihood)
    start = time.perf_counter()
    train_epoch(state, rows, Pass(BATCH, "cpu"), np.random.default_rng(seed), 0,
                desc="our loop")
    return (len(rows) // BATCH) * BATCH / (time.perf_counter() - start)


def imagefolder_loader(raw: Path):
    """The usual notebook input pipeline: decode, resize and crop every epoch, in workers."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(SIZE), transforms.CenterCrop(SIZE),
                             transforms.ToTensor()])
    return torch.utils.data.DataLoader(datasets.ImageFolder(str(raw), transform=tf),
                                       batch_size=BATCH, shuffle=True, num_workers=2,
                                       drop_last=True)


def imagefolder_epoch(model, opt, likelihood, raw: Path) -> float:
    """Images/s of the notebook loop: the same model and step, fed by ImageFolder."""
    start = time.perf_counter()
    n = 0
    for x, _ in imagefolder_loader(raw):
        train_step(model, opt, likelihood, x)
        n += len(x)
    return n / (time.perf_counter() - start)


def data_only(rows, raw: Path | None, seed: int) -> float:
    """Images/s of an input pipeline alone (no model): ours, or ImageFolder's for ``raw``."""
    start = time.perf_counter()
    n = 0
    source = (imagefolder_loader(raw) if raw else
              (to_float(b) for b in batches(rows, BATCH, shuffle=True, drop_last=True,
                                            rng=np.random.default_rng(seed))))
    for x in source:
        n += len(x[0]) if raw else len(x)
    return n / (time.perf_counter() - start)


def flops_per_image(arch: str, batch: int = 2) -> float:
    """Counted on a small batch: conv and matmul FLOPs grow linearly with it."""
    model, opt, likelihood = make_model(arch)
    x = torch.rand(batch, 3, SIZE, SIZE)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, opt, likelihood, x)
    return counter.get_total_flops() / batch


def matmul_flops(n: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start)


def median_rounds(fns: dict, reps: int) -> dict:
    """Run each timing once per round, rounds interleaved; the median per name."""
    runs = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            runs[name].append(fn())
    return {name: statistics.median(v) for name, v in runs.items()}


def main() -> None:
    global SIZE
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1024, help="training images per epoch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="steps per compute-limit timing")
    ap.add_argument("--matmul-size", type=int, default=2048,
                    help="side of the fp32 matmul that stands for the hardware (ratio 3)")
    ap.add_argument("--image-size", type=int, default=SIZE, help="px of the prepared faces")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile (slow)")
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = ap.parse_args()
    SIZE = args.image_size
    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="toonvae-train-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # scratch: never left behind
    r = {"machine": f"{threads} torch threads, torch {torch.__version__}", "batch": BATCH,
         "image_size": SIZE}
    limit = make_model("resnet")
    for name, raw_size, crop, box in DATASETS:
        total = int(args.images / 0.9) + 1  # prepare keeps 90% for training
        raw, prepared = work / name / "raw", work / name / "prepared"
        generate(name, raw, total, seed=0, size=raw_size)
        prepare(raw, prepared, image_size=SIZE, crop=crop, box=box, val_fraction=0.05,
                test_fraction=0.05, min_side=32, seed=0)
        rows = PreparedData(prepared).split("train")
        x = to_float(rows[:BATCH])
        log(f"1-2 ({name}): our loop, the compute limit, ImageFolder + DataLoader")
        ours, folder = make_model("resnet"), make_model("resnet")
        steps = len(rows) // BATCH
        epoch = iter(range(10**6))
        med = median_rounds({
            "compute_limit": lambda: compute_limit(*limit, x, steps),
            "our_loop": lambda: our_epoch(*ours, rows, next(epoch)),
            "imagefolder_dataloader": lambda: imagefolder_epoch(*folder, raw),
        }, args.reps)
        alone = median_rounds({"ours": lambda: data_only(rows, None, next(epoch)),
                               "imagefolder": lambda: data_only(rows, raw, 0)}, args.reps)
        r[name] = {"raw_px": raw_size, "train_images": len(rows),
                   **{f"{k}_images_per_s": round(v, 1) for k, v in med.items()},
                   **{f"data_only_{k}_images_per_s": round(v) for k, v in alone.items()},
                   "ratio_data_only": round(alone["ours"] / alone["imagefolder"], 1),
                   "ratio_loop_vs_compute_limit": round(med["our_loop"] / med["compute_limit"], 3),
                   "ratio_loop_vs_imagefolder": round(med["our_loop"]
                                                      / med["imagefolder_dataloader"], 2)}

    log("3: FLOP/s against a large matmul")
    peak = matmul_flops(args.matmul_size)
    r["matmul_gflops"] = round(peak / 1e9, 1)
    seed_model = make_model("seed")
    seed_x = x
    med = median_rounds({
        "resnet": lambda: compute_limit(*limit, x, args.steps),
        "seed": lambda: compute_limit(*seed_model, seed_x, max(1, args.steps // 3)),
    }, args.reps)
    for arch, speed in med.items():
        f = flops_per_image(arch)
        r[f"{arch}_gflop_per_image"] = round(f / 1e9, 4)
        r[f"{arch}_images_per_s"] = round(speed, 1)
        r[f"{arch}_fraction_of_matmul"] = round(f * speed / peak, 3)

    log("4: what was tried")
    variants = {"default": make_model("resnet"),
                "channels_last": make_model("resnet", channels_last=True),
                "fused_adam": make_model("resnet", fused=True),
                "batch_64": make_model("resnet"), "batch_128": make_model("resnet")}
    xs = {"channels_last": x.contiguous(memory_format=torch.channels_last),
          "batch_64": to_float(rows[:64]), "batch_128": to_float(rows[:128])}

    def one_thread():
        torch.set_num_threads(1)
        try:
            return compute_limit(*variants["default"], x, args.steps)
        finally:
            torch.set_num_threads(threads)

    fns = {name: (lambda m=m, name=name: compute_limit(
        *m, xs.get(name, x), max(1, args.steps * BATCH // len(xs.get(name, x)))))
        for name, m in variants.items()}
    fns["one_thread"] = one_thread
    med = median_rounds(fns, args.reps)
    r["tried"] = {name: round(v / med["default"], 3) for name, v in med.items()}
    if args.compile:
        model, opt, likelihood = make_model("resnet")
        compiled = torch.compile(model)
        start = time.perf_counter()
        train_step(compiled, opt, likelihood, x)
        r["compile_seconds"] = round(time.perf_counter() - start, 1)
        med = median_rounds({
            "default": lambda: compute_limit(*variants["default"], x, args.steps),
            "compiled": lambda: compute_limit(model, opt, likelihood, x, args.steps,
                                              forward=compiled)}, args.reps)
        r["tried"]["torch_compile"] = round(med["compiled"] / med["default"], 3)

    print(json.dumps(r, indent=2))
    for name, *_ in DATASETS:
        print(f"ratio 1 ({name}), our loop / compute limit: "
              f"{r[name]['ratio_loop_vs_compute_limit']} (target >= 0.95)")
        print(f"ratio 2 ({name}, {r[name]['raw_px']} px files), our loop / ImageFolder + "
              f"DataLoader(2 workers): {r[name]['ratio_loop_vs_imagefolder']}x (target >= 3)")
        print(f"ratio 2b ({name}), input pipelines alone, no model: ours "
              f"{r[name]['data_only_ours_images_per_s']} images/s / ImageFolder "
              f"{r[name]['data_only_imagefolder_images_per_s']} images/s = "
              f"{r[name]['ratio_data_only']}x")
    for arch in ("resnet", "seed"):
        print(f"ratio 3, {arch} train step FLOP/s / fp32 matmul FLOP/s: "
              f"{r[f'{arch}_fraction_of_matmul']}")
    print("tried, compute limit / default: " + ", ".join(f"{k} {v}" for k, v in r["tried"].items()))
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
