"""Run-to-run spread of every metric: the committed run retrained with other seeds.

    python -m benchmarks.seed_spread [--seeds 1,2,3] [--repo .] [--out experiments/spread.json]
    python -m benchmarks.seed_spread --seeds 4,5 --add experiments/spread.json   # more seeds
    python -m benchmarks.seed_spread --seeds 1 --datasets cartoon --out cartoon-spread.json

Clones the repository's HEAD, prepares its data (seed 0, as committed), then for each
seed retrains and re-evaluates every dataset on that same data (``dvc repro -s train@X
evaluate@X``): the seed moves the initial weights, the batch order, the reparameterisation
noise and the evaluation's random draws, not the faces. With the committed metrics as
seed 0, it writes each metric's values and their standard deviation (n - 1) to ``--out``,
which ``python -m toonvae.report --compare REV`` reads to tell noise from change.
``--add FILE`` keeps the seeds FILE holds and adds these, if FILE's seed-0 values are this
HEAD's committed metrics (else its seeds measured other results, and it stops).

About 11 minutes per seed for the default params on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from benchmarks.harness import clone_head, timed
from toonvae.errors import ToonvaeError, report_errors
from toonvae.report import LOWER_IS_BETTER, read_metrics
from toonvae.spread import check_addition, record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--seeds", default="1,2,3", help="seeds besides the committed run's")
    ap.add_argument("--out", type=Path, help="write the result here (JSON)")
    ap.add_argument("--add", type=Path, help="add to this earlier result (and write it there)")
    ap.add_argument("--datasets", help="comma-separated (default: every dataset of params.yaml)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    earlier = json.loads(args.add.read_text()) if args.add else None
    args.out = args.out or args.add
    work = Path(tempfile.mkdtemp(prefix="toonvae-seed-spread-"))
    try:
        clone, head, env = clone_head(args.repo, work, "seed-spread")
        params = yaml.safe_load((clone / "params.yaml").read_text())
        names = list(params["datasets"])
        if args.datasets:
            unknown = sorted(set(args.datasets.split(",")) - set(names))
            if unknown:
                raise ToonvaeError(f"--datasets: {', '.join(unknown)} not in params.yaml's "
                                   f"datasets ({', '.join(names)})")
            names = [n for n in names if n in args.datasets.split(",")]
        base_seed = params["seed"]
        values = {n: {k: [read_metrics(clone / "metrics" / f"{n}.json")[k]]
                      for k in LOWER_IS_BETTER} for n in names}
        if earlier:
            check_addition(earlier, args.add, seeds, values, head)
            values = earlier["values"]
        print(f"preparing the data of {head} ...", flush=True)
        timed(["dvc", "repro", *(f"preprocess@{n}" for n in names)], clone, env)
        for seed in seeds:
            params["seed"] = seed
            (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            stages = [f"{kind}@{n}" for n in names for kind in ("train", "evaluate")]
            run = timed(["dvc", "repro", "-s", *stages], clone, env)
            for n in names:
                m = read_metrics(clone / "metrics" / f"{n}.json")
                for k in LOWER_IS_BETTER:
                    values[n][k].append(m[k])
            print(f"seed {seed}: {run['seconds']:.0f} s; " + "; ".join(
                f"{n} mse {values[n]['mse'][-1]:.5f} swd {values[n]['swd'][-1]}"
                for n in names), flush=True)
        result = record(head, seeds, values, earlier, base_seed)
        text = json.dumps(result, indent=2) + "\n"
        print(text)
        if args.out:
            args.out.write_text(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(report_errors(main))
