"""benchmarks/gpu_pipeline.py end to end on the CPU: a tiny Kaggle-shaped `dvc repro` at
256 px in a clone of HEAD, through the same code path the GPU measurement takes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_gpu_pipeline_tiny_runs_the_whole_pipeline_at_256_px(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_pipeline", "--tiny",
                           "--image-size", "256", "--datasets", "cartoon", "--work", str(tmp_path / "work"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["image_size"] == 256 and r["epochs"] == 1
    assert {f"{s}@cartoon" for s in ("download", "preprocess", "train", "evaluate",
                                     "render-figures")} <= set(r["repro"]["stages"])
    for name in ("cartoon",):
        t = r["train"][name]
        # The stage's summary line, parsed: batch auto is 32 on a CPU, capped by the data.
        assert t["images"] == 36 and t["batch"] == 32 and t["images_per_s"] > 0
        assert 0 < t["outside_epochs"] < 1
        assert {"epochs", "validation", "log-scale fit", "posterior means", "mixture fit",
                "save", "other"} <= set(t["parts_s"])
        m = r["metrics"][name]
        assert 0 < m["mse"] < 1 and 0 < m["iwae_bpd"] < m["elbo_bpd"] and m["swd"] > 0
        assert f"| {name} | 36 | 32 |" in proc.stdout
    assert "| stage | seconds |" in proc.stdout and "train@cartoon" in proc.stdout
    clone = tmp_path / "work" / "repo"
    # 256 px end to end: the prepared arrays, the six-stage model, legible figures.
    assert np.load(clone / "data/prepared/cartoon/test.npy", mmap_mode="r").shape[1:] == (3, 256,
                                                                                      256)
    import torch
    blob = torch.load(clone / "models/cartoon/model.pt", weights_only=True)
    assert blob["config"]["image_size"] == 256
    assert sum(1 for k in blob["state_dict"] if k.startswith("encoder.")
               and k.endswith(".weight") and blob["state_dict"][k].dim() == 4
               and blob["state_dict"][k].shape[-1] == 4) == 6  # six 4x4/2 stages
    recon = Image.open(clone / "figures/cartoon/reconstruction.png")
    assert recon.width == 4 * 256 + 5 * 2  # four columns of full-size faces, not shrunk
    # Labelled rows shrink 256 px faces to 128 px, so their labels stay readable.
    width = Image.open(clone / "figures/cartoon/temperature.png").width
    assert 4 * 130 < width < 4 * 130 + 200, width
