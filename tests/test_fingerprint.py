"""The per-op fingerprint: it agrees with itself here, tells a changed pin apart and names
what differs, and the train stage checks it before training and records the verdict."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toonvae import fingerprint
from toonvae.errors import ToonvaeError

ROOT = Path(__file__).resolve().parents[1]

# A process as a stage has it (the portable pins, two threads), with ``change`` applied
# on top of the pins, as a CPU whose kernels differ would compute; it prints check()'s answer.
CHECK = """
import json, os, sys
from toonvae import numerics
os.environ.update(numerics.pins("portable"))
os.environ.update(json.loads(sys.argv[2]))
import torch
torch.set_num_threads(2)
from toonvae import fingerprint
print(json.dumps(fingerprint.check("portable", sys.argv[1])))
"""


def checked(reference: Path, change: dict) -> tuple[str, str | None]:
    proc = subprocess.run([sys.executable, "-c", CHECK, str(reference), json.dumps(change)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return tuple(json.loads(proc.stdout))


def write_reference(path: Path) -> dict:
    fingerprint.main(["--variant", "portable", "--out", str(path)])
    return json.loads(path.read_text())


@pytest.mark.slow  # three fresh processes that import torch
def test_the_check_passes_here_and_fails_when_a_pin_is_changed(tmp_path, capsys):
    ref = write_reference(tmp_path / "here.json")
    hashes = ref["variants"]["portable"]["hashes"]
    assert len(hashes) == 122 and ref["meta"]["threads"] == 2
    assert "a file name for this CPU model" in capsys.readouterr().out

    record, warning = checked(tmp_path / "here.json", {})
    assert warning is None and record.startswith("the committed results' arithmetic")

    # oneDNN held to SSE4.1: other convolution kernels, so other bits on any AVX2 CPU.
    record, warning = checked(tmp_path / "here.json", {"ONEDNN_MAX_CPU_ISA": "SSE41"})
    assert record.startswith("differs from the committed results' CPU")
    assert warning.count("\n") == 0 and "will not match the committed bytes" in warning
    assert "conv3x3/1 16->16 @32 fwd" in warning and "parameter gradients" in warning
    assert "matmul" not in warning  # MKL's products are not oneDNN's: they still agree


def test_differing_ops_are_named_and_gradients_counted():
    mine = {"matmul": "a", "conv fwd": "b", "grad x": "c", "grad y": "d", "new op": "e"}
    ref = {"matmul": "a", "conv fwd": "B", "grad x": "C", "grad y": "D"}
    ops = fingerprint.differing(mine, ref)
    assert ops == ["conv fwd", "grad x", "grad y"]  # an op the reference lacks is not judged
    assert fingerprint.summary(ops) == "conv fwd, 2 parameter gradients"
    assert fingerprint.summary(["grad x"]) == "1 parameter gradient"


def test_only_portable_numerics_on_the_cpu_are_checked(tmp_path):
    assert fingerprint.check("native", tmp_path / "x.json") == (
        "not checked (native numerics on cpu)", None)
    assert fingerprint.check("portable", tmp_path / "x.json", "cuda")[1] is None
    record, warning = fingerprint.check("portable", tmp_path / "missing.json")
    assert warning is None and "missing.json" in record


def test_a_broken_reference_is_one_clear_error(tmp_path):
    bad = tmp_path / "committed.json"
    bad.write_text('{"meta": {}, "variants": {}}')
    with pytest.raises(ToonvaeError, match="not a fingerprint file.*git checkout"):
        fingerprint.check("portable", bad)


def test_file_names_follow_the_cpu_model():
    meta = {"cpu": "Intel(R) Xeon(R) Processor", "family/model/stepping": "6/167/1"}
    assert fingerprint.name_of(meta) == "intel-xeon-6-167-1.json"
    meta = {"cpu": "AMD EPYC 7B13 64-Core Processor", "family/model/stepping": "25/1/0"}
    assert fingerprint.name_of(meta) == "amd-epyc-7b13-64-core-25-1-0.json"


def test_committed_fingerprints_are_complete_files_of_every_variant():
    files = sorted((ROOT / "experiments" / "numerics").glob("*.json"))
    assert ROOT / fingerprint.COMMITTED in files
    for path in files:
        data = json.loads(path.read_text())
        assert set(data["variants"]) == set(fingerprint.VARIANTS), path
        assert all(len(v["hashes"]) == 122 for v in data["variants"].values()), path
        assert data["meta"]["cpu"] and data["meta"]["vendor"], path


@pytest.mark.slow  # trains the tiny model twice
def test_the_train_stage_checks_before_training_and_records_the_verdict(prepared_repo):
    repo = prepared_repo
    reference = repo / fingerprint.COMMITTED
    env = dict(os.environ, PYTHONPATH=str(repo / "src"))

    def train():
        proc = subprocess.run([sys.executable, "stages/train.py", "cartoon"], cwd=repo,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        import torch
        blob = torch.load(repo / "models" / "cartoon" / "model.pt", weights_only=False)
        return proc.stderr + proc.stdout, blob["platform"]["arithmetic"]

    # As if this CPU had made the committed results; the tiny params train on one thread,
    # the reference was made on two: the check computes on the reference's count.
    data = write_reference(reference)
    out, verdict = train()
    assert "warning:" not in out and verdict.startswith("the committed results' arithmetic")

    data["variants"]["portable"]["hashes"]["group_norm grad"] = "0" * 16
    reference.write_text(json.dumps(data))
    out, verdict = train()
    warning, = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "1 of 122 fingerprinted ops" in warning and "group_norm grad." in warning
    assert out.index("warning:") < out.index("epoch 1/")  # before any time is spent
    assert verdict.startswith("differs from the committed results' CPU") and "1 of 122 ops" in verdict
