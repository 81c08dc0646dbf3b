"""Does a sample metric see layout? Damaged copies of real faces, scored against the test set.

    python -m benchmarks.layout_sanity [--datasets anime,cartoon] [--json experiments/layout-sanity.json]

Reads this checkout's prepared data (run ``dvc repro`` first). For each dataset it scores,
against the test images, the floor's train images (the same ones as swd's floor) as they
are, then the same images damaged three ways:

- quadrants shuffled: each image's four quadrants moved one place clockwise (every patch
  is the data's own; only where it sits is wrong);
- blurred, Gaussian σ = 1 and 2 px (layout kept; detail lost).

A metric that sees layout scores the shuffled copies clearly worse than the undamaged
ones; patch SWD, which pools patches from everywhere, barely moves. Each metric is shown
as a multiple of the undamaged score (the floor), except precision, recall, density and
coverage, which are fractions (higher is better) and shown as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from torchvision.transforms.functional import gaussian_blur

from benchmarks.harness import write_json
from toonvae import features, layout
from toonvae.data import PreparedData, to_float
from toonvae.errors import report_errors
from toonvae.evaluation import floor_rows
from toonvae.swd import SlicedWasserstein

COLUMNS = ["dataset", "images", "swd (x floor)", "fd (x floor)", "kid ×1000", "precision",
           "recall", "density", "coverage"]


def shuffle_quadrants(x: torch.Tensor) -> torch.Tensor:
    """Top-left to top-right to bottom-right to bottom-left to top-left."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    tl, tr, bl, br = x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]
    return torch.cat([torch.cat([bl, tl], -1), torch.cat([br, tr], -1)], -2)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, kernel_size=2 * round(3 * sigma) + 1, sigma=sigma)


def damaged(train: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"train (the floor)": train, "quadrants shuffled": shuffle_quadrants(train),
            "blurred σ = 1 px": blur(train, 1.0), "blurred σ = 2 px": blur(train, 2.0)}


def rows_for(name: str, data: PreparedData, seed: int, swd_images: int, network) -> list:
    test, train = data.split("test"), data.split("train")
    n = min(len(test), len(train), swd_images)
    real = to_float(test[:n])
    swd_to_test = SlicedWasserstein(real, seed, "cpu")
    real_features = features.extract(network, real)
    out, floor = [], None
    for label, images in damaged(to_float(train[floor_rows(len(train), n, seed)])).items():
        scores = {"swd": swd_to_test(images),
                  **layout.scores(real_features, features.extract(network, images), seed)}
        floor = floor or scores
        out.append([f"{name}: {label}", n, round(scores["swd"] / floor["swd"], 2),
                    round(scores["fd"] / floor["fd"], 2), round(scores["kid"], 2),
                    *(round(scores[k], 3) for k in ("precision", "recall", "density",
                                                     "coverage"))])
        print(" | ".join(str(v) for v in out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", help="comma-separated (default: every dataset of params.yaml)")
    ap.add_argument("--json", type=Path, help="write the table here")
    args = ap.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    names = args.datasets.split(",") if args.datasets else list(params["datasets"])
    torch.manual_seed(0)
    network = features.load()
    print(" | ".join(COLUMNS))
    rows = []
    for name in names:
        rows += rows_for(name, PreparedData(Path("data/prepared") / name), params["seed"],
                         params["evaluate"]["swd_images"], network)
    write_json(args.json, {"columns": COLUMNS, "rows": rows})


if __name__ == "__main__":
    raise SystemExit(report_errors(main))
