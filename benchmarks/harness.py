"""What the benchmark scripts share: a clone of HEAD to run in, timed DVC commands, and
JSON results. Run the scripts from the repository root as modules
(``python -m benchmarks.pipeline_bench``), so that this package imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def write_json(path: Path | None, result) -> None:
    """``result`` as indented JSON at ``path`` (nothing when it is None)."""
    if path is not None:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
