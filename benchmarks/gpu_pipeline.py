"""The real job, timed: `dvc repro` at Kaggle scale in a clone of HEAD, stage by stage.

    python -m benchmarks.gpu_pipeline                       # 64 px, 30 epochs, both datasets
    python -m benchmarks.gpu_pipeline --image-size 256 --arch seed --latent-dim 200 --epochs 5
    python -m benchmarks.gpu_pipeline --datasets anime --epochs 1   # the CPU overhead breakdown
    python -m benchmarks.gpu_pipeline --tiny                # seconds, on any CPU (the tests)

Clones the repository's HEAD into a scratch folder, sets Kaggle-scale params there (the
anime set's 63,632 faces and the Cartoon Set's 10,000, procedurally drawn as in the
default pipeline; ``--image-size``, ``--epochs``, ``--batch-size`` and the model as asked),
runs ``dvc repro render-figures@<dataset>`` for each dataset (every stage of the data's
chain; not render-architecture, which draws the model and reads no data; ``--until``
stops earlier) with this Python environment's ``dvc`` and prints one table:

- each stage's seconds (from DVC starting it to the start of the next);
- training images per second over the training epochs only (from the train stage's
  summary line: epochs x images / the seconds spent in the epochs);
- the share of the train stage outside the training epochs, and its biggest part;
- the test metrics of each dataset.

``--tiny`` shrinks everything (44 faces, 32 px unless ``--image-size`` says otherwise, a
small model, 1 epoch) so the script runs in a minute or two on a CPU: a test runs it that
way at 256 px, so neither the script nor the 256 px path can rot unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from benchmarks.harness import clone_head, timed

from toonvae.progress import read_summaries
from toonvae.report import read_metrics

KAGGLE_COUNTS = {"anime": 63_632, "cartoon": 10_000}  # splcher/animefacedataset; cartoonset10k
METRICS = ("mse", "psnr", "ssim", "elbo_bpd", "iwae_bpd", "swd", "swd_prior", "swd_floor")


def set_params(path: Path, args) -> dict:
    p = yaml.safe_load(path.read_text())
    p["datasets"] = {name: p["datasets"][name] for name in args.datasets}
    for name, entry in p["datasets"].items():
        entry["count"] = 44 if args.tiny else KAGGLE_COUNTS.get(name, entry["count"])
        if args.tiny:
            entry["raw_size"] = 96 if name == "cartoon" else 48
    p["image_size"] = args.image_size or (32 if args.tiny else 64)
    if args.latent_dim:
        p["latent_dim"] = args.latent_dim
    p["model"]["arch"] = args.arch
    # A speed measurement: every core and instruction set (GPU bits are machine-bound anyway).
    p.setdefault("runtime", {})["numerics"] = "native"
    p["train"]["epochs"] = args.epochs
    if args.batch_size:
        p["train"]["batch_size"] = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    if args.tiny:
        p["latent_dim"] = 4
        p["model"]["channels"] = [8, 8, 16, 16]
        p["preprocess"].update(val_fraction=0.1, test_fraction=0.1, min_side=16)
        p["train"]["threads"] = 1
        p["evaluate"]["iwae_samples"] = 8
        p["figures"].update(samples=8, reconstructions=8, noise=8, columns=4)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return p


def train_summaries(log: str) -> dict:
    """{dataset: the train stage's facts} from its summary in dvc's output."""
    out = {}
    for fact in read_summaries(log):
        if fact["stage"] != "train":
            continue
        parts = {k: round(v, 1) for k, v in fact["parts"].items()}
        parts["other"] = round(max(fact["seconds"] - sum(fact["parts"].values()), 0.0), 1)
        out[fact["dataset"]] = {
            "epochs": fact["epochs"], "images": fact["images"], "batch": fact["batch_size"],
            "stage_s": round(fact["seconds"], 1),
            "outside_epochs": round(1 - fact["parts"]["epochs"] / fact["seconds"], 3),
            "parts_s": parts,
            "images_per_s": round(fact["epochs"] * fact["images"] / fact["parts"]["epochs"], 1)}
    return out


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def table(r: dict) -> str:
    lines = [f"`dvc repro` of {r['commit']} on {r['device']} (torch {r['torch']}): "
             f"{r['image_size']} px, "
             f"{r['epochs']} epochs, arch {r['arch']}; total {r['repro']['seconds']:.0f} s "
             f"(train + evaluate + render-figures: {r['after_prepare_s']:.0f} s)", "",
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {s:.1f} |" for name, s in r["repro"]["stages"].items()]
    lines += ["", "| dataset | train images | batch | images/s (epochs) | outside epochs | "
              "biggest part outside | " + " | ".join(METRICS) + " |",
              "|---|---:|---:|---:|---:|---|" + "---:|" * len(METRICS)]
    for name, t in r["train"].items():
        outside = {k: v for k, v in t["parts_s"].items() if k != "epochs"}
        big = max(outside, key=outside.get)
        m = r["metrics"].get(name, {})
        values = " | ".join("–" if m.get(k) is None else f"{m[k]:.5g}" for k in METRICS)
        lines.append(f"| {name} | {t['images']} | {t['batch']} | {t['images_per_s']:.0f} | "
                     f"{t['outside_epochs']:.1%} | {big} {outside[big]:.1f} s | {values} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--datasets", nargs="+", default=["anime", "cartoon"])
    ap.add_argument("--image-size", type=int, help="default 64 (32 with --tiny)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--arch", default="resnet")
    ap.add_argument("--latent-dim", type=int)
    ap.add_argument("--batch-size", help="a number or auto (default: params.yaml's)")
    ap.add_argument("--tiny", action="store_true", help="44 faces at 32 px, for a CPU check")
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--log", type=Path, help="append dvc's output here as it comes")
    ap.add_argument("--keep", action="store_true", help="keep the scratch clone")
    ap.add_argument("--work", type=Path, help="clone into this new folder (kept)")
    ap.add_argument("--until", default="render-figures",
                    choices=("preprocess", "train", "evaluate", "render-figures"),
                    help="the last stage to run (preprocess: only prepare the data, e.g. for "
                         "benchmarks/arch_bench.py --repo WORK/repo)")
    args = ap.parse_args()
    if args.tiny:
        args.epochs = 1
    args.keep |= args.work is not None
    work = args.work or Path(tempfile.mkdtemp(prefix="toonvae-gpu-pipeline-"))
    clone, head, env = clone_head(args.repo, work, "gpu-pipeline")
    p = set_params(clone / "params.yaml", args)
    print(f"dvc repro in a clone of {head} ({', '.join(args.datasets)}; "
          f"{p['image_size']} px, {args.epochs} epochs) ...", flush=True)
    start = time.monotonic()
    targets = [f"{args.until}@{name}" for name in args.datasets]
    repro = timed(["dvc", "repro", *targets], clone, env, keep_log=True, tee=args.log)
    log = repro.pop("log")
    import torch

    r = {"commit": head, "device": device_name(), "torch": torch.__version__, "image_size": p["image_size"],
         "epochs": args.epochs, "arch": args.arch, "repro": repro,
         "wall_s": round(time.monotonic() - start, 1), "train": train_summaries(log),
         "metrics": {name: read_metrics(clone / "metrics" / f"{name}.json")
                     for name in args.datasets
                     if args.until in ("evaluate", "render-figures")}}
    r["after_prepare_s"] = sum(s for name, s in repro["stages"].items()
                               if name.split("@")[0] in ("train", "evaluate", "render-figures"))
    print(table(r))
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {clone}")


if __name__ == "__main__":
    main()
