"""A train stage SIGKILLed midway resumes under `dvc repro` and ends byte-identical."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import run
from test_pipeline import dvc, dvc_env

pytestmark = pytest.mark.slow


def one_tiny_dataset(repo, **train):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p.update(image_size=32, latent_dim=4)
    p["datasets"] = {"cartoon": {**p["datasets"]["cartoon"], "count": 200, "raw_size": 64}}
    p["preprocess"].update(val_fraction=0.1, test_fraction=0.1, min_side=16)
    p["model"]["channels"] = [8, 8, 16, 16]
    p["train"].update({"epochs": 2, "batch_size": 8, "threads": 1, **train})
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def kill_when_checkpointed(repo, ckpt):
    """Start `dvc repro train@cartoon`; SIGKILL its whole process group at the first checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train@cartoon"], cwd=repo,
                            env=dvc_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, "train ended before its first checkpoint:\n" + proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return proc.returncode


def test_killed_train_resumes_and_matches_an_uninterrupted_run(repo_copy):
    repo = repo_copy
    one_tiny_dataset(repo, checkpoint_every=5)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    dvc(["repro", "preprocess@cartoon"], repo)
    ckpt = repo / "checkpoints" / "cartoon" / "last.pt"
    model = repo / "models" / "cartoon" / "model.pt"
    curves = repo / "metrics" / "curves" / "cartoon" / "plots" / "metrics" / "train" / "loss.tsv"

    assert kill_when_checkpointed(repo, ckpt) == -signal.SIGKILL
    assert not model.exists(), "the run finished before it was killed"

    out = dvc(["repro", "train@cartoon"], repo)
    resumed = out.stdout + out.stderr
    assert "resuming from checkpoint checkpoints/cartoon/last.pt: epoch 1, after batch" in resumed
    assert not ckpt.exists(), "a finished run leaves no checkpoint behind"
    resumed_model, resumed_curve = model.read_bytes(), curves.read_text()
    assert len(resumed_curve.splitlines()) == 3  # header + 2 epochs: none lost, none repeated

    out = dvc(["repro", "-f", "-s", "train@cartoon"], repo)
    assert "resuming" not in out.stdout + out.stderr
    assert model.read_bytes() == resumed_model, "resumed weights differ from an uninterrupted run"
    assert curves.read_text() == resumed_curve
    # A checkpoint of other params is never resumed silently: test_failures.
