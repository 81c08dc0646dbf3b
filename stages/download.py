"""download stage: raw images of one dataset into data/raw/<dataset>/."""

from toonvae import sources
from toonvae.progress import log
from toonvae.stage import dataset_stage, run


def main():
    name, p, timer = dataset_stage(__doc__)
    ds = p.dataset(name)
    out = f"data/raw/{name}"
    count = sources.download(ds, out, seed=p.seed, key=f"datasets.{name}")
    log(f"download {name}: wrote {count} images ({ds.source}) to {out}/ in {timer}")


if __name__ == "__main__":
    run(main)
