"""preprocess stage: decode, crop, resize and split into data/prepared/<dataset>/."""

from toonvae.prepare import prepare
from toonvae.progress import log
from toonvae.stage import dataset_stage, run


def main():
    name, p, timer = dataset_stage(__doc__)
    ds = p.dataset(name)
    out = f"data/prepared/{name}"
    m = prepare(f"data/raw/{name}", out, image_size=p.image_size, crop=ds.crop,
                box=ds.crop_box, val_fraction=p.preprocess.val_fraction,
                test_fraction=p.preprocess.test_fraction, min_side=p.preprocess.min_side,
                seed=p.seed, max_bad_fraction=p.preprocess.max_bad_fraction)
    c = m["counts"]
    skipped = ", ".join(f"{n} {why}" for why, n in m["skipped_by_reason"].items()) or "none"
    log(f"preprocess {name}: wrote {c['train']}/{c['val']}/{c['test']} train/val/test "
        f"images of {p.image_size} px to {out}/ in {timer}; skipped: {skipped}; "
        f"duplicates dropped: {len(m['duplicates'])} (details in {out}/manifest.json)")


if __name__ == "__main__":
    run(main)
