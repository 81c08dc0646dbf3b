"""Peak RSS of training and evaluation for two dataset sizes, and the reader's share of it.

    python -m benchmarks.memory_bench [--small 2000] [--large 16000]

Draws synthetic anime faces for both sizes and prepares them (64 px). Then, each in a
fresh process, it trains one epoch and evaluates, and reports the process's peak RSS
(``ru_maxrss``) of each: once with the project's reader (``data.ImageRows``, positional reads)
and once with the obvious alternative, ``np.load(mmap_mode="r")``, as the baseline.
Flat memory means a large/small ratio near 1 while the data grows ``large/small``-fold.

A small model (latent 16, widths 8-32) and a light evaluation (IWAE k=16 and swd on 100
images) keep the run short: memory growth comes from the data path, not the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from toonvae.prepare import prepare
from toonvae.progress import log
from toonvae.sources.synthetic import generate

RUN = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from toonvae import data as data_module
from toonvae.data import PreparedData
from toonvae.evaluation import evaluate
from toonvae.archs import ModelConfig
from toonvae.model import load_model
from toonvae.params import EvaluateParams
from toonvae.train import TrainConfig, train

prepared, work, reader, stage = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
if reader == "mmap":  # the baseline: a memory map of each split
    data_module.PreparedData.split = lambda self, name: np.load(self.root / f"{name}.npy",
                                                               mmap_mode="r")
t = time.perf_counter()
if stage == "train":
    train(prepared, work / "model.pt", work / "curves", ModelConfig("resnet", 64, 16, (8, 16, 16, 32)),
          TrainConfig(epochs=1, batch_size=64, lr=None, beta=1.0, device="cpu", threads=0,
                      seed=0, gmm_components=2))
else:  # batches of 100: the small set's test split fills them too
    ev = EvaluateParams(batch_size=100, iwae_samples=16, iwae_images=100, swd_images=100,
                        fid_weights=None)
    evaluate(load_model(work / "model.pt")[0], PreparedData(prepared), ev, "gmm", 0, "cpu")
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t}))
"""


def run(prepared: Path, work: Path, reader: str) -> dict:
    """Train, then evaluate, each in a fresh process; the peak RSS of each."""
    work.mkdir(parents=True, exist_ok=True)
    result = {}
    for stage in ("train", "evaluate"):
        out = subprocess.run([sys.executable, "-c", RUN, str(prepared), str(work), reader, stage],
                             capture_output=True, text=True, cwd=work)
        if out.returncode:
            raise SystemExit(f"the {reader} {stage} run failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        result.update({f"{stage}_peak_rss_mb": r["peak_rss_mb"], f"{stage}_seconds": r["seconds"]})
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=16000)
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="toonvae-memory-bench-"))
    prepared = {}
    for label, count in (("small", args.small), ("large", args.large)):
        generate("anime", work / label / "raw", count, seed=0, size=104)
        prepared[label] = work / label / "prepared"
        prepare(work / label / "raw", prepared[label], image_size=64, crop="center", box=None,
                val_fraction=0.05, test_fraction=0.05, min_side=32, seed=0)
    train_mb = {k: (p / "train.npy").stat().st_size / 2**20 for k, p in prepared.items()}
    r = {"images": {"small": args.small, "large": args.large},
         "train_npy_mb": {k: round(v, 1) for k, v in train_mb.items()}}
    for reader in ("rows", "mmap"):
        for label in ("small", "large"):
            log(f"{reader} reader, {label} set")
            r[f"{reader}_{label}"] = {k: round(v, 1) for k, v in
                                      run(prepared[label], work / f"{reader}-{label}", reader).items()}
    print(json.dumps(r, indent=2))
    grow = args.large / args.small
    for reader, name in (("rows", "ours (positional reads)"), ("mmap", "baseline (np.load mmap)")):
        for stage in ("train", "evaluate"):
            small = r[f"{reader}_small"][f"{stage}_peak_rss_mb"]
            large = r[f"{reader}_large"][f"{stage}_peak_rss_mb"]
            print(f"{stage} peak RSS, {name}: {small:.0f} MB at {args.small} images, {large:.0f} "
                  f"MB at {args.large} ({grow:.0f}x the data): ratio {large / small:.2f}, "
                  f"{large - small:+.0f} MB (train.npy grew {train_mb['large'] - train_mb['small']:.0f} MB)")
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
