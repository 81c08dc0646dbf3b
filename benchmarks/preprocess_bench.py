"""Preprocess throughput with 1 and 2 worker processes, and peak memory vs dataset size.

    python -m benchmarks.preprocess_bench [--small 5000] [--large 20000] [--size 256]

Draws synthetic Cartoon-Set-like faces (RGBA PNGs) once into a scratch folder, then:
1. preprocesses the small set with workers=1 and workers=2: images/s and the speedup;
2. preprocesses the small and the large set, each in a fresh process, sampling the
   resident memory of that process and its workers: peak RSS and the large/small ratio
   (flat memory means a ratio near 1; the target is at most 1.2).
Ratios are measured in the same run, so they hold on any machine; absolute times do not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PREPARE = """
import sys, time, json
from toonvae.prepare import prepare
raw, out, size, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
m = prepare(raw, out, image_size=size, crop="box", box=(0.1, 0.08, 0.9, 0.88), val_fraction=0.05,
            test_fraction=0.05, min_side=16, seed=0, workers=workers)
print(json.dumps({"seconds": time.perf_counter() - t, "images": sum(m["counts"].values())}))
"""


def run_prepare(raw: Path, out: Path, size: int, workers: int) -> dict:
    """Run prepare in a fresh process; sample the RSS of it and its children every 20 ms."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-c", PREPARE, str(raw), str(out), str(size),
                             str(workers)], stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    result = json.loads(proc.stdout.read())
    if proc.returncode:
        raise SystemExit(f"prepare failed with exit code {proc.returncode}")
    shutil.rmtree(out, ignore_errors=True)
    return {**result, "peak_rss_mb": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--large", type=int, default=20000)
    ap.add_argument("--size", type=int, default=256, help="prepared image size (default 256)")
    ap.add_argument("--raw-size", type=int, default=320, help="drawn image size (default 320)")
    ap.add_argument("--scratch", type=Path, default=None)
    args = ap.parse_args()
    from toonvae.sources.synthetic import generate

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="toonvae-bench-"))
    try:
        large = scratch / "large"
        generate("cartoon", large, args.large, seed=0, size=args.raw_size)
        small = scratch / "small"
        (small / "cartoonset").mkdir(parents=True)
        for png in sorted((large / "cartoonset").glob("*.png"))[:args.small]:
            (small / "cartoonset" / png.name).symlink_to(png)  # the same bytes, no copy

        one = run_prepare(small, scratch / "out", args.size, workers=1)
        two = run_prepare(small, scratch / "out", args.size, workers=2)
        big = run_prepare(large, scratch / "out", args.size, workers=2)
        report = {
            "images_per_s_1_worker": one["images"] / one["seconds"],
            "images_per_s_2_workers": two["images"] / two["seconds"],
            "speedup_2_vs_1": one["seconds"] / two["seconds"],
            f"peak_rss_mb_{args.small}": two["peak_rss_mb"],
            f"peak_rss_mb_{args.large}": big["peak_rss_mb"],
            "rss_ratio_large_vs_small": big["peak_rss_mb"] / two["peak_rss_mb"],
            "image_size": args.size,
        }
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()},
                         indent=2))
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
