"""What users see when things go wrong: one line, a non-zero exit, nothing half-written."""

import os
import pickle
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import run

from toonvae.archs import ModelConfig, build
from toonvae.checkpoint import Checkpointer
from toonvae.errors import ToonvaeError
from toonvae.files import atomic_path
from toonvae.model import load_model
from toonvae.optim import Adam
from toonvae.prepare import prepare
from toonvae.sources.synthetic import generate
from toonvae.train import Pass, TrainConfig, train, validate

TINY = ModelConfig("resnet", 32, 4, channels=(8, 8, 16, 16))
CFG = TrainConfig(epochs=2, batch_size=8, lr=None, beta=1.0, device="cpu", threads=1, seed=0)


def edit_params(repo, change):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    change(p)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def typo(p):
    p["latnt_dim"] = p.pop("latent_dim")


def missing_folder(p):
    p["datasets"]["anime"] = {"source": "folder", "path": "/no/such/faces", "crop": "center"}


@pytest.mark.parametrize("stage, change, line, not_written", [
    ("train", typo, "error: latnt_dim: unknown key; allowed here: seed, image_size, latent_dim, "
     "datasets, preprocess, model, train, evaluate, sampler, figures, runtime", "models"),
    ("download", missing_folder, "error: datasets.anime.path: '/no/such/faces' does not exist; "
     "point it at a folder of images or a .zip/.tar(.gz) archive", "data"),
    ("evaluate", lambda p: None, "error: models/anime/model.pt: no model file; run the train "
     "stage first", "metrics/anime.json"),
])
def test_a_stage_with_bad_input_prints_one_line_and_writes_nothing(repo_copy, stage, change,
                                                                   line, not_written):
    edit_params(repo_copy, change)
    proc = run([sys.executable, f"stages/{stage}.py", "anime"], repo_copy, check=False)
    assert proc.returncode == 2
    assert proc.stderr == line + "\n"  # no traceback, no other noise
    assert not (repo_copy / not_written).exists()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate("cartoon", root / "raw", 100, seed=0, size=64, workers=1)
    prepare(root / "raw", root / "prepared", image_size=32, crop="box", box=(0.2, 0.17, 0.8, 0.77),
            val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)
    return root / "prepared"


@pytest.fixture
def poison_after_step(monkeypatch):
    """Turn every weight to NaN after optimiser step N, as a diverging run would."""
    state = {"steps": 0, "at": None}
    step = Adam.step

    def poisoned(optimizer):
        step(optimizer)
        state["steps"] += 1
        if state["steps"] == state["at"]:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.fill_(float("nan"))
    monkeypatch.setattr(Adam, "step", poisoned)
    return state


def test_a_nan_loss_stops_training_naming_epoch_batch_and_remedy(prepared, tmp_path,
                                                                 poison_after_step):
    poison_after_step["at"] = 13  # 80 images / batch 8 = 10 batches an epoch: epoch 2, batch 3
    with pytest.raises(ToonvaeError) as err:
        train(prepared, tmp_path / "model.pt", tmp_path / "curves", TINY, CFG,
              checkpoint_path=tmp_path / "ckpt.pt")
    assert str(err.value) == ("the training loss became nan at epoch 2, batch 4 of 10; training "
                              "stopped: lower train.lr (now 0.004, try 0.001) or check the data")
    assert not (tmp_path / "model.pt").exists()
    kept = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # the last good state stays
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_a_checkpoint_of_other_settings_is_never_resumed_silently(prepared, tmp_path, capsys,
                                                                 poison_after_step):
    """The stage's message (test_resume has the end-to-end resume under `dvc repro`)."""
    from dataclasses import replace

    ckpt = tmp_path / "ckpt.pt"
    poison_after_step["at"] = 13  # leaves the checkpoint of epoch 1 behind
    with pytest.raises(ToonvaeError):
        train(prepared, tmp_path / "model.pt", tmp_path / "curves", TINY, CFG, checkpoint_path=ckpt)
    assert ckpt.is_file()
    poison_after_step["at"] = None
    capsys.readouterr()
    train(prepared, tmp_path / "model.pt", tmp_path / "curves", TINY, replace(CFG, lr=0.001),
          checkpoint_path=ckpt)
    err = capsys.readouterr().err
    assert (f"ignoring checkpoint {ckpt}: it belongs to other settings (train.lr changed); "
            "training from the start") in err
    assert "resuming" not in err and not ckpt.exists()


def test_a_nan_in_validation_is_reported_too(prepared):
    model = build(TINY)
    with torch.no_grad():
        model.to_mu.weight.fill_(float("inf"))
    val = np.load(prepared / "val.npy", mmap_mode="r")
    with pytest.raises(ToonvaeError, match=r"^the validation loss became nan at epoch 3, batch 1 "
                                           r"of 2; the model diverged: lower train.lr"):
        validate(model, val, "gaussian", Pass(CFG.batch_size, "cpu"), epoch=2)


class Payload:
    """A pickle that runs code when loaded, as a malicious model file would."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_untrusted_model_and_checkpoint_files_never_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"format": 1, "state_dict": Payload(marker)}, evil, pickle_protocol=2)
    with pytest.raises(ToonvaeError, match=r"model.pt: not a readable toonvae model \(Unpickling"):
        load_model(evil)
    model = build(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert Checkpointer(evil, run={}).resume(model, torch.optim.Adam(model.parameters())) is None
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is real: plain pickle runs it
    assert marker.exists()


def test_an_interrupted_write_keeps_the_old_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"mse": 0.1}\n')
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"ms')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"mse": 0.1}\n'
    assert list(tmp_path.iterdir()) == [target]


def test_a_ddp_process_error_reaches_the_launcher_as_one_line(tmp_path, monkeypatch, capsys):
    """Under torchrun each process hands its error to torchrun's error file, not stderr
    (they may all fail alike); the launcher says the lowest rank's that failed on its own,
    not those of the processes that failed because of it."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from toonvae.distributed import PEER_LOST, _first_cause
    from toonvae.errors import report_errors

    def fails(rank):
        raise ToonvaeError(f"train: process {rank} wants GPU {rank} but 1 are visible; start "
                           "at most one process per GPU")
    files = {}
    for rank in (0, 1):
        files[rank] = tmp_path / f"error{rank}.json"
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(files[rank]))
        assert report_errors(fails, rank) == 2
        assert capsys.readouterr().err == ""
    missing = str(tmp_path / "none.json")

    def failure(rank, code, error_file=missing):
        return ProcessFailure(local_rank=rank, pid=10 + rank, exitcode=code,
                              error_file=str(error_file))
    said = {0: failure(0, 2, files[0]), 1: failure(1, 2, files[1])}
    assert str(_first_cause(said, 2)) == ("train: process 0 wants GPU 0 but 1 are visible; "
                                          "start at most one process per GPU")
    assert str(_first_cause({0: failure(0, PEER_LOST), 1: said[1]}, 2)).startswith(
        "train: process 1 wants GPU 1")
    assert str(_first_cause({0: failure(0, -15), 1: failure(1, -9)}, 2)).startswith(
        "training process 1 of 2 was killed by SIGKILL, and the others were stopped")
    assert "training process 0 of 2 exited with status 1" in str(
        _first_cause({0: failure(0, 1)}, 2))
