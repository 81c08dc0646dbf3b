"""A train stage SIGKILLed midway resumes under `dvc repro` and ends byte-identical."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import commit, one_tiny_dataset
from test_pipeline import dvc, dvc_env

pytestmark = pytest.mark.slow


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


def test_killed_train_resumes_and_matches_an_uninterrupted_run(prepared_repo):
    repo = prepared_repo
    one_tiny_dataset(repo, checkpoint_every=5)
    commit(repo, "tiny, checkpoints")
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
