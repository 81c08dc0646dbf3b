"""The ``toonvae`` command: look at and use a trained model directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toonvae import __version__
from toonvae.errors import ToonvaeError, report_errors


def cmd_info(args) -> None:
    from toonvae.model import count_parameters, load_model

    model, blob = load_model(args.model)
    info = {"model": str(args.model), "config": blob["config"],
            "parameters": count_parameters(model), "train": blob.get("train"),
            "data": blob.get("data")}
    metrics = Path("metrics") / f"{Path(args.model).name}.json"
    if metrics.is_file():
        info["metrics"] = json.loads(metrics.read_text())
    print(json.dumps(info, indent=2))


def cmd_sample(args) -> None:
    import torch

    from toonvae.figures import save_grid
    from toonvae.model import load_model

    if args.n < 1 or args.temperature <= 0:
        raise ToonvaeError("--n must be >= 1 and --temperature > 0")
    model, _ = load_model(args.model)
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed),
                          temperature=args.temperature)
    save_grid(images, Path(args.out), columns=args.columns)
    print(f"wrote {args.n} samples to {args.out}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="toonvae", description=__doc__)
    ap.add_argument("--version", action="version", version=f"toonvae {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="architecture, training params, data counts and metrics")
    p.add_argument("--model", required=True, help="a model directory, e.g. models/anime")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("sample", help="decode images from the prior into a PNG grid")
    p.add_argument("--model", required=True, help="a model directory, e.g. models/anime")
    p.add_argument("--n", type=int, default=64, help="how many images (default 64)")
    p.add_argument("--temperature", type=float, default=1.0, help="prior scale (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--columns", type=int, default=8, help="grid columns (default 8)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=cmd_sample)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
