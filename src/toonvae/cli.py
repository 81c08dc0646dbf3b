"""The ``toonvae`` command: look at and use a trained model directory.

Every failure prints one line, ``error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toonvae import __version__
from toonvae.archs import SAMPLERS
from toonvae.errors import ToonvaeError, report_errors
from toonvae.report import read_metrics


def cmd_info(args) -> None:
    from toonvae.archs import choose_sampler
    from toonvae.model import count_parameters, load_model

    model, blob = load_model(args.model)
    info = {"model": str(args.model), "config": blob["config"],
            "parameters": count_parameters(model), "train": blob.get("train"),
            "data": blob.get("data"),
            "samplers": ["prior"] + (["gmm"] if model.gmm is not None else [])
            + (["flow"] if model.flow is not None else []),
            "learned_prior": blob.get("flow_fit"),
            "default_sampler": choose_sampler("auto", model)}
    metrics = Path(args.model).parent.parent / "metrics" / f"{Path(args.model).name}.json"
    if metrics.is_file():
        info["metrics"] = read_metrics(metrics)
    print(json.dumps(info, indent=2))


def _write(images, args, what: str) -> None:
    from toonvae.figures import save_grid

    out = Path(args.out)
    if getattr(args, "format", "grid") == "individual":
        from torchvision.utils import save_image

        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            save_image(image, out / f"{i:04d}.png")
        print(f"wrote {len(images)} {what} to {out}/", file=sys.stderr)
    else:
        save_grid(images, out, columns=args.columns)
        print(f"wrote {len(images)} {what} to {out}", file=sys.stderr)


def cmd_sample(args) -> None:
    from toonvae.api import load

    vae = load(args.model)
    sampler = args.sampler or vae.default_sampler
    images = vae.sample(args.n, temperature=args.temperature, seed=args.seed, sampler=sampler)
    _write(images, args, f"samples (sampler {sampler})")


def cmd_reconstruct(args) -> None:
    import torch

    from toonvae.api import load

    vae = load(args.model)
    originals = vae._as_tensor(list(args.images)).cpu()
    recon = vae.reconstruct(originals)
    rows = []
    for start in range(0, len(originals), args.columns):  # originals above reconstructions
        rows += [originals[start:start + args.columns], recon[start:start + args.columns]]
    _write(torch.cat(rows), args, "originals and reconstructions")


def cmd_interpolate(args) -> None:
    from toonvae.api import load

    vae = load(args.model)
    args.columns = args.steps
    _write(vae.interpolate(args.a, args.b, args.steps, spherical=args.spherical), args,
           "interpolated faces")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (and --help stays as it is)."""

    def error(self, message):
        raise ToonvaeError(f"{self.prog}: {message}; see {self.prog} --help")


def _model_arg(p):
    p.add_argument("--model", required=True, help="a model directory, e.g. models/anime")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="toonvae", description=__doc__)
    ap.add_argument("--version", action="version", version=f"toonvae {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("info", help="architecture, training params, data counts and metrics")
    _model_arg(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sample", help="decode new faces into a PNG grid or one PNG each")
    _model_arg(p)
    p.add_argument("--n", type=int, default=64, help="how many images (default 64)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scale of the latent noise (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="prior N(0, I), the fitted mixture, or the prior with its top levels "
                   "from the fitted flow (default: the one the evaluate stage scores, "
                   "sampler.kind auto: the prior for hvae, else the mixture)")
    p.add_argument("--format", choices=("grid", "individual"), default="grid",
                   help="one grid PNG, or a folder with one PNG per image")
    p.add_argument("--columns", type=int, default=8, help="grid columns (default 8)")
    p.add_argument("--out", required=True, help="output PNG (grid) or folder (individual)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="encode and decode image files, preprocessed "
                       "like the training data; originals above reconstructions")
    _model_arg(p)
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    p.add_argument("--columns", type=int, default=8, help="grid columns (default 8)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="decoded faces between the codes of two images")
    _model_arg(p)
    p.add_argument("a", help="first image file")
    p.add_argument("b", help="second image file")
    p.add_argument("--steps", type=int, default=8, help="faces in the strip (default 8)")
    p.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_interpolate)
    return ap


def main(argv=None) -> int:
    def run():
        args = build_parser().parse_args(argv)
        if getattr(args, "columns", 1) < 1:
            raise ToonvaeError("--columns must be >= 1")
        args.func(args)
    return report_errors(run)


if __name__ == "__main__":
    sys.exit(main())
