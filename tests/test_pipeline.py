"""End to end: the real dvc.yaml on tiny params, run by real DVC in a temp git repo."""

import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import run
from toonvae.report import read_metrics
from toonvae.swd import SlicedWasserstein

pytestmark = pytest.mark.slow
DATASETS = ("anime", "cartoon", "myfaces")


def faces_folder(root: Path) -> Path:
    """Faces the project has never seen, with broken files mixed in, as a user's folder."""
    from toonvae.sources.synthetic import generate

    generate("cartoon", root / "tmp", 64, seed=123, size=80, workers=1)
    faces = root / "myfaces"
    faces.mkdir()
    for i, png in enumerate(sorted((root / "tmp" / "cartoonset").glob("*.png"))):
        png.rename(faces / f"face_{i:03d}.png")  # no attribute CSVs: plain images
    (faces / "empty.png").write_bytes(b"")
    (faces / "truncated.png").write_bytes((faces / "face_000.png").read_bytes()[:500])
    (faces / "fake.png").write_text("not an image")
    (faces / "notes.txt").write_text("a file that is not an image at all")
    Image.new("RGB", (8, 8)).save(faces / "tiny.png")
    return faces


def tiny_params(repo: Path) -> None:
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p.update(image_size=32, latent_dim=4)
    # A third dataset from a local folder: no code change, one params entry.
    p["datasets"]["myfaces"] = {"source": "folder", "path": str(faces_folder(repo.parent)),
                                "crop": "center"}
    for name in ("anime", "cartoon"):
        p["datasets"][name]["count"] = 60
        p["datasets"][name]["raw_size"] = 96 if name == "cartoon" else 48
    p["preprocess"].update(val_fraction=0.1, test_fraction=0.1, min_side=16)
    p["model"]["channels"] = [8, 8, 16, 16]
    p["train"].update(epochs=2, batch_size=16, threads=1)
    p["figures"].update(samples=8, reconstructions=8, noise=8, columns=4)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def dvc_env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                DVC_NO_ANALYTICS="1")


def dvc(args, repo, check=True):
    return run([sys.executable, "-m", "dvc", *args], repo, check=check, env=dvc_env())


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def read_all_metrics(repo):
    return {n: read_metrics(repo / "metrics" / f"{n}.json") for n in DATASETS}


def test_repro_reproduce_and_experiment(repo_copy):
    repo = repo_copy
    tiny_params(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny params"], repo)
    out = dvc(["repro"], repo)
    assert stages_run(out.stdout) == {f"{s}@{d}" for s in ("download", "preprocess", "train",
                                                           "evaluate", "render-figures")
                                      for d in DATASETS} | {"render-architecture"}
    # Each stage ends with one line: what it wrote, how many, how long.
    log = out.stdout + out.stderr
    for line in (r"download anime: wrote 60 images \(synthetic\) to data/raw/anime/",
                 r"preprocess cartoon: wrote 48/6/6 train/val/test images of 32 px",
                 r"train anime: wrote models/anime/model.pt after 2 epochs on 48 images "
                 r"\(batch 16\) in \d+\.\ds; \d+\.\d% outside epochs \(epochs \d+\.\ds, "
                 r"validation \d+\.\ds, logging \d+\.\ds, checkpoints \d+\.\ds, log-scale fit "
                 r"\d+\.\ds, posterior means \d+\.\ds, mixture fit \d+\.\ds, save \d+\.\ds, "
                 r"other \d+\.\ds\)",
                 r"evaluate cartoon: wrote metrics/cartoon.json and metrics/kl/cartoon.csv",
                 r"render-figures cartoon: wrote 9 figures", r"render-architecture: wrote"):
        assert re.search(line if "outside" in line else line + r".* in \d+\.\ds", log), line

    for name in DATASETS:
        m = read_metrics(repo / "metrics" / f"{name}.json")
        for key in ("mse", "psnr", "ssim", "kl", "elbo_bpd", "iwae_bpd", "swd", "swd_prior",
                    "swd_gmm", "swd_floor"):
            assert isinstance(m[key], float) and math.isfinite(m[key]), (name, key)
        assert 0 < m["mse"] < 1 and 0 < m["ssim"] <= 1 and m["elbo_bpd"] > 0
        assert 0 < m["iwae_bpd"] < m["elbo_bpd"] and m["iwae_k"] == 128
        assert 0 <= m["active_units"] <= 4 and m["sampler"] == "gmm" and m["swd"] == m["swd_gmm"]
        assert m["fid"] is None  # no Inception weights on this machine
        attrs = [m[k] for k in ("attr_probe_acc", "attr_recon_acc", "attr_orig_acc",
                                "attr_chance_acc")]
        if name == "cartoon":
            assert all(0 <= a <= 1 for a in attrs), attrs
        else:
            assert attrs == [None] * 4, (name, attrs)
        kl_rows = (repo / "metrics" / "kl" / f"{name}.csv").read_text().splitlines()
        assert kl_rows[0] == "dim,kl" and len(kl_rows) == 1 + 4
        # Uniform noise must score worse than the model's samples against the same test images.
        test = torch.from_numpy(np.load(repo / "data" / "prepared" / name / "test.npy")).float() / 255
        noise = torch.rand((m["swd_images"], *test.shape[1:]), generator=torch.Generator().manual_seed(0))
        assert SlicedWasserstein(test[:m["swd_images"]], seed=0)(noise) > m["swd"], name
        counts = (m["n_train"], m["n_val"], m["n_test"])
        if name == "myfaces":  # 64 faces + 4 broken image files, split before decoding
            assert sum(counts) == 64 and min(counts) >= 5, counts
        else:
            assert counts == (48, 6, 6), (name, counts)
        figs = ["samples", "reconstruction", "noise", "kl_per_dim", "curves", "interpolation",
                "traversal", "temperature"] + (["attributes"] if name == "cartoon" else [])
        assert sorted(p.stem for p in (repo / "figures" / name).glob("*.png")) == sorted(figs)
        for fig in figs:
            im = Image.open(repo / "figures" / name / f"{fig}.png")
            assert im.format == "PNG" and im.width > 4 * 32
            assert np.asarray(im).std() > 5, f"{name}/{fig}.png is blank"
        curves = repo / "metrics" / "curves" / name / "plots" / "metrics"
        rows = (curves / "train" / "loss.tsv").read_text().splitlines()
        assert rows[0].split("\t") == ["step", "loss"] and len(rows) == 3
        assert (curves / "val" / "loss.tsv").is_file()
        assert (repo / "models" / name / "model.pt").is_file()
        assert np.load(repo / "data" / "prepared" / name / "train.npy").shape == (counts[0], 3, 32, 32)
    manifest = json.loads((repo / "data" / "prepared" / "myfaces" / "manifest.json").read_text())
    assert manifest["skipped_by_reason"] == {"empty file": 1, "not an image": 1, "too small": 1,
                                             "truncated": 1}
    assert read_metrics(repo / "metrics" / "myfaces.json")["n_skipped"] == 4
    assert Image.open(repo / "figures" / "vae.png").width > 500
    plots = dvc(["plots", "show", "--json"], repo).stdout
    assert "figures/anime/reconstruction.png" in plots and "metrics/kl/cartoon.csv" in plots
    assert dvc(["status", "--json"], repo).stdout.strip() in ("{}", "")

    # Same params, same machine: a forced rerun reproduces every committed byte.
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    dvc(["repro", "-f"], repo)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""

    # An experiment on latent_dim reruns only what depends on it.
    before = read_all_metrics(repo)
    out = dvc(["exp", "run", "-S", "latent_dim=8"], repo)
    ran = stages_run(out.stdout)
    assert ran == {f"{s}@{d}" for s in ("train", "evaluate", "render-figures")
                   for d in DATASETS} | {"render-architecture"}, ran
    after = read_all_metrics(repo)
    assert all(before[n]["elbo_bpd"] != after[n]["elbo_bpd"] for n in DATASETS)
    diff = json.loads(dvc(["metrics", "diff", "--json"], repo).stdout)
    assert "metrics/anime.json" in diff and "anime.elbo_bpd" in diff["metrics/anime.json"]
    show = json.loads(dvc(["exp", "show", "--json"], repo).stdout)
    assert "latent_dim" in json.dumps(show) and "elbo_bpd" in json.dumps(show)
