"""Wall time of the default pipeline from scratch, each stage's share, and an experiment.

    python benchmarks/pipeline_bench.py [--repo .] [--keep] [--no-exp]

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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = re.compile(r"^Running stage '([^']+)'")
SKIPPED = re.compile(r"^Stage '([^']+)' (?:didn't change, skipping|is cached - skipping run)")


def timed(cmd: list[str], cwd: Path, env: dict, keep_log: bool = False,
          tee: Path | None = None) -> dict:
    """Run ``cmd``; the total seconds, each started stage's seconds, the skipped stages
    (and with ``keep_log``, its whole output under "log"). ``tee`` also gets each line as
    it comes, with its second since the start, so a run killed midway still leaves its log."""
    start = time.monotonic()
    marks, skipped, tail, lines = [], [], [], []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    sink = tee.open("a") if tee else None
    for line in proc.stdout:
        if sink:
            sink.write(f"[{time.monotonic() - start:7.1f}s] {line}")
            sink.flush()
        tail = (tail + [line])[-30:]
        if keep_log:
            lines.append(line)
        if m := STARTED.match(line):
            marks.append((m.group(1), time.monotonic()))
        elif m := SKIPPED.match(line):
            skipped.append(m.group(1))
    end = time.monotonic()
    if sink:
        sink.close()
    if proc.wait():
        raise SystemExit(f"{' '.join(cmd)} failed:\n{''.join(tail)}")
    stages = {name: round((marks[i + 1][1] if i + 1 < len(marks) else end) - t, 1)
              for i, (name, t) in enumerate(marks)}
    out = {"seconds": round(end - start, 1), "stages": stages, "skipped": sorted(skipped)}
    return {**out, "log": "".join(lines)} if keep_log else out


def clone_head(repo: Path, work: Path, user: str) -> tuple[Path, str, dict]:
    """A git clone of ``repo``'s HEAD at ``work``/repo, its short hash, and the environment
    that puts this Python's ``dvc`` and ``python`` first on PATH."""
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    for key, value in (("user.name", user), ("user.email", "bench@localhost")):
        subprocess.run(["git", "config", key, value], cwd=clone, check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                          capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return clone, head, env


def share(stages: dict, kind: str, total: float) -> float:
    return sum(s for name, s in stages.items() if name.split("@")[0] == kind) / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
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
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
