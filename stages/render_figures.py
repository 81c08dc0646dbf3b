"""render-figures stage: the README pictures of one dataset into figures/<dataset>/."""

import argparse
import sys

from toonvae import figures, params
from toonvae.data import PreparedData
from toonvae.errors import report_errors
from toonvae.model import load_model
from toonvae.progress import Timer, log
from toonvae.runtime import set_determinism


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset")
    args = ap.parse_args()
    p = params.load()
    p.dataset(args.dataset)
    timer = Timer()
    set_determinism(p.seed, p.train.threads)
    f = p.figures
    data = PreparedData(f"data/prepared/{args.dataset}")
    model, _ = load_model(f"models/{args.dataset}")
    out = f"figures/{args.dataset}"
    figures.dataset_samples(data.split("train"), f"{out}/samples.png", f.samples, f.columns, p.seed)
    figures.reconstructions(model, data.split("test"), f"{out}/reconstruction.png",
                            f.reconstructions, f.columns, p.seed)
    figures.noise_samples(model, f"{out}/noise.png", f.noise, f.columns, p.seed)
    log(f"render-figures {args.dataset}: wrote samples.png, reconstruction.png, noise.png "
        f"to {out}/ in {timer}")


if __name__ == "__main__":
    sys.exit(report_errors(main))
