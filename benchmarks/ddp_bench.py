"""DistributedDataParallel against one process, on this machine, measured in the same run.

    python -m benchmarks.ddp_bench [--images 2048] [--epochs 2] [--nproc 2] [--device cpu]

Draws synthetic anime faces, prepares them as the preprocess stage does, then trains the
default model (params.yaml) with ``train.train`` twice on the same data and global batch:
once in one process using every core, once under torchrun in ``--nproc`` processes sharing
the cores (gloo on the CPU; with ``--device cuda``, NCCL and one GPU each). It prints the
wall time of each training (epochs, validation and the model's finishing steps) and the
ratio, one process / N processes: above 1 means DDP was faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    from toonvae import params
    from toonvae.archs import ModelConfig
    from toonvae.distributed import world
    from toonvae.train import TrainConfig, train

    p = params.load(ROOT / "params.yaml")
    work = Path(args.worker)
    cfg = TrainConfig(epochs=args.epochs, batch_size=p.train.batch_size, lr=None, beta=1.0,
                      device=args.device, threads=0, seed=0, warmup_steps=p.train.warmup_steps)
    start = time.perf_counter()
    train(work / "prepared", work / f"model-{args.tag}.pt", work / f"curves-{args.tag}",
          ModelConfig.from_params(p), cfg)
    if world().main:
        (work / f"{args.tag}.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--out", help="also write the results here as JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tag", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from toonvae.prepare import prepare
    from toonvae.sources.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate("anime", work / "raw", args.images, seed=0, size=104)
        prepare(work / "raw", work / "prepared", image_size=64, crop="center", box=None,
                val_fraction=0.05, test_fraction=0.05, min_side=32, seed=0)
        cores = os.cpu_count() or 1
        common = [__file__, "--worker", str(work), "--epochs", str(args.epochs),
                  "--device", args.device]
        runs = {
            "one process": ([sys.executable, *common, "--tag", "single"], cores),
            f"{args.nproc} processes": ([sys.executable, "-m", "torch.distributed.run",
                                         "--standalone", f"--nproc-per-node={args.nproc}",
                                         *common, "--tag", "ddp"],
                                        max(1, cores // args.nproc)),
        }
        seconds = {}
        for name, (cmd, threads) in runs.items():
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)
            tag = "single" if name == "one process" else "ddp"
            seconds[name] = json.loads((work / f"{tag}.json").read_text())["seconds"]
    single, ddp = seconds.values()
    result = {"images": args.images, "epochs": args.epochs, "device": args.device,
              "cores": cores, "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "speedup": round(single / ddp, 3)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
