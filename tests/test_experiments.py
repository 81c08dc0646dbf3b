"""The README's experiment table: queued with `dvc exp run --queue`, run by `dvc queue start`."""

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT, copy_repo, run
from test_pipeline import ONE_CORE, OTHER_CPU, dvc, dvc_env
from toonvae import experiments
from toonvae.tables import grid_table
from toonvae.report import read_metrics


def entry(name, overrides, mse, elbo, swd_prior, swd_gmm, train_s, parameters):
    m = {"mse": mse, "psnr": 20.0, "elbo_bpd": elbo, "iwae_bpd": elbo - 0.01,
         "swd_prior": swd_prior, "swd_gmm": swd_gmm, "swd_floor": 10.0,
         "swd_best": min(swd_prior, swd_gmm), "train_s": train_s, "evaluate_s": 5.0}
    return {"name": name, "overrides": overrides, "status": "Success",
            "parameters": parameters, "datasets": {"anime": m}}


def test_table_has_a_row_per_experiment_and_the_default_vs_seed_line():
    results = {"grid": [
        entry("default", {}, 0.01, 6.5, 90.0, 40.0, 200.0, 1_234_567),
        entry("seed", {"model.arch": "seed", "train.epochs": 1}, 0.04, 7.25, 100.0, 160.0,
              210.0, 2_000),
        {"name": "beta-2", "overrides": {"train.beta": 2.0}, "status": "Failed"},
    ]}
    table = grid_table(results)
    lines = table.splitlines()
    assert lines[2] == ("| default | – | anime | 0.01000 | 20.00 | 6.500 | 6.490 | 40.0 | 200 "
                        "| 1,234,567 |")
    assert lines[3].startswith("| seed | `model.arch=seed`, `train.epochs=1` | anime | 0.04000")
    assert "| 100.0 | 210 | 2,000 |" in lines[3]  # the best sampler's swd: the prior here
    assert lines[4].startswith("| beta-2 | `train.beta=2.0` | – | failed |")
    assert lines[-1] == ("- anime: the default against `arch: seed` has 75% lower test mse, "
                         "0.750 bits/dim lower elbo and 60% lower swd, training for 200 s "
                         "against 210 s.")


def test_grid_table_matches_the_committed_results():
    results = json.loads((ROOT / experiments.RESULTS).read_text())
    names = [e["name"] for e in results["grid"]]
    assert names[:2] == ["default", "seed"]  # the comparison the README is about
    assert names == [r.name for r in experiments.GRID if r.name in names]  # grid order
    text = (ROOT / "docs" / "research" / "model-quality.md").read_text()
    body = text.split("<!-- gen: experiments -->\n")[1].split("<!-- /gen -->")[0].strip()
    assert body == grid_table(results), "run `python -m toonvae.experiments table`"


def test_unknown_row_is_refused_in_one_line(tmp_path):
    proc = run([sys.executable, "-m", "toonvae.experiments", "run", "--only", "latent-33"],
               tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: --only: no row 'latent-33'; rows: default, seed, latent-32, latent-64, "
        "latent-200, beta-0.5, beta-2"]


def running_executors(repo) -> int:
    """Experiments whose DVC executor info file says RUNNING (status 2)."""
    running = 0
    for info in (repo / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run"):
        try:
            running += json.loads(info.read_text()).get("status") == 2
        except (OSError, ValueError):  # being written or removed right now
            pass
    return running


def experiment_lock(repo, name) -> dict:
    """The dvc.lock that DVC committed for experiment ``name``."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    ref, = (r for r in refs if r.endswith(f"/{name}"))
    return yaml.safe_load(run(["git", "show", f"{ref}:dvc.lock"], repo).stdout)


@pytest.mark.slow
def test_queue_runs_the_rows_and_writes_the_table(tiny_pipeline, tmp_path):
    # The shared tiny pipeline, its cartoon dataset alone: dropping the other one leaves
    # cartoon's committed results up to date, so no stage runs before the queue's.
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["datasets"] = {"cartoon": p["datasets"]["cartoon"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (repo / "README.md").write_text("# t\n<!-- gen: experiments -->\n<!-- /gen -->\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "cartoon only"], repo)
    assert "up to date" in dvc(["status"], repo).stdout
    committed = {"cartoon": read_metrics(repo / "metrics" / "cartoon.json")}

    # Two rows at once (`dvc queue start --jobs 2`): watch the queue while they run. They
    # run on "another CPU" (one core instead of two, every kernel library told the CPU
    # lacks AVX2): the default row reruns the committed params, so under portable numerics
    # it must give back every committed byte (checked below, from its dvc.lock).
    runner = subprocess.Popen([*ONE_CORE, sys.executable, "-m", "toonvae.experiments", "run",
                               "--only", "default,seed", "--jobs", "2"], cwd=repo,
                              env=dict(dvc_env(), **OTHER_CPU),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Each `dvc queue status` costs a second or two of CPU, so it is asked only once the
    # executors' info files (what it reads) say that two experiments are running.
    most_running, status = 0, ""
    while runner.poll() is None:
        if most_running < 2 and running_executors(repo) >= 2:
            status = dvc(["queue", "status"], repo, check=False).stdout
            most_running = max(most_running, len(re.findall(r"\bRunning\b", status)))
        time.sleep(0.5)
    out, err = runner.communicate()
    assert runner.returncode == 0, err
    assert most_running == 2, f"the two experiments never ran at the same time:\n{status}\n{err}"
    assert ("queued seed: model.arch=seed train.epochs=1 train.optimizer=adam "
            "train.schedule=constant train.warmup_steps=0") in err
    results = json.loads((repo / "experiments" / "results.json").read_text())
    default, seed = results["grid"]
    assert (default["name"], default["status"], seed["name"], seed["status"]) == (
        "default", "Success", "seed", "Success")
    for name, m in default["datasets"].items():
        # The queue's rerun of the committed params reproduces the committed metrics.
        for key in ("mse", "elbo_bpd", "iwae_bpd", "swd_prior", "swd_gmm"):
            assert m[key] == committed[name][key], (name, key)
        assert m["train_s"] > 0 and m["evaluate_s"] > 0
    # Byte identity on the other CPU: every output of every stage the default row reran
    # (data, models, metrics, curves, figures) hashes as committed.
    committed_lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    rerun = experiment_lock(repo, "default")["stages"]
    assert {"train@cartoon", "evaluate@cartoon", "render-figures@cartoon"} <= set(rerun)
    for stage, entry in rerun.items():
        assert entry["outs"] == committed_lock[stage]["outs"], stage
    assert sorted(default["datasets"]) == sorted(seed["datasets"]) == ["cartoon"]
    assert seed["datasets"]["cartoon"]["mse"] != default["datasets"]["cartoon"]["mse"]
    assert seed["parameters"] != default["parameters"] > 0
    readme = (repo / "README.md").read_text()
    assert readme.count("| default | – | cartoon |") == 1 and readme.count("| seed |") == 1, readme
    assert "- cartoon: the default against `arch: seed` has" in readme, readme
    figure = np.asarray(Image.open(repo / "figures" / "comparison" / "cartoon.png"))
    assert figure.shape[0] > 5 * 32 and figure.std() > 5
    # Both saved as named experiments (`dvc exp show`'s rows; its layout is tested elsewhere).
    assert experiment_lock(repo, "seed")["stages"]["train@cartoon"]["outs"] != rerun[
        "train@cartoon"]["outs"]


def test_a_partial_run_replaces_only_its_rows_in_grid_order():
    old = {"grid": [{"name": "seed", "v": 1}, {"name": "beta-2", "v": 1}]}
    new = {"grid": [{"name": "default", "v": 2}, {"name": "seed", "v": 2}]}
    merged = experiments.merge(old, new)
    assert merged == {"grid": [{"name": "default", "v": 2}, {"name": "seed", "v": 2},
                               {"name": "beta-2", "v": 1}]}
    assert experiments.merge(None, new) == new


def test_only_finished_experiments_count_as_landed(tmp_path):
    """The queue's wait wakes early when an experiment lands, not when DVC moves its own
    working refs (the queue's stash as tasks start, the executors' refs)."""
    run(["git", "init", "-q"], tmp_path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
         "-m", "base"], tmp_path)
    for ref in ("refs/exps/celery/stash", "refs/exps/exec/EXEC_HEAD", "refs/exps/temp/x"):
        run(["git", "update-ref", ref, "HEAD"], tmp_path)
    assert experiments.experiment_refs(tmp_path) == []
    landed = "refs/exps/ab/" + "c" * 38 + "/seed"
    run(["git", "update-ref", landed, "HEAD"], tmp_path)
    assert experiments.experiment_refs(tmp_path) == [landed]
