"""evaluate stage: test-split metrics of models/<dataset>/ into metrics/<dataset>.json."""

import json

from toonvae.data import PreparedData
from toonvae.files import write_text
from toonvae.metrics import evaluate, rounded
from toonvae.model import load_model
from toonvae.progress import log
from toonvae.runtime import pick_device, set_determinism
from toonvae.stage import dataset_stage, run


def main():
    name, p, timer = dataset_stage(__doc__)
    set_determinism(p.seed, p.train.threads)
    device = pick_device(p.train.device)
    model, _ = load_model(f"models/{name}", device)
    data = PreparedData(f"data/prepared/{name}")
    result = evaluate(model, data.split("test"), p.evaluate.batch_size, p.seed, device)
    counts = data.manifest["counts"]
    result.update({"n_train": counts["train"], "n_val": counts["val"],
                   "n_skipped": len(data.manifest["skipped"]),
                   "n_duplicates": len(data.manifest.get("duplicates", []))})
    out = f"metrics/{name}.json"
    write_text(out, json.dumps(rounded(result), indent=2) + "\n")
    log(f"evaluate {name}: wrote {out} ({result['n_test']} test images: "
        f"mse {result['mse']:.5f}, elbo {result['elbo_bpd']:.3f} bits/dim) in {timer}")


if __name__ == "__main__":
    run(main)
