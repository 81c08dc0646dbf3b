"""What portable numerics cost: the default pipeline in both modes, in one run.

    python -m benchmarks.numerics_bench [--repo .] [--out FILE] [--set key=value ...]

Clones the repository's HEAD and runs ``dvc repro -f`` twice in it: first with
``runtime.numerics: portable`` (the committed mode: ``git status`` then says whether the
committed results were reproduced byte for byte), then with ``native``. Prints each
stage's seconds in both modes and the ratio portable / native of the whole run and of
each kind of stage. ``--set`` overrides params for both runs (e.g. ``train.epochs=1``).

Takes about 25 minutes on a 2-core laptop CPU with the default params.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from benchmarks.harness import clone_head, timed

KINDS = ("download", "preprocess", "train", "evaluate", "render-figures")


def set_param(params: dict, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    *path, last = key.split(".")
    node = params
    for part in path:
        node = node[part]
    node[last] = yaml.safe_load(value)


def by_kind(stages: dict) -> dict:
    return {kind: round(sum(s for name, s in stages.items() if name.split("@")[0] == kind), 1)
            for kind in KINDS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="toonvae-numerics-bench-"))
    try:
        clone, head, env = clone_head(args.repo, work, "numerics-bench")
        params = yaml.safe_load((clone / "params.yaml").read_text())
        for assignment in args.set:
            set_param(params, assignment)
        result = {"commit": head, "set": args.set}
        for mode in ("portable", "native"):
            params.setdefault("runtime", {})["numerics"] = mode
            (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            print(f"dvc repro -f with runtime.numerics: {mode} ...", flush=True)
            run = timed(["dvc", "repro", "-f"], clone, env)
            run["by_kind"] = by_kind(run["stages"])
            if mode == "portable" and not args.set:
                status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, check=True,
                                        capture_output=True, text=True).stdout.split("\n")
                run["changed"] = [line for line in status if line and "params.yaml" not in line]
            result[mode] = run
        p, n = result["portable"], result["native"]
        result["ratio"] = round(p["seconds"] / n["seconds"], 3)
        result["ratio_by_kind"] = {k: round(p["by_kind"][k] / n["by_kind"][k], 3)
                                   for k in KINDS if n["by_kind"][k]}
        print(json.dumps(result, indent=2))
        print(f"dvc repro -f: portable {p['seconds']:.0f} s, native {n['seconds']:.0f} s: "
              f"portable / native = {result['ratio']:.3f}; by stage kind: "
              + ", ".join(f"{k} {r:.3f}" for k, r in result["ratio_by_kind"].items()))
        if "changed" in p:
            print("portable run byte-identical to the committed results: "
                  + ("yes" if not p["changed"] else "no: " + ", ".join(p["changed"])))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
