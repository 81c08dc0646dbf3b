"""What each part of the training recipe is worth, measured against a baseline in the same run.

    python -m benchmarks.recipe_bench                      # anime, every variant, 8 epochs
    python -m benchmarks.recipe_bench --dataset cartoon --variants adam-constant,adamw-cosine

Each variant trains the default model on the prepared data (``dvc repro
preprocess@<dataset>`` first) with the same seed and batches, then scores the test split
the way the evaluate stage does (mse, psnr, elbo in bits/dim, swd of prior and mixture
samples; IWAE is left out to save time). It prints one markdown row per variant with its
ratios to the first one. Quality does not depend on the machine; train time does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


from benchmarks.harness import ROOT
from toonvae import metrics
from toonvae.archs import ModelConfig
from toonvae.data import PreparedData
from toonvae.evaluation import sample_quality
from toonvae.model import load_model
from toonvae.params import EvaluateParams
from toonvae.tables import recipe_table
from toonvae.train import TrainConfig, train

VARIANTS = {  # the first is the baseline of the ratios
    "adam-constant": {},
    "adamw-cosine-ema-0.999": {"optimizer": "adamw", "schedule": "cosine", "ema": 0.999},
    "adamw-cosine-lr4": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.004,
                         "warmup_steps": 100},
    "adamw-cosine-lr8": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.008,
                         "warmup_steps": 100},
    "adamw-cosine-lr4-ema-0.99": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.004,
                                  "warmup_steps": 100, "ema": 0.99},
    "ema-0.99": {"ema": 0.99},
    "kl-warmup-1": {"kl_warmup_epochs": 1.0},
    # The learning-rate rule of train.batch_size (run with --variants
    # adamw-cosine-lr4,batch-128-same-lr,batch-128-sqrt-lr,batch-128-linear-lr):
    # batch 128 at the batch-32 lr, at sqrt(4) x and at 4 x it.
    "batch-128-same-lr": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.004,
                          "warmup_steps": 100, "batch_size": 128},
    "batch-128-sqrt-lr": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.008,
                          "warmup_steps": 100, "batch_size": 128},
    "batch-128-linear-lr": {"optimizer": "adamw", "schedule": "cosine", "lr": 0.016,
                            "warmup_steps": 100, "batch_size": 128},
}
BASE = TrainConfig(epochs=8, batch_size=32, lr=None, beta=1.0, device="cpu", threads=0, seed=0,
                   optimizer="adam", schedule="constant")


def score(model_path: Path, data: PreparedData, swd_images: int) -> dict:
    model, _ = load_model(model_path)
    test = data.split("test")
    out = metrics.reconstruction_metrics(model, test, 250, 0, "cpu")
    out.update(sample_quality(model, test, data.split("train"),
                              EvaluateParams(swd_images=swd_images, fid_weights=None),
                              "gmm", 0, "cpu"))
    return {k: out[k] for k in ("mse", "psnr", "elbo_bpd", "kl", "swd_prior", "swd_gmm")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="anime")
    ap.add_argument("--data", type=Path, help="prepared data (default data/prepared/<dataset>)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=BASE.epochs)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=128)
    ap.add_argument("--channels", default="16,32,64,128")
    ap.add_argument("--swd-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"error: no variant {unknown[0]!r}; variants: {', '.join(VARIANTS)}")
    data = PreparedData(args.data or ROOT / "data" / "prepared" / args.dataset)
    mc = ModelConfig("resnet", args.image_size, args.latent_dim,
                     tuple(int(c) for c in args.channels.split(",")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cfg = replace(BASE, epochs=args.epochs, threads=args.threads, **VARIANTS[name])
            out = Path(tmp) / name
            t0 = time.perf_counter()
            train(data.root, out / "model.pt", out / "curves", mc, cfg)
            row = {"variant": name, **score(out / "model.pt", data, args.swd_images),
                   "train_s": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    base = rows[0]
    print(f"\n{args.dataset}, {args.epochs} epochs; ratios are variant / {base['variant']}\n")
    print(recipe_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
