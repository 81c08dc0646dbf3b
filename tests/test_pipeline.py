"""End to end: the real dvc.yaml on tiny params, run by real DVC in a temp git repo.

The pipeline is run once per test session (conftest's ``tiny_pipeline``); tests that
change something work on a copy of it."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import copy_repo, dvc_env, run
from toonvae.experiments import experiment_refs
from toonvae.report import read_metrics
from toonvae.swd import SlicedWasserstein

pytestmark = pytest.mark.slow
DATASETS = ("cartoon", "myfaces")
# What another x86-64 CPU looks like to code that picks its kernels itself: one core
# instead of two, and no AVX2 for torch, oneDNN, MKL, OpenBLAS or numpy.
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Prescott",
             "NPY_DISABLE_CPU_FEATURES": "X86_V3"}
ONE_CORE = ("taskset", "-c", "0")


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
    # A dataset from a local folder: no code change, one params entry.
    p["datasets"]["myfaces"] = {"source": "folder", "path": str(faces_folder(repo.parent)),
                                "crop": "center"}
    # Two datasets: cartoon's labelled attributes, and a folder of someone's own faces.
    del p["datasets"]["anime"]
    p["datasets"]["cartoon"].update(count=60, raw_size=96)
    p["preprocess"].update(val_fraction=0.1, test_fraction=0.1, min_side=16)
    p["model"]["channels"] = [8, 8, 16, 16]
    p["train"].update(epochs=2, batch_size=16)  # threads: portable numerics' fixed 2
    p["figures"].update(samples=8, reconstructions=8, noise=8, columns=4)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def dvc(args, repo, check=True, env=None, prefix=()):
    return run([*prefix, sys.executable, "-m", "dvc", *args], repo, check=check,
               env=dict(dvc_env(), **(env or {})))


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def build_tiny_pipeline(repo: Path) -> str:
    """tiny_params, committed; ``dvc repro``; its results committed. Returns its output."""
    tiny_params(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny params"], repo)
    out = dvc(["repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)
    return out.stdout + out.stderr


def read_all_metrics(repo):
    return {n: read_metrics(repo / "metrics" / f"{n}.json") for n in DATASETS}


def test_repro_runs_every_stage_and_each_says_what_it_did(tiny_pipeline):
    repo, log = tiny_pipeline
    assert stages_run(log) == {f"{s}@{d}" for s in ("download", "preprocess", "train",
                                                    "evaluate", "render-figures")
                               for d in DATASETS} | {"render-architecture"}
    # Each stage ends with one line: what it wrote, how many, how long.
    for line in (r"download cartoon: wrote 60 images \(synthetic\) to data/raw/cartoon/",
                 r"preprocess cartoon: wrote 48/6/6 train/val/test images of 32 px",
                 r"train cartoon: wrote models/cartoon/model.pt after 2 epochs on 48 images "
                 r"\(batch 16\) in \d+\.\ds; \d+\.\d% outside epochs \(epochs \d+\.\ds, "
                 r"validation \d+\.\ds, logging \d+\.\ds, checkpoints \d+\.\ds, log-scale fit "
                 r"\d+\.\ds, posterior means \d+\.\ds, mixture fit \d+\.\ds, save \d+\.\ds, "
                 r"other \d+\.\ds\)",
                 r"evaluate cartoon: wrote metrics/cartoon.json and metrics/kl/cartoon.csv",
                 r"render-figures cartoon: wrote 9 figures", r"render-architecture: wrote"):
        assert re.search(line if "outside" in line else line + r".* in \d+\.\ds", log), line
    assert "warning" not in log.lower(), log


def test_bytecode_python_writes_next_to_the_sources_changes_no_stage(tiny_pipeline, tmp_path):
    # A stage's deps include source folders (src/toonvae/archs, .../sources), and a user's
    # Python writes __pycache__ into them on first import (the editable install imports
    # from src/). Without .dvcignore, every stage would then read as changed.
    import compileall

    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    assert compileall.compile_dir(repo / "src", quiet=1)
    assert any((repo / "src" / "toonvae" / "archs" / "__pycache__").glob("*.pyc"))
    assert "up to date" in dvc(["status"], repo).stdout


def test_metrics_figures_and_plots_of_every_dataset(tiny_pipeline):
    repo, _ = tiny_pipeline
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
        # What computed the numbers, for the record: the same on machines that agree.
        record = json.loads((repo / "metrics" / "platform" / f"{name}.json").read_text())
        # The train stage's also says whether this CPU's arithmetic is the committed CPU's
        # (toonvae.fingerprint); which it is depends on the CPU the suite runs on.
        arithmetic = record["train"].pop("arithmetic")
        assert arithmetic.startswith(("the committed results' arithmetic",
                                      "differs from the committed results' CPU")), arithmetic
        for stage in ("train", "evaluate"):
            assert record[stage] == {"numerics": "portable", "torch": torch.__version__.split("+")[0],
                                     "numpy": np.__version__, "cpu_kernels": "AVX2",
                                     "threads": 2}, record
    manifest = json.loads((repo / "data" / "prepared" / "myfaces" / "manifest.json").read_text())
    assert manifest["skipped_by_reason"] == {"empty file": 1, "not an image": 1, "too small": 1,
                                             "truncated": 1}
    assert read_metrics(repo / "metrics" / "myfaces.json")["n_skipped"] == 4
    assert Image.open(repo / "figures" / "vae.png").width > 500
    plots = dvc(["plots", "show", "--json"], repo).stdout
    assert "figures/cartoon/reconstruction.png" in plots and "metrics/kl/cartoon.csv" in plots
    assert dvc(["status", "--json"], repo).stdout.strip() in ("{}", "")


def test_exp_show_and_metrics_show_lead_with_the_evaluation(tiny_pipeline):
    repo, _ = tiny_pipeline
    header = dvc(["exp", "show", "--csv"], repo).stdout.splitlines()[0].split(",")
    metrics = header[header.index("parent") + 1:]
    assert metrics[:5] == ["cartoon.mse", "cartoon.elbo_bpd", "cartoon.iwae_bpd", "cartoon.swd",
                           "cartoon.swd_floor"], header
    # No dvclive curve summaries (train.loss, val.recon, ...), no file-prefixed names.
    assert not [c for c in header if re.fullmatch(r"(train|val)\.(loss|recon|kl)", c)
                or ":" in c], header
    assert "runtime.numerics" in header  # the numerics mode, among the params
    # The narrow view docs/guides/experiments.md gives for a terminal without a pager.
    narrow = dvc(["exp", "show", "--no-pager", "--drop", ".*", "--keep",
                  r"Experiment|cartoon\.(mse|swd)$|latent_dim"], repo,
                 env={"COLUMNS": "120"}).stdout
    assert re.search(r"Experiment +cartoon\.mse +cartoon\.swd +latent_dim", narrow), narrow
    assert "workspace" in narrow and "…" not in narrow, narrow
    shown = json.loads(dvc(["metrics", "show", "--json"], repo).stdout)
    files = [f for rev in shown.values() for f in rev["data"]]
    assert sorted(files) == ["metrics/cartoon.json", "metrics/myfaces.json"], files


def test_native_numerics_differ_on_another_cpu(tiny_pipeline, tmp_path):
    # Portable numerics give the committed bytes on another CPU (test_experiments: the
    # queue's rerun of the committed params); in native mode another CPU gives other bytes,
    # so that check has teeth.
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["runtime"]["numerics"] = "native"
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    model = repo / "models" / "cartoon" / "model.pt"
    models = []
    for env, prefix in (({}, ()), (OTHER_CPU, ONE_CORE)):
        run([*prefix, sys.executable, "stages/train.py", "cartoon"], repo,
            env=dict(dvc_env(), **env))
        models.append(model.read_bytes())
    assert models[0] != models[1]


def test_an_hvae_experiment_runs_end_to_end(tiny_pipeline, tmp_path):
    # A latent_dim that does not fit is refused by build (test_hvae), in one line like any
    # stage error (test_failures); render-architecture only builds and draws (test_hvae).
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    before = read_all_metrics(repo)["cartoon"]
    out = dvc(["exp", "run", "-S", "model.arch=hvae", "-S", "latent_dim=84",
               "-S", "sampler.flow_levels=2", "render-figures@cartoon"], repo)
    assert stages_run(out.stdout) == {"train@cartoon", "evaluate@cartoon",
                                      "render-figures@cartoon"}
    assert "training hvae VAE" in out.stdout + out.stderr
    m = read_metrics(repo / "metrics" / "cartoon.json")
    assert m["iwae_bpd"] < m["elbo_bpd"] and m["mse"] != before["mse"]
    assert m["sampler"] == "prior" and m["swd"] == m["swd_prior"]  # sampler.kind: auto
    assert m["swd_prior"] > 0 and m["swd_gmm"] > 0 and m["kl"] > 0
    assert m["swd_flow"] > 0 and m["fd_flow"] > 0  # the learned prior of its top 2 levels
    assert "learned prior over 2x2, 4x4" in out.stdout + out.stderr  # 32 px: 2x2 on top
    kl = (repo / "metrics" / "kl" / "cartoon.csv").read_text().splitlines()
    assert len(kl) == 1 + 84
    for figure in ("reconstruction", "samples", "temperature", "traversal", "interpolation",
                   "attributes"):
        assert (repo / "figures" / "cartoon" / f"{figure}.png").stat().st_size > 1000, figure
    # Saved as an experiment (what `dvc exp show` lists; its layout is tested above).
    saved, = experiment_refs(repo)
    assert "arch: hvae" in run(["git", "show", f"{saved}:params.yaml"], repo).stdout


def test_an_experiment_reruns_only_what_depends_on_its_change(tiny_pipeline, tmp_path):
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    before = read_metrics(repo / "metrics" / "cartoon.json")
    # One dataset's chain (both run the same stage templates; each stage process costs
    # seconds of torch import).
    out = dvc(["exp", "run", "-S", "sampler.kind=prior", "render-figures@cartoon"], repo)
    ran = stages_run(out.stdout)
    # The sampler is read by evaluate (and so the figures after it): nothing upstream reruns.
    assert ran == {"evaluate@cartoon", "render-figures@cartoon"}, ran
    after = read_metrics(repo / "metrics" / "cartoon.json")
    assert after["sampler"] == "prior" and after["swd"] == before["swd_prior"]
    assert after["fd"] == before["fd_prior"] and before["swd_flow"] is None  # no flow fitted
    diff = json.loads(dvc(["metrics", "diff", "--json"], repo).stdout)
    changed = set(diff["metrics/cartoon.json"])
    assert "cartoon.swd" in changed and "cartoon.mse" not in changed, diff
    show = json.loads(dvc(["exp", "show", "--json"], repo).stdout)
    assert '"kind": "prior"' in json.dumps(show) and '"swd_prior"' in json.dumps(show)


def test_the_learned_prior_is_one_experiment_away(tiny_pipeline, tmp_path):
    """dvc exp run -S sampler.kind=flow -S sampler.flow_levels=1: train fits the flow
    (the VAE's weights are those of the committed run: the fit comes after training),
    evaluate scores it as the sampler; without the flow, evaluate says what to set."""
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    before = read_metrics(repo / "metrics" / "cartoon.json")
    failed = dvc(["exp", "run", "-S", "sampler.kind=flow", "evaluate@cartoon"], repo,
                 check=False)
    assert failed.returncode != 0
    assert ("error: this model has no learned prior for sampler 'flow'; retrain it with "
            "sampler.flow_levels above 0") in failed.stdout + failed.stderr
    out = dvc(["exp", "run", "-S", "sampler.kind=flow", "-S", "sampler.flow_levels=1",
               "evaluate@cartoon"], repo)
    assert stages_run(out.stdout) == {"train@cartoon", "evaluate@cartoon"}
    assert re.search(r"learned prior over all \(\d+ dims\): held-out NLL",
                     out.stdout + out.stderr)
    after = read_metrics(repo / "metrics" / "cartoon.json")
    assert after["sampler"] == "flow" and after["swd"] == after["swd_flow"] > 0
    assert after["fd"] == after["fd_flow"] > 0
    assert after["mse"] == before["mse"] and after["swd_gmm"] == before["swd_gmm"]
