"""metrics/<dataset>.json's layout, and --compare: differences against the seed spread."""

import json
import os
import re
import statistics
import subprocess
import sys

import pytest

from conftest import ROOT, run
from toonvae import report
from toonvae.errors import ToonvaeError


def write(repo, name, **metrics):
    path = repo / "metrics" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report.metrics_document(name, metrics)))


@pytest.fixture
def repo(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    run(["git", "config", "user.email", "t@example.com"], tmp_path)
    run(["git", "config", "user.name", "t"], tmp_path)
    write(tmp_path, "anime", mse=0.0130, elbo_bpd=6.80, swd=46.0, psnr=19.0, sampler="gmm")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "before"], tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "spread.json").write_text(json.dumps(
        {"spread": {"anime": {"mse": 0.0001, "elbo_bpd": 0.005, "swd": 1.0, "psnr": 0.05}}}))
    return tmp_path


def test_the_file_leads_with_the_headline_metrics_under_the_dataset():
    doc = report.metrics_document("cartoon", {"n_test": 200, "swd": 19.1, "mse": 0.003,
                                              "iwae_bpd": 3.17, "elbo_bpd": 3.18})
    assert list(doc) == ["cartoon"]
    assert list(doc["cartoon"]) == ["mse", "elbo_bpd", "iwae_bpd", "swd", "n_test"]
    assert report.unnested(doc) == doc["cartoon"]
    assert report.unnested({"mse": 0.1, "swd": 2.0}) == {"mse": 0.1, "swd": 2.0}  # old files
    with pytest.raises(ValueError, match="new_metric"):
        report.metrics_document("cartoon", {"new_metric": 1.0})


def test_compare_calls_changes_within_the_spread_noise(repo):
    # mse within 2.83 spreads; elbo 4 spreads better; swd 6 spreads worse; psnr up 1 dB.
    write(repo, "anime", mse=0.0132, elbo_bpd=6.78, swd=52.0, psnr=20.0, sampler="gmm")
    rows = {line.split()[0]: line.split() for line in report.compare("HEAD", repo=repo)
            .splitlines() if line.startswith("  ") and "metric" not in line}
    assert rows["mse"][-1] == "noise" and rows["mse"][3] == "+1.5%"
    assert rows["elbo_bpd"][-1] == "better" and rows["swd"][-1] == "worse"
    assert rows["psnr"][-1] == "better"  # higher is better
    assert "sampler" not in rows  # not a number


def test_compare_takes_experiment_names_and_refuses_unknown_revisions(repo):
    write(repo, "anime", mse=0.02, elbo_bpd=6.80, swd=46.0, psnr=19.0)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "after"], repo)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    run(["git", "update-ref", "refs/exps/ab/cdef/tidy-lamb", head], repo)  # as dvc exp stores it
    text = report.compare("HEAD~1", to="tidy-lamb", repo=repo)
    assert "anime: HEAD~1 -> tidy-lamb" in text and "worse" in text
    with pytest.raises(ToonvaeError, match="'nope' is neither a git revision"):
        report.compare("nope", repo=repo)
    proc = subprocess.run([sys.executable, "-m", "toonvae.report", "--compare", "nope"],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --compare: 'nope'")
    assert "Traceback" not in proc.stderr


def test_a_spread_file_grows_only_with_seeds_of_the_same_results():
    from toonvae.spread import check_addition, record

    committed = {"cartoon": {"mse": [0.01], "swd": [20.0]}}
    earlier = record("abc1234", [], {n: {k: list(v) for k, v in m.items()}
                                     for n, m in committed.items()})
    assert earlier["seeds"] == [0] and earlier["spread"] == {"cartoon": {}}
    check_addition(earlier, "spread.json", [1], committed, "abc1234")  # fine
    refusals = {
        "has seeds [0] already": ([0], committed),
        "holds datasets cartoon; add to it with --datasets cartoon": (
            [1], {**committed, "anime": {"mse": [0.02], "swd": [30.0]}}),
        "its seed-0 values are not abc1234's committed metrics": (
            [1], {"cartoon": {"mse": [0.02], "swd": [20.0]}}),
    }
    for message, (seeds, now) in refusals.items():
        with pytest.raises(ToonvaeError, match=re.escape(message)):
            check_addition(earlier, "spread.json", seeds, now, "abc1234")
    values = {"cartoon": {"mse": [0.01, 0.012, 0.011], "swd": [20.0, 22.0, "n/a"]}}
    grown = record("def5678", [1, 2], values, earlier)
    assert grown["seeds"] == [0, 1, 2] and grown["commits"] == {"1": "def5678", "2": "def5678"}
    assert grown["spread"] == {"cartoon": {"mse": pytest.approx(statistics.stdev([0.01, 0.012,
                                                                                  0.011]))}}


@pytest.mark.slow  # the benchmark script (a clone of the tiny pipeline)
def test_seed_spread_refuses_a_file_of_other_results_in_one_line(tiny_pipeline, tmp_path):
    repo = tiny_pipeline[0]
    committed = report.read_metrics(repo / "metrics" / "cartoon.json")
    script = [sys.executable, "-m", "benchmarks.seed_spread", "--repo", str(repo)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the benchmarks package, from anywhere
    unknown = run([*script, "--datasets", "cartoon,nope"], tmp_path, check=False, env=env)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines()[-1] == (
        "error: --datasets: nope not in params.yaml's datasets (cartoon, myfaces)")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"commit": "abc1234", "seeds": [0], "values": {"cartoon": {
        k: [committed[k] * 2 if k == "mse" else committed[k]] for k in report.LOWER_IS_BETTER}}}))
    refused = run([*script, "--datasets", "cartoon", "--seeds", "1", "--add", str(other)],
                  tmp_path, check=False, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "its seed-0 values are not" in refused.stderr and "run without --add" in refused.stderr
