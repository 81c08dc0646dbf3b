"""Wall time of the default pipeline from scratch, each stage's share, and an experiment.

    python -m benchmarks.pipeline_bench [--repo .] [--keep] [--no-exp]

Clones the repository's HEAD into a scratch folder (its committed params, code and
results) and, with this Python environment's ``dvc`` and ``python`` first on PATH:

1. ``dvc repro -f`` from scratch: the total wall time and each stage's (from the moment DVC
   starts it to the start of the next), and evaluate's share of the total (target < 25%).
   ``-f`` because the clone already holds the committed metrics and figures: when the
   retrained models come out byte-identical, plain ``dvc repro`` rightly skips evaluate;
2. ``git status --porcelain``: empty means the run reproduced the committed dvc.lock,
   metrics and figures byte for byte;
3. ``dvc exp run -S latent_dim=64``: its wall time and the stages it ran (download and
   preprocess must be skipped: their inputs did not change).

Takes about 25 minutes on a 2-core laptop CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, clone_head, timed, write_json

def share(stages: dict, kind: str, total: float) -> float:
    return sum(s for name, s in stages.items() if name.split("@")[0] == kind) / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT)
    ap.add_argument("--keep", action="store_true", help="keep the scratch clone")
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--no-exp", action="store_true", help="skip step 3")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="toonvae-pipeline-bench-"))
    clone, head, env = clone_head(args.repo, work, "pipeline-bench")

    print(f"dvc repro -f from scratch in a clone of {head} ...", flush=True)
    repro = timed(["dvc", "repro", "-f"], clone, env)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout
    r = {"commit": head, "repro": repro, "changed_after_repro": status.splitlines()}
    if not args.no_exp:
        print("dvc exp run -S latent_dim=64 ...", flush=True)
        r["exp_run_latent_dim_64"] = exp = timed(["dvc", "exp", "run", "-S", "latent_dim=64"],
                                                 clone, env)
    for kind in ("download", "preprocess", "train", "evaluate", "render-figures"):
        r[f"{kind}_share"] = round(share(repro["stages"], kind, repro["seconds"]), 3)
    print(json.dumps(r, indent=2))
    print(f"dvc repro -f from scratch: {repro['seconds']:.0f} s; evaluate {r['evaluate_share']:.1%} "
          f"of it (target < 25%), train {r['train_share']:.1%}")
    print("byte-identical to the committed results: "
          + ("yes" if not status else "no, changed: " + ", ".join(status.split())))
    if not args.no_exp:
        ran = sorted(exp["stages"])
        print(f"dvc exp run -S latent_dim=64: {exp['seconds']:.0f} s; ran {', '.join(ran)}; "
              f"download/preprocess skipped: "
              f"{not any(s.split('@')[0] in ('download', 'preprocess') for s in ran)}")
    write_json(args.out, r)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
