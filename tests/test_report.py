"""metrics/<dataset>.json's layout, and --compare: differences against the seed spread."""

import json
import os
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


@pytest.mark.slow  # a benchmark script end to end
def test_seed_spread_adds_a_seed_to_a_file_of_the_same_results(tiny_pipeline, tmp_path):
    repo = tiny_pipeline[0]
    names = ("cartoon",)  # --datasets: one dataset's spread (the other's runs the same code)
    committed = {n: report.read_metrics(repo / "metrics" / f"{n}.json")
                 for n in ("cartoon", "myfaces")}
    seed0 = {n: {k: [m[k]] for k in report.LOWER_IS_BETTER} for n, m in committed.items()}
    script = [sys.executable, "-m", "benchmarks.seed_spread", "--repo", str(repo)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the benchmarks package, from anywhere

    def run_script(cmd, cwd, check=True):
        return run(cmd, cwd, check, env)
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"commit": "abc1234", "seeds": [0], "values": seed0}))
    other_sets = run_script([*script, "--seeds", "1", "--datasets", "cartoon", "--add", str(both)],
                     tmp_path, check=False)
    assert other_sets.returncode != 0
    assert "holds datasets cartoon, myfaces; add to it with --datasets cartoon,myfaces" in (
        other_sets.stderr)
    unknown = run_script([*script, "--datasets", "cartoon,nope"], tmp_path, check=False)
    assert unknown.returncode != 0 and "--datasets: nope not in params.yaml" in unknown.stderr
    seed0 = {"cartoon": seed0["cartoon"]}
    script += ["--datasets", "cartoon"]
    earlier = tmp_path / "spread.json"
    earlier.write_text(json.dumps({"commit": "abc1234", "seeds": [0], "values": seed0}))
    again = run_script([*script, "--seeds", "0", "--add", str(earlier)], tmp_path, check=False)
    assert again.returncode != 0 and "has seeds [0] already" in again.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"commit": "abc1234", "seeds": [0], "values": {
        n: {k: [v[0] * 2 if k == "mse" else v[0]] for k, v in m.items()}
        for n, m in seed0.items()}}))
    refused = run_script([*script, "--seeds", "1", "--add", str(other)], tmp_path, check=False)
    assert refused.returncode != 0 and "not" in refused.stderr, refused.stderr
    assert "committed metrics" in refused.stderr and "seeds measured other results" in refused.stderr

    run_script([*script, "--seeds", "1", "--add", str(earlier)], tmp_path)
    result = json.loads(earlier.read_text())
    assert result["seeds"] == [0, 1] and result["commits"]["1"] == result["commit"] != "abc1234"
    for n in names:
        mse = result["values"][n]["mse"]
        assert mse[0] == committed[n]["mse"] and len(mse) == 2 and mse[1] != mse[0]
        assert result["spread"][n]["mse"] == pytest.approx(statistics.stdev(mse))
