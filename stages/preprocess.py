"""preprocess stage: decode, crop, resize and split into data/prepared/<dataset>/."""

import argparse
import sys

from toonvae import params
from toonvae.errors import report_errors
from toonvae.prepare import prepare
from toonvae.progress import Timer, log


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset")
    args = ap.parse_args()
    p = params.load()
    ds = p.dataset(args.dataset)
    timer = Timer()
    out = f"data/prepared/{args.dataset}"
    m = prepare(f"data/raw/{args.dataset}", out, image_size=p.image_size, crop=ds.crop,
                box=ds.crop_box, val_fraction=p.preprocess.val_fraction,
                test_fraction=p.preprocess.test_fraction, min_side=p.preprocess.min_side,
                seed=p.seed)
    c = m["counts"]
    log(f"preprocess {args.dataset}: wrote {c['train']}/{c['val']}/{c['test']} train/val/test "
        f"images of {p.image_size} px to {out}/, skipped {len(m['skipped'])}, in {timer}")


if __name__ == "__main__":
    sys.exit(report_errors(main))
