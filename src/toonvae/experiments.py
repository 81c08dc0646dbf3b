"""The experiment grid of the documentation, made with DVC's own queue.

``python -m toonvae.experiments run`` queues one DVC experiment per row of ``GRID``
(``dvc exp run --queue -n <name> -S ...``), runs them with ``dvc queue start``, waits,
then reads every experiment's metrics from ``dvc exp show --json`` and its stage times
from ``dvc queue logs``. It updates those rows in ``experiments/results.json`` and writes
the comparison figures and every ``<!-- gen: experiments -->`` table (toonvae.pages).
``collect`` does the same for rows already queued (it waits for them), and ``table``
redraws the table from the results file.

Train time is a property of the machine, not of the params, so it is kept out of the
pipeline's metrics (which must be byte-identical on every rerun) and only recorded here.
The ``default`` row is queued with ``--force`` so that it trains again and is timed in the
same queue as the others instead of being restored from DVC's run cache.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from toonvae.errors import ToonvaeError
from toonvae.progress import log, read_summaries
from toonvae.report import unnested

# The seed network's step is ~7x slower than the default's on a CPU (docs: Performance):
# one epoch of it takes about as long as the default's eight. The table shows both times.
SEED_EPOCHS = 1
RESULTS = Path("experiments/results.json")


@dataclass(frozen=True)
class Row:
    name: str
    overrides: dict = field(default_factory=dict)  # -S key=value
    force: bool = False  # rerun even if DVC has every output cached


GRID = (
    Row("default", force=True),
    # The notebook's network with the notebook's training: Adam at a constant lr.
    Row("seed", {"model.arch": "seed", "train.epochs": SEED_EPOCHS, "train.optimizer": "adam",
                 "train.schedule": "constant", "train.warmup_steps": 0}),
    # The sweep runs two at a time (`--jobs 2`), one thread each so they do not
    # oversubscribe the cores; their train times compare with each other.
    Row("latent-32", {"latent_dim": 32, "train.threads": 1}),
    Row("latent-64", {"latent_dim": 64, "train.threads": 1}),
    Row("latent-200", {"latent_dim": 200, "train.threads": 1}),
    Row("beta-0.5", {"train.beta": 0.5, "train.threads": 1}),
    Row("beta-2", {"train.beta": 2.0, "train.threads": 1}),
)


def dvc(args: list[str], repo: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, text=True,
                          capture_output=True)
    if check and proc.returncode:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ToonvaeError(f"dvc {' '.join(args)} failed: {last}")
    return proc


def start_workers(jobs: int, repo: Path) -> None:
    """`dvc queue start --jobs N`. Its workers inherit the command's stdout and stderr, so
    captured pipes would stay open (and this call block) until the queue is empty."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "--jobs", str(jobs)],
                          cwd=repo, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if proc.returncode:
        raise ToonvaeError(f"dvc queue start --jobs {jobs} failed (status {proc.returncode}); "
                           "run it by hand to see why")


def queue(rows, repo: Path) -> None:
    """Queue every row, replacing an earlier experiment of the same name."""
    names = [r.name for r in rows]
    if {ref.rsplit("/", 1)[1] for ref in experiment_refs(repo)} & set(names):
        dvc(["exp", "remove", *names], repo, check=False)  # absent names: fine
    dvc(["queue", "remove", *names], repo, check=False)
    for row in rows:
        args = ["exp", "run", "--queue", "-n", row.name]
        args += [f"-S{k}={v}" for k, v in row.overrides.items()]
        dvc(args + (["--force"] if row.force else []), repo)
        log(f"queued {row.name}: " + (" ".join(f"{k}={v}" for k, v in row.overrides.items())
                                      or "the committed params"))


def wait(names: list[str], repo: Path, poll_s: float = 30.0) -> dict[str, str]:
    """Block until every named task has finished; their final statuses.

    ``dvc queue status`` costs a second or two of CPU (taken from the experiments it
    watches), so it is asked when every named experiment has landed, and otherwise only
    every ``poll_s`` seconds, to notice one that failed (a failed one lands nothing). DVC
    stores each finished experiment as a Git ref under refs/exps, which costs nothing to
    list; the ref comes a moment before its task is marked done, so the ask comes 2 s
    after the last one lands."""
    before = set(experiment_refs(repo))

    def landed(pending: list[str]) -> bool:
        new = set(experiment_refs(repo)) - before
        return set(pending) <= {ref.rsplit("/", 1)[1] for ref in new}

    while True:
        statuses = queue_status(repo)
        missing = [n for n in names if n not in statuses]
        if missing:
            raise ToonvaeError(f"dvc queue status does not list {', '.join(missing)}; "
                               "were they removed? rerun the table")
        pending = [n for n in names if statuses[n] in ("Queued", "Running")]
        if not pending:
            return {n: statuses[n] for n in names}
        deadline = time.monotonic() + poll_s
        while not (all_landed := landed(pending)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if all_landed:
            time.sleep(min(2.0, poll_s))


def experiment_refs(repo: Path) -> list[str]:
    """The finished experiments' refs (refs/exps/<2 hex>/<38 hex>/<name>), not DVC's
    working ones under refs/exps (the queue's stash, the executors' refs), which change
    as tasks start."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=repo,
                          text=True, capture_output=True).stdout.split()
    return [r for r in refs if re.fullmatch(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/.+", r)]


def queue_status(repo: Path) -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed} from ``dvc queue status``."""
    out = {}
    for line in dvc(["queue", "status"], repo).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            out[parts[1]] = parts[-1]
    return out


def stage_seconds(name: str, repo: Path) -> dict[str, dict[str, float]]:
    """{dataset: {train_s, evaluate_s}} from the stages' summaries in the task's log."""
    out: dict[str, dict[str, float]] = {}
    for fact in read_summaries(dvc(["queue", "logs", name], repo).stdout):
        if fact["stage"] in ("train", "evaluate"):
            out.setdefault(fact["dataset"], {})[f"{fact['stage']}_s"] = round(fact["seconds"], 1)
    return out


def experiment_data(repo: Path) -> dict[str, dict]:
    """{experiment name: {"params": params.yaml, "metrics": {dataset: metrics}}}."""
    # --all-commits: rows queued from an earlier commit are found too.
    shown = json.loads(dvc(["exp", "show", "--json", "--all-commits"], repo).stdout)
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            data = rev.get("data") or {}
            if not rev.get("name") or "metrics" not in data:
                continue
            metrics = {}
            for path, blob in data["metrics"].items():
                m = re.fullmatch(r"metrics/([^/]+)\.json", path)
                if m and "data" in blob:
                    metrics[m.group(1)] = unnested(blob["data"])
            found[rev["name"]] = {"params": data["params"]["params.yaml"]["data"],
                                  "metrics": metrics, "rev": rev["rev"]}
    return found


def parameter_count(params: dict) -> int:
    from toonvae.archs import ModelConfig, build
    from toonvae.model import count_parameters
    from toonvae.params import from_dict

    return count_parameters(build(ModelConfig.from_params(from_dict(params))))


KEYS = ("mse", "psnr", "elbo_bpd", "iwae_bpd", "swd_prior", "swd_gmm", "swd_floor")


def collect(rows, repo: Path, statuses: dict[str, str]) -> dict:
    data = experiment_data(repo)
    results = []
    for row in rows:
        entry = {"name": row.name, "overrides": row.overrides, "status": statuses[row.name]}
        if row.name in data and statuses[row.name] == "Success":
            exp = data[row.name]
            entry["rev"] = exp["rev"]
            times = stage_seconds(row.name, repo)
            entry["parameters"] = parameter_count(exp["params"])
            entry["datasets"] = {}
            for dataset, m in sorted(exp["metrics"].items()):
                swds = [m[k] for k in ("swd_prior", "swd_gmm") if m.get(k) is not None]
                entry["datasets"][dataset] = {**{k: m.get(k) for k in KEYS},
                                              "swd_best": min(swds) if swds else None,
                                              **times.get(dataset, {})}
        results.append(entry)
    return {"grid": results}


def merge(old: dict | None, new: dict) -> dict:
    """The rows of ``new`` replace those of ``old``; rows in GRID order."""
    rows = {e["name"]: e for e in (old or {}).get("grid", [])}
    rows.update({e["name"]: e for e in new["grid"]})
    return {"grid": [rows[r.name] for r in GRID if r.name in rows]}


def comparison_figures(results: dict, repo: Path, names=("seed", "default"),
                       n: int = 8, seed: int = 0) -> list[Path]:
    """figures/comparison/<dataset>.png: the same test faces reconstructed by each named
    experiment's model, then samples of each (its default sampler), one row per model. The
    models are read from DVC's cache at each experiment's commit."""
    import tempfile

    import dvc.api
    import torch

    from toonvae import figures
    from toonvae.archs import choose_sampler
    from toonvae.data import PreparedData, seeded_rows, to_float
    from toonvae.model import load_model

    by_name = {e["name"]: e for e in results["grid"]}
    if not all("datasets" in by_name.get(nm, {}) for nm in names):
        return []
    written = []
    for dataset in by_name[names[0]]["datasets"]:
        test = PreparedData(repo / "data" / "prepared" / dataset).split("test")
        x = to_float(test[seeded_rows(len(test), n, seed)])
        rows, labels, samples = [x], ["test faces"], []
        for nm in names:
            path = f"models/{dataset}/model.pt"
            with (dvc.api.open(path, repo=str(repo), rev=by_name[nm]["rev"], mode="rb") as f,
                  tempfile.TemporaryDirectory() as tmp):
                (Path(tmp) / "model.pt").write_bytes(f.read())
                model, _ = load_model(Path(tmp) / "model.pt")
            rows.append(model.reconstruct(x))
            labels.append(f"{nm}\nreconstructions")
            sampler = choose_sampler("auto", model)
            samples.append((model.sample(n, torch.Generator().manual_seed(seed),
                                         sampler=sampler), f"{nm}\nsamples ({sampler})"))
        rows += [s for s, _ in samples]
        labels += [label for _, label in samples]
        out = repo / "figures" / "comparison" / f"{dataset}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        figures.labelled_rows(rows, labels, out)
        written.append(out)
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toonvae.experiments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "collect", "table"))
    ap.add_argument("--jobs", type=int, default=1,
                    help="dvc queue start --jobs; 1 keeps the train times comparable")
    ap.add_argument("--only", default="", help="comma-separated row names (default: all)")
    ap.add_argument("--repo", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    repo = args.repo
    results_path = repo / RESULTS
    if args.command in ("run", "collect"):
        names = [n for n in args.only.split(",") if n]
        unknown = sorted(set(names) - {r.name for r in GRID})
        if unknown:
            raise ToonvaeError(f"--only: no row {unknown[0]!r}; rows: "
                               + ", ".join(r.name for r in GRID))
        rows = [r for r in GRID if not names or r.name in names]
        if args.command == "run":
            queue(rows, repo)
            start_workers(args.jobs, repo)
            log(f"running {len(rows)} experiments with {args.jobs} job(s); "
                "`dvc queue status` shows progress")
        statuses = wait([r.name for r in rows], repo)
        old = (json.loads(results_path.read_text(encoding="utf-8"))
               if results_path.is_file() else None)
        new = collect(rows, repo, statuses)
        lost = [e["name"] for e in new["grid"] if e["status"] == "Success" and "datasets" not in e]
        if lost:
            raise ToonvaeError(f"dvc exp show --all-commits does not list {', '.join(lost)}; "
                               "were they removed? rerun them")
        results = merge(old, new)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        for path in comparison_figures(results, repo):
            log(f"wrote {path}")
        failed = [n for n, s in statuses.items() if s != "Success"]
        if failed:
            log(f"failed: {', '.join(failed)}; see `dvc queue logs <name>`")
    if not results_path.is_file():
        raise ToonvaeError(f"{results_path}: not found; run `python -m toonvae.experiments run`")
    from toonvae import pages

    changed = pages.refresh(repo, only="experiments")
    log(f"wrote {results_path}; the table in "
        + (", ".join(str(p.relative_to(repo)) for p in changed) or "every page is up to date"))


if __name__ == "__main__":
    from toonvae.stage import run

    run(main)
