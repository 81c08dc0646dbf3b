"""download stage: raw images of one dataset into data/raw/<dataset>/."""

import argparse
import sys

from toonvae import params, sources
from toonvae.errors import report_errors
from toonvae.progress import Timer, log


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset")
    args = ap.parse_args()
    p = params.load()
    ds = p.dataset(args.dataset)
    timer = Timer()
    out = f"data/raw/{args.dataset}"
    count = sources.download(ds, out, seed=p.seed)
    log(f"download {args.dataset}: wrote {count} images ({ds.source}) to {out}/ in {timer}")


if __name__ == "__main__":
    sys.exit(report_errors(main))
