"""render-figures stage: every picture of one dataset into figures/<dataset>/."""

from toonvae.stage import dataset_stage, pin_numerics, run

pin_numerics()  # before anything imports torch (toonvae.numerics)

from pathlib import Path

from toonvae import figures, latent_figures
from toonvae.data import PreparedData
from toonvae.errors import ToonvaeError
from toonvae.model import load_model
from toonvae.numerics import thread_count
from toonvae.progress import log
from toonvae.report import read_metrics
from toonvae.runtime import set_determinism


def main():
    name, p, timer = dataset_stage(__doc__)
    set_determinism(p.seed, thread_count(p.runtime.numerics, p.train.threads),
                    p.train.deterministic, p.runtime.numerics)
    f = p.figures
    data = PreparedData(f"data/prepared/{name}")
    model, _ = load_model(f"models/{name}")
    out = f"figures/{name}"
    figures.dataset_samples(data.split("train"), f"{out}/samples.png", f.samples, f.columns, p.seed)
    figures.reconstructions(model, data.split("test"), f"{out}/reconstruction.png",
                            f.reconstructions, f.columns, p.seed)
    figures.noise_samples(model, f"{out}/noise.png", f.noise, f.columns, p.seed)
    kl_file, metrics_file = Path(f"metrics/kl/{name}.csv"), Path(f"metrics/{name}.json")
    if not (kl_file.is_file() and metrics_file.is_file()):
        raise ToonvaeError(f"{kl_file} or {metrics_file} missing; run the evaluate stage first")
    kl = [float(row.split(",")[1]) for row in kl_file.read_text().splitlines()[1:]]
    active = read_metrics(metrics_file).get("active_units")
    figures.kl_per_dim(kl, active, f"{out}/kl_per_dim.png")
    figures.curves(f"metrics/curves/{name}", f"{out}/curves.png")
    test = data.split("test")
    latent_figures.interpolation(model, test, f"{out}/interpolation.png",
                                 f.interpolation_pairs, f.interpolation_steps, p.seed)
    latent_figures.traversal(model, test, kl, f"{out}/traversal.png", f.traversal_dims,
                             f.traversal_steps, p.seed)
    latent_figures.temperature(model, f"{out}/temperature.png", f.columns, f.temperatures,
                               p.seed)
    written = ["samples", "reconstruction", "noise", "kl_per_dim", "curves", "interpolation",
               "traversal", "temperature"]
    train_y, test_y = data.attributes("train"), data.attributes("test")
    if train_y is not None and test_y is not None and latent_figures.attribute_vectors(
            model, data.split("train"), train_y, test, test_y, data.manifest["attributes"],
            f.attributes, f"{out}/attributes.png", f.attribute_faces, p.seed):
        written.append("attributes")
    log(f"render-figures {name}: wrote {len(written)} figures ({', '.join(written)}) "
        f"to {out}/ in {timer}")


if __name__ == "__main__":
    run(main)
