import json

import numpy as np
import pytest
from PIL import Image

from toonvae.errors import ToonvaeError
from toonvae.prepare import crop_box, prepare, split_indices
from toonvae.sources.synthetic import generate


def test_split_is_deterministic_disjoint_and_complete():
    a = split_indices(1000, 0.1, 0.05, seed=7)
    b = split_indices(1000, 0.1, 0.05, seed=7)
    c = split_indices(1000, 0.1, 0.05, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (850, 100, 50)
    joined = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(joined.tolist()) == list(range(1000))


def test_crop_box_is_square_and_inside():
    assert crop_box(120, 100, "center", None) == (10, 0, 110, 100)
    left, top, right, bottom = crop_box(500, 500, "box", (0.2, 0.2, 0.8, 0.7))
    assert right - left == bottom - top == 250 and (left, top) == (125, 100)


def test_prepare_writes_arrays_manifest_attributes_and_skips_bad_files(tmp_path):
    raw = tmp_path / "raw"
    generate("cartoon", raw, 30, seed=0, size=96, workers=1)
    (raw / "cartoonset" / "empty.png").write_bytes(b"")
    (raw / "cartoonset" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("RGB", (8, 8), "red").save(raw / "cartoonset" / "tiny.png")
    Image.new("L", (64, 64), 128).save(raw / "cartoonset" / "gray.png")
    out = tmp_path / "prepared"
    m = prepare(raw, out, image_size=32, crop="box", box=(0.2, 0.17, 0.8, 0.77),
                val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=2)
    assert m["files"] == 34
    assert sorted(s["file"] for s in m["skipped"]) == [
        "cartoonset/broken.png", "cartoonset/empty.png", "cartoonset/tiny.png"]
    assert sum(m["counts"].values()) == 31
    for split, n in m["counts"].items():
        arr = np.load(out / f"{split}.npy", mmap_mode="r")
        assert arr.shape == (n, 3, 32, 32) and arr.dtype == np.uint8
    assert json.loads((out / "manifest.json").read_text()) == m
    rows = (out / "attributes.csv").read_text().splitlines()
    assert rows[0].startswith("split,index,file,") and "glasses" in rows[0]
    assert len(rows) == 1 + 30  # the gray image has no attribute CSV
    assert not (tmp_path / "prepared.tmp").exists()
    # the transparent background of every cartoon became white
    train = np.load(out / "train.npy")
    cartoon_rows = [int(r.split(",")[1]) for r in rows[1:] if r.startswith("train,")]
    assert len(cartoon_rows) > 15
    assert (train[cartoon_rows, :, 0, 0] == 255).all()


def test_prepare_refuses_a_mostly_broken_dataset(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(5):
        (raw / f"{i}.jpg").write_bytes(b"garbage %d" % i)
    Image.new("RGB", (64, 64)).save(raw / "ok.jpg")
    with pytest.raises(ToonvaeError, match="5 of 6 images are unusable"):
        prepare(raw, tmp_path / "out", image_size=32, crop="center", box=None,
                val_fraction=0.0, test_fraction=0.0, min_side=16, seed=0, workers=1)
    assert not (tmp_path / "out").exists()


def test_prepare_without_images_says_what_to_do(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(ToonvaeError, match="run the download stage"):
        prepare(tmp_path / "raw", tmp_path / "out", image_size=32, crop="center", box=None,
                val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)


@pytest.mark.parametrize("capacity, rows", [(5, 5), (5, 3), (100_000, 7), (3, 0)])
def test_npy_row_writer_gives_a_valid_npy_with_the_real_row_count(tmp_path, capacity, rows):
    from toonvae.prepare import NpyRowWriter

    w = NpyRowWriter(tmp_path / "a.npy", (3, 4, 4), capacity)
    data = np.random.default_rng(0).integers(0, 256, (rows, 3, 4, 4), dtype=np.uint8)
    for r in data:
        w.append(r)
    w.close()
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert loaded.shape == (rows, 3, 4, 4) and np.array_equal(loaded, data)
