"""Scaling out with the engines PyTorch and DVC already have: DistributedDataParallel under
torchrun (2 gloo processes on the CPU) and the push / pull round trip through a DVC remote
(a local directory). The DVC queue running 2 experiments at once is in test_experiments."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import commit, copy_repo, one_tiny_dataset, run
from test_pipeline import dvc, dvc_env
from test_resume import kill_when_checkpointed

pytestmark = pytest.mark.slow


def loss_curve(repo, name="cartoon"):
    rows = (repo / "metrics" / "curves" / name / "plots" / "metrics" / "train" / "loss.tsv")
    return [float(r.split("\t")[1]) for r in rows.read_text().splitlines()[1:]]


def curve_files(repo, name="cartoon"):
    root = repo / "metrics" / "curves" / name
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sample_works(repo, model_dir, out):
    """`toonvae sample` on a model another process wrote (in this process: the CLI is
    test_cli's; what is checked here is the file)."""
    from toonvae.cli import main

    assert main(["sample", "--model", str(model_dir), "--n", "4", "--out", str(out)]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] >= 32 and grid.std() > 5, "blank samples"


def test_two_gloo_processes_train_and_their_checkpoint_resumes_in_one_process(prepared_repo):
    repo = prepared_repo
    one_tiny_dataset(repo, nproc=2, epochs=3)
    commit(repo, "tiny, 2 processes")

    out = dvc(["repro", "train@cartoon"], repo)
    log = out.stdout + out.stderr
    assert "on 160 images, batch 8, lr 0.004, device cpu, fp32, 2 processes (DDP, gloo)" in log
    assert re.search(r"train cartoon: wrote models/cartoon/model\.pt after 3 epochs", log)
    assert log.count("epoch 3/3: train loss") == 1, "rank 1 must stay silent"
    losses = loss_curve(repo)
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], losses
    ddp_files, ddp_metrics = curve_files(repo), json.loads(
        (repo / "metrics" / "curves" / "cartoon" / "metrics.json").read_text())
    assert not (repo / "checkpoints" / "cartoon" / "last.pt").exists()
    sample_works(repo, repo / "models" / "cartoon", repo / "ddp.png")
    assert dvc(["status", "--json", "train@cartoon"], repo).stdout.strip() in ("{}", "")

    # Killed mid-epoch under DDP, the checkpoint rank 0 wrote resumes in one process.
    one_tiny_dataset(repo, nproc=2, epochs=3, checkpoint_every=5, lr=0.003)
    ckpt = repo / "checkpoints" / "cartoon" / "last.pt"
    kill_when_checkpointed(repo, ckpt)
    written = ckpt.stat().st_mtime_ns
    # No training process outlives the killed launcher (torchrun starts each in a session
    # of its own, out of reach of the group kill): all are gone within seconds, and none
    # checkpointed again on the way (an orphan would, within a second).
    deadline = time.monotonic() + 10
    while (left := processes_working_in(repo)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left and ckpt.stat().st_mtime_ns == written, (
        "training processes outlived the killed launcher")
    assert ckpt.is_file() and not (repo / "models" / "cartoon" / "model.pt").exists()
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in blob["model"]), "DDP's wrapper leaked in"
    one_tiny_dataset(repo, nproc=1, epochs=3, checkpoint_every=5, lr=0.003)
    out = run([sys.executable, "stages/train.py", "cartoon"], repo, env=dvc_env())
    assert re.search(r"resuming from checkpoint checkpoints/cartoon/last\.pt: epoch 1, after "
                     r"batch \d+", out.stderr), out.stderr
    assert "processes (DDP" not in out.stderr
    assert len(loss_curve(repo)) == 3 and not ckpt.exists()
    # The single-process run writes the same files, with the same keys, as the DDP run.
    assert curve_files(repo) == ddp_files
    assert json.loads((repo / "metrics" / "curves" / "cartoon" / "metrics.json").read_text()
                      ).keys() == ddp_metrics.keys()
    sample_works(repo, repo / "models" / "cartoon", repo / "single.png")


def test_a_failing_process_reports_one_line(repo_copy):
    repo = repo_copy
    one_tiny_dataset(repo, nproc=2)
    # Without the committed fingerprint, so that a CPU of another type (which gets a
    # one-line warning about it first) sees the same output.
    (repo / "experiments" / "numerics" / "committed.json").unlink()
    commit(repo, "tiny, no data")
    out = run([sys.executable, "stages/train.py", "cartoon"], repo, check=False, env=dvc_env())
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: data/prepared/cartoon: no prepared data (manifest.json missing); run the "
        "preprocess stage first"], out.stderr


def processes_working_in(repo) -> list[int]:
    """Live processes (not zombies) whose working directory is ``repo``."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == repo and b"zombie" not in (
                    proc / "status").read_bytes():
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def children(pid):
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def rank_of(pid):
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


def test_a_killed_process_stops_the_run_with_one_line(prepared_repo):
    repo = prepared_repo
    one_tiny_dataset(repo, nproc=2, epochs=50, checkpoint_every=5)
    commit(repo, "tiny, long")
    ckpt = repo / "checkpoints" / "cartoon" / "last.pt"
    proc = subprocess.Popen([sys.executable, "stages/train.py", "cartoon"], cwd=repo,
                            env=dvc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    workers = {rank_of(pid): pid for pid in children(proc.pid)}
    assert sorted(workers) == [0, 1], workers
    os.kill(workers[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (
        "error: training process 1 of 2 was killed by SIGKILL, and the others were stopped; "
        "rerun to resume from the last checkpoint, or set train.nproc: 1 to debug"), err
    assert "Traceback" not in err, err
    assert not Path(f"/proc/{workers[0]}").exists() or b"zombie" in Path(
        f"/proc/{workers[0]}/status").read_bytes(), "rank 0 outlived the failed run"
    assert ckpt.is_file() and not (repo / "models" / "cartoon" / "model.pt").exists()


def test_push_then_pull_in_a_fresh_clone_needs_no_retraining(tiny_pipeline, tmp_path):
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")  # after dvc repro
    remote = tmp_path / "remote"
    dvc(["remote", "add", "-d", "storage", str(remote)], repo)
    commit(repo, "results and a remote")
    dvc(["push"], repo)
    assert any(remote.rglob("*")), "nothing was pushed"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models" / "cartoon" / "model.pt").exists()
    dvc(["pull"], clone)
    for path in ("models/cartoon/model.pt", "data/prepared/cartoon/train.npy",
                 "data/raw/cartoon"):
        a, b = repo / path, clone / path
        if a.is_dir():
            assert sorted(q.name for q in a.rglob("*")) == sorted(q.name for q in b.rglob("*"))
        else:
            assert a.read_bytes() == b.read_bytes(), path
    assert dvc(["status", "--json"], clone).stdout.strip() in ("{}", "")
    out = dvc(["repro"], clone)
    assert "Running stage" not in out.stdout, "dvc repro retrained after a pull"
    sample_works(clone, clone / "models" / "cartoon", tmp_path / "pulled.png")
    shutil.rmtree(remote)  # what was pulled lives in the clone's own cache now
    assert dvc(["status", "--json"], clone).stdout.strip() in ("{}", "")
