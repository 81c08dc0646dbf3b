import csv
import hashlib

import numpy as np
from PIL import Image

from toonvae.sources.synthetic import CARTOON_ATTRIBUTES, generate


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_faces(tmp_path):
    for style in ("anime", "cartoon"):
        generate(style, tmp_path / "a" / style, 12, seed=3, size=96, workers=1)
        generate(style, tmp_path / "b" / style, 12, seed=3, size=96, workers=2)
        generate(style, tmp_path / "c" / style, 12, seed=4, size=96, workers=1)
        assert digest(tmp_path / "a" / style) == digest(tmp_path / "b" / style)
        assert digest(tmp_path / "a" / style) != digest(tmp_path / "c" / style)


def test_face_i_does_not_depend_on_the_count(tmp_path):
    generate("cartoon", tmp_path / "few", 3, seed=1, size=64, workers=1)
    generate("cartoon", tmp_path / "many", 9, seed=1, size=64, workers=1)
    name = "cartoonset/cs00000002.png"
    assert (tmp_path / "few" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


def test_cartoon_layout_matches_the_cartoon_set(tmp_path):
    generate("cartoon", tmp_path, 40, seed=0, size=128, workers=1)
    pngs = sorted((tmp_path / "cartoonset").glob("*.png"))
    assert len(pngs) == 40
    im = Image.open(pngs[0])
    assert im.mode == "RGBA" and im.size == (128, 128)
    alpha = np.asarray(im)[..., 3]
    assert alpha[0, 0] == 0 and alpha[64, 64] == 255  # transparent background, opaque face
    assert len(CARTOON_ATTRIBUTES) >= 8
    seen = {k: set() for k in CARTOON_ATTRIBUTES}
    for png in pngs:
        rows = list(csv.reader(png.with_suffix(".csv").open(), skipinitialspace=True))
        assert [r[0] for r in rows] == list(CARTOON_ATTRIBUTES)
        for name, value, count in rows:
            assert 0 <= int(value) < int(count) == CARTOON_ATTRIBUTES[name]
            seen[name].add(int(value))
    assert all(len(v) >= 2 for v in seen.values()), seen


def test_anime_layout_matches_the_kaggle_crops(tmp_path):
    generate("anime", tmp_path, 20, seed=0, size=104, workers=1)
    jpgs = sorted((tmp_path / "images").glob("*.jpg"))
    assert len(jpgs) == 20
    sizes = set()
    for p in jpgs:
        im = Image.open(p)
        assert im.format == "JPEG" and im.mode == "RGB" and im.width == im.height
        assert 89 <= im.width <= 119
        sizes.add(im.width)
    assert len(sizes) > 3
    # a coloured background, not a blank canvas: corners differ between faces
    corners = {tuple(np.asarray(Image.open(p))[2, 2] // 16) for p in jpgs}
    assert len(corners) > 5
