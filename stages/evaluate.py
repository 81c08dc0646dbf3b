"""evaluate stage: test-split metrics of models/<dataset>/ into metrics/<dataset>.json,
and the KL of each latent dimension into metrics/kl/<dataset>.csv (a dvc plot)."""

from toonvae.stage import dataset_stage, pin_numerics, run

pin_numerics()  # before anything imports torch (toonvae.numerics)

import json

from toonvae.archs import choose_sampler
from toonvae.data import PreparedData
from toonvae.evaluation import evaluate
from toonvae.files import write_text
from toonvae.metrics import rounded
from toonvae.model import load_model
from toonvae.numerics import platform, thread_count
from toonvae.progress import summary
from toonvae.report import metrics_document
from toonvae.runtime import pick_device, set_determinism


def main():
    name, p, timer = dataset_stage(__doc__)
    set_determinism(p.seed, thread_count(p.runtime.numerics, p.train.threads),
                    p.train.deterministic, p.runtime.numerics)
    device = pick_device(p.train.device)
    model, blob = load_model(f"models/{name}", device)
    data = PreparedData(f"data/prepared/{name}")
    sampler = choose_sampler(p.sampler.kind, model)
    result, kl_per_dim = evaluate(model, data, p.evaluate, sampler, p.seed, device)
    counts = data.manifest["counts"]
    result.update({"n_train": counts["train"], "n_val": counts["val"],
                   "n_skipped": len(data.manifest["skipped"]),
                   "n_duplicates": len(data.manifest.get("duplicates", []))})
    out = f"metrics/{name}.json"
    write_text(out, json.dumps(metrics_document(name, rounded(result)), indent=2) + "\n")
    # What computed the numbers: the same on every machine that should agree.
    write_text(f"metrics/platform/{name}.json", json.dumps(
        {"train": blob.get("platform"), "evaluate": platform(p.runtime.numerics)},
        indent=2) + "\n")
    write_text(f"metrics/kl/{name}.csv", "dim,kl\n" + "".join(
        f"{d},{kl:.6g}\n" for d, kl in enumerate(kl_per_dim)))
    seconds = timer.seconds
    summary(f"evaluate {name}: wrote {out} and metrics/kl/{name}.csv ({result['n_test']} test "
            f"images: mse {result['mse']:.5f}, elbo {result['elbo_bpd']:.3f}, iwae "
            f"{result['iwae_bpd']:.3f} bits/dim, swd {_one(result['swd'])}, floor "
            f"{result['swd_floor']:.1f}) in {seconds:.1f}s",
            stage="evaluate", dataset=name, out=out, seconds=seconds, sampler=sampler)


def _one(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    run(main)
