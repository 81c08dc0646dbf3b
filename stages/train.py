"""train stage: fit the VAE on data/prepared/<dataset>/, write models/<dataset>/model.pt."""

import argparse
import sys

from toonvae import params
from toonvae.errors import report_errors
from toonvae.model import model_config
from toonvae.progress import Timer, log
from toonvae.train import TrainConfig, train


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset")
    args = ap.parse_args()
    p = params.load()
    p.dataset(args.dataset)
    timer = Timer()
    model_cfg = model_config(p)
    t = p.train
    cfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, beta=t.beta,
                      device=t.device, threads=t.threads, seed=p.seed)
    out = f"models/{args.dataset}/model.pt"
    result = train(f"data/prepared/{args.dataset}", out, f"metrics/curves/{args.dataset}",
                   model_cfg, cfg)
    log(f"train {args.dataset}: wrote {out} after {result['epochs']} epochs on "
        f"{result['images']} images in {timer}")


if __name__ == "__main__":
    sys.exit(report_errors(main))
