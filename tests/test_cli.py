"""The `toonvae` command and the Python API, end to end on a tiny trained model."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import built_once
from PIL import Image

import toonvae
from toonvae.archs import ModelConfig
from toonvae.cli import main
from toonvae.prepare import prepare
from toonvae.sources.synthetic import generate
from toonvae.train import TrainConfig, train


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """models/cartoon and data/prepared/cartoon of a tiny run, in the DVC layout: built once
    per session (the tests only read it)."""
    def build(root):
        generate("cartoon", root / "raw", 120, seed=0, size=64, workers=1)
        prepare(root / "raw", root / "data" / "prepared" / "cartoon", image_size=32,
                crop="box", box=(0.1, 0.08, 0.9, 0.88), val_fraction=0.1, test_fraction=0.1,
                min_side=16, seed=0, workers=1)
        cfg = TrainConfig(epochs=2, batch_size=16, lr=None, beta=1.0, device="cpu", threads=1,
                          seed=0, gmm_components=3)
        train(root / "data" / "prepared" / "cartoon", root / "models" / "cartoon" / "model.pt",
              root / "curves", ModelConfig("resnet", 32, 4, channels=(8, 8, 16, 16)), cfg)

    root = built_once(tmp_path_factory, "cli-project", build)
    return root, sorted((root / "raw" / "cartoonset").glob("*.png"))[:3]


def cli(*args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_names_architecture_samplers_and_data(project, capsys):
    root, _ = project
    code, out, _ = cli("info", "--model", root / "models" / "cartoon", capsys=capsys)
    info = json.loads(out)
    assert code == 0 and info["config"]["latent_dim"] == 4 and info["samplers"] == ["prior", "gmm"]
    assert info["data"]["train"] == 96 and info["parameters"] > 1000


def test_sample_grid_and_individual_files_are_seeded(project, capsys, tmp_path):
    root, _ = project
    model = root / "models" / "cartoon"
    for name in ("a.png", "b.png"):
        assert cli("sample", "--model", model, "--n", 6, "--temperature", 0.8, "--seed", 1,
                   "--columns", 3, "--out", tmp_path / name, capsys=capsys)[0] == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "b.png"))
    assert np.array_equal(a, b) and a.std() > 1
    assert cli("sample", "--model", model, "--n", 5, "--format", "individual", "--sampler",
               "prior", "--out", tmp_path / "many", capsys=capsys)[0] == 0
    files = sorted((tmp_path / "many").glob("*.png"))
    assert len(files) == 5 and Image.open(files[0]).size == (32, 32)


def test_reconstruct_and_interpolate_take_any_image_files(project, capsys, tmp_path):
    root, faces = project
    model = root / "models" / "cartoon"
    big = tmp_path / "big.jpg"  # another size and format than the training files
    Image.open(faces[0]).convert("RGB").resize((300, 300)).save(big)
    code, _, err = cli("reconstruct", "--model", model, faces[1], big, "--out",
                       tmp_path / "r.png", capsys=capsys)
    assert code == 0 and "wrote 4 originals and reconstructions" in err
    assert Image.open(tmp_path / "r.png").size[0] > 2 * 32
    code, _, _ = cli("interpolate", "--model", model, faces[0], faces[2], "--steps", 5,
                     "--spherical", "--out", tmp_path / "i.png", capsys=capsys)
    assert code == 0


def test_python_api(project):
    root, faces = project
    vae = toonvae.load(root / "models" / "cartoon")
    assert vae.preprocess["crop"] == "box"  # read from the prepared data's manifest
    assert vae.sample(4).shape == (4, 3, 32, 32)
    z = vae.encode(faces)
    assert z.shape == (3, 4)
    strip = vae.interpolate(faces[0], faces[1], steps=6)
    assert strip.shape == (6, 3, 32, 32)
    assert torch.allclose(strip[0], vae.reconstruct(faces[:1])[0], atol=1e-5)
    images = vae.load_images(faces)
    assert images.dtype == np.uint8 and torch.allclose(vae.encode(images), z)


def test_errors_are_one_line(project, capsys, tmp_path):
    root, faces = project
    model = root / "models" / "cartoon"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    bad_model = tmp_path / "bad" / "model.pt"
    bad_model.parent.mkdir()
    blob = torch.load(model / "model.pt", weights_only=True)
    blob["config"]["latent_dim"] = 9
    torch.save(blob, bad_model)
    cases = [
        (["info", "--model", tmp_path / "nope"], "no model file; run the train stage first"),
        (["sample", "--model", bad_model.parent, "--out", tmp_path / "x.png"],
         "weights do not match the architecture"),
        (["reconstruct", "--model", model, broken, "--out", tmp_path / "x.png"],
         "broken.png: cannot use this image (not an image"),
        (["reconstruct", "--model", model, tmp_path / "missing.png", "--out", tmp_path / "x.png"],
         "missing.png: no such image file"),
        (["sample", "--model", model, "--n", "0", "--out", tmp_path / "x.png"],
         "n must be >= 1"),
        (["sample", "--model", model, "--n", "many", "--out", tmp_path / "x.png"],
         "argument --n: invalid int value: 'many'"),
        (["interpolate", "--model", model, faces[0], "--out", tmp_path / "x.png"],
         "the following arguments are required: b"),
        (["sample", "--model", model], "the following arguments are required: --out"),
    ]
    for args, message in cases:
        code, out, err = cli(*args, capsys=capsys)
        assert code == 2, args
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


def test_the_console_script_has_help_for_each_subcommand(project):
    exe = shutil.which("toonvae", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the toonvae console script is not installed"
    for sub in ("sample", "reconstruct", "interpolate", "info"):
        proc = subprocess.run([exe, sub, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "--model" in proc.stdout, sub
