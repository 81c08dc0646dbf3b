"""benchmarks/gpu_pipeline.py on the CPU: a tiny Kaggle-shaped `dvc repro` in a clone of HEAD,
through the same code path the GPU measurement takes; and what a 256 px run draws."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_pipeline_tiny_runs_the_whole_pipeline_and_reads_its_summaries(tmp_path):
    """The script's smoke test: a tiny `dvc repro` in a clone of HEAD, its table made from
    the stages' machine-readable summaries (toonvae.progress.summary)."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_pipeline", "--tiny",
                           "--datasets", "cartoon", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["image_size"] == 32 and r["epochs"] == 1
    assert {f"{s}@cartoon" for s in ("download", "preprocess", "train", "evaluate",
                                     "render-figures")} <= set(r["repro"]["stages"])
    t = r["train"]["cartoon"]
    # The train stage's summary: batch auto is 32 on a CPU, capped by the data.
    assert t["images"] == 36 and t["batch"] == 32 and t["images_per_s"] > 0
    assert 0 < t["outside_epochs"] < 1
    assert {"epochs", "validation", "log-scale fit", "posterior means", "mixture fit",
            "save", "other"} <= set(t["parts_s"])
    assert t["stage_s"] >= sum(t["parts_s"].values()) - 0.5  # the parts add up to the stage
    m = r["metrics"]["cartoon"]
    assert 0 < m["mse"] < 1 and 0 < m["iwae_bpd"] < m["elbo_bpd"] and m["swd"] > 0
    assert "| cartoon | 36 | 32 |" in proc.stdout
    assert "| stage | seconds |" in proc.stdout and "train@cartoon" in proc.stdout


def test_256_px_models_have_six_stages_and_legible_figures(tmp_path):
    """What a 256 px run draws (a random model: the shapes, not the faces, are checked)."""
    import torch

    from toonvae import figures, latent_figures
    from toonvae.archs import ModelConfig, build

    torch.manual_seed(0)
    model = build(ModelConfig("resnet", 256, 4, channels=(8, 8, 8, 8))).eval()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (4, 4) and m.stride == (2, 2)]
    assert len(convs) == 6  # six 4x4/2 stages down to 4x4
    faces = np.random.default_rng(0).integers(0, 256, (4, 3, 256, 256), dtype=np.uint8)
    figures.reconstructions(model, faces, tmp_path / "reconstruction.png", 4, 4, 0)
    recon = Image.open(tmp_path / "reconstruction.png")
    assert recon.width == 4 * 256 + 5 * 2  # four columns of full-size faces, not shrunk
    # Labelled rows shrink 256 px faces to 128 px, so their labels stay readable.
    latent_figures.temperature(model, tmp_path / "temperature.png", 4, (0.5, 1.0), 0)
    width = Image.open(tmp_path / "temperature.png").width
    assert 4 * 130 < width < 4 * 130 + 200, width
