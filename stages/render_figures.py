"""render-figures stage: the README pictures of one dataset into figures/<dataset>/."""

from toonvae import figures
from toonvae.data import PreparedData
from toonvae.model import load_model
from toonvae.progress import log
from toonvae.runtime import set_determinism
from toonvae.stage import dataset_stage, run


def main():
    name, p, timer = dataset_stage(__doc__)
    set_determinism(p.seed, p.train.threads)
    f = p.figures
    data = PreparedData(f"data/prepared/{name}")
    model, _ = load_model(f"models/{name}")
    out = f"figures/{name}"
    figures.dataset_samples(data.split("train"), f"{out}/samples.png", f.samples, f.columns, p.seed)
    figures.reconstructions(model, data.split("test"), f"{out}/reconstruction.png",
                            f.reconstructions, f.columns, p.seed)
    figures.noise_samples(model, f"{out}/noise.png", f.noise, f.columns, p.seed)
    log(f"render-figures {name}: wrote samples.png, reconstruction.png, noise.png "
        f"to {out}/ in {timer}")


if __name__ == "__main__":
    run(main)
