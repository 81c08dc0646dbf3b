"""metrics/<dataset>.json: its layout, the results table made from it (toonvae.pages puts
it in the README, so it cannot drift), and comparisons with another revision.

Each file nests its numbers under the dataset's name, ``{"anime": {"mse": ...}}``, so
``dvc exp show`` and ``dvc metrics diff`` name the columns ``anime.mse`` rather than
``metrics/anime.json:mse``, and the headline metrics come first (``ORDER``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from toonvae.errors import ToonvaeError, report_errors

# The order of the keys in each file, which is dvc exp show's column order: what a
# comparison reads first, then the rest of the scores, then counts and settings.
ORDER = ("mse", "elbo_bpd", "iwae_bpd", "swd", "swd_floor", "fd", "fd_floor", "precision",
         "recall", "psnr", "ssim", "kl", "active_units", "swd_prior", "swd_gmm", "swd_flow",
         *(f"{k}_{s}" for k in ("fd", "kid", "precision", "recall")
           for s in ("prior", "gmm", "flow")),
         "kid", "kid_floor", "precision_floor", "recall_floor", "fid", "attr_probe_acc",
         "attr_recon_acc",
         "attr_orig_acc", "attr_chance_acc", "sampler", "n_test", "iwae_k", "iwae_images",
         "swd_images", "n_train", "n_val", "n_skipped", "n_duplicates")


def metrics_document(name: str, metrics: dict) -> dict:
    """The contents of metrics/<name>.json: ``metrics`` in ``ORDER``, under ``name``."""
    unknown = set(metrics) - set(ORDER)
    if unknown:
        raise ValueError(f"metrics without a place in report.ORDER: {sorted(unknown)}")
    return {name: {key: metrics[key] for key in ORDER if key in metrics}}


def unnested(document: dict) -> dict:
    """The flat metrics of one dataset's file (or of dvc's parsed copy of it); files
    committed before the nesting are flat already."""
    if len(document) == 1:
        (inner,) = document.values()
        if isinstance(inner, dict):
            return inner
    return document


def read_metrics(path: str | Path) -> dict:
    """The flat metrics of metrics/<dataset>.json."""
    return unnested(json.loads(Path(path).read_text()))

COLUMNS = [("mse", "mse ↓", "{:.5f}"), ("psnr", "psnr (dB) ↑", "{:.2f}"),
           ("ssim", "ssim ↑", "{:.3f}"), ("elbo_bpd", "elbo (bits/dim) ↓", "{:.3f}"),
           ("iwae_bpd", "iwae (bits/dim) ↓", "{:.3f}"), ("kl", "kl (nats)", "{:.1f}"),
           ("active_units", "active units", "{}"), ("swd", "swd ↓", "{:.1f}"),
           ("swd_floor", "swd floor", "{:.1f}"), ("fd", "fd ↓", "{:.1f}"),
           ("fd_floor", "fd floor", "{:.1f}"), ("precision", "precision ↑", "{:.2f}"),
           ("recall", "recall ↑", "{:.2f}"), ("fid", "fid ↓", "{:.1f}"),
           ("attr_probe_acc", "attr probe acc ↑", "{:.3f}"),
           ("attr_recon_acc", "attr acc recon / orig", "{:.3f}"), ("n_test", "test images", "{}")]


def results_table(metrics_dir: Path) -> str:
    files = sorted(Path(metrics_dir).glob("*.json"))
    lines = ["| dataset | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for f in files:
        m = read_metrics(f)
        cells = [fmt.format(m[key]) if m.get(key) is not None else "–" for key, _, fmt in COLUMNS]
        if m.get("attr_orig_acc") is not None:  # recon accuracy next to the originals' ceiling
            i = [c[0] for c in COLUMNS].index("attr_recon_acc")
            cells[i] += " / " + "{:.3f}".format(m["attr_orig_acc"])
        lines.append(f"| {f.stem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Compared by --compare, and which way is better.
LOWER_IS_BETTER = {"mse": True, "elbo_bpd": True, "iwae_bpd": True, "swd": True, "psnr": False,
                   "ssim": False, "kl": None, "active_units": None, "swd_prior": True,
                   "swd_gmm": True, "swd_flow": True, "fd": True, "precision": False, "recall": False,
                   "attr_probe_acc": False, "attr_recon_acc": False}
SPREAD = Path("experiments/spread.json")  # toonvae.spread's file of seed-to-seed spreads
# A difference of two runs has sqrt(2) times one run's spread; within two of its standard
# deviations (about 95% of seed-to-seed differences) it is called noise.
NOISE = 2 * math.sqrt(2)


def _git(args: list[str], repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def resolve(rev: str, repo: Path = Path(".")) -> str:
    """A commit for ``rev``: a git revision, or the name of a DVC experiment."""
    if not _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo).returncode:
        return rev
    refs = _git(["for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    found = [r for r in refs if r.rsplit("/", 1)[-1] == rev]
    if len(found) == 1:
        return found[0]
    raise ToonvaeError(f"--compare: {rev!r} is neither a git revision nor one experiment's "
                       "name; use a commit, branch or tag, or a name from dvc exp show")


def metrics_at(rev: str | None, name: str, repo: Path = Path(".")) -> dict | None:
    """Flat metrics of one dataset at a resolved revision (None: the working tree)."""
    path = f"metrics/{name}.json"
    if rev is None:
        return read_metrics(repo / path) if (repo / path).is_file() else None
    proc = _git(["show", f"{rev}:{path}"], repo)
    return unnested(json.loads(proc.stdout)) if proc.returncode == 0 else None


def datasets_at(rev: str | None, repo: Path = Path(".")) -> list[str]:
    if rev is None:
        return sorted(p.stem for p in (repo / "metrics").glob("*.json"))
    names = _git(["ls-tree", "--name-only", f"{rev}:metrics"], repo).stdout.split()
    return sorted(n[:-5] for n in names if n.endswith(".json"))


def verdict(key: str, old: float, new: float, spread: float | None) -> str:
    if spread is None:
        return "no spread measured"
    if abs(new - old) <= NOISE * spread:
        return "noise"
    better = LOWER_IS_BETTER.get(key)
    if better is None:
        return "changed"
    return "better" if (new < old) == better else "worse"


def compare(rev: str, to: str | None = None, repo: Path = Path("."),
            spread_file: Path | None = None) -> str:
    """A table per dataset: each metric at ``rev`` and at ``to`` (the working tree when
    None), the difference, the seed-to-seed spread and whether the difference is noise."""
    spread_file = repo / SPREAD if spread_file is None else spread_file
    spreads = json.loads(spread_file.read_text())["spread"] if spread_file.is_file() else {}
    old_rev, new_rev = resolve(rev, repo), None if to is None else resolve(to, repo)
    lines = []
    for name in sorted(set(datasets_at(old_rev, repo)) | set(datasets_at(new_rev, repo))):
        old, new = metrics_at(old_rev, name, repo), metrics_at(new_rev, name, repo)
        lines.append(f"{name}: {rev} -> {to or 'workspace'}")
        if old is None or new is None:
            lines.append(f"  only in {to or 'workspace'}" if old is None else f"  only in {rev}")
            continue
        lines.append(f"  {'metric':<16}{'before':>11}{'after':>11}{'change':>11}"
                     f"{'spread':>10}  verdict")
        for key in LOWER_IS_BETTER:
            a, b = old.get(key), new.get(key)
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                continue
            s = spreads.get(name, {}).get(key)
            change = f"{(b - a) / abs(a):+.1%}" if a else f"{b - a:+.4g}"
            lines.append(f"  {key:<16}{a:>11.5g}{b:>11.5g}{change:>11}"
                         f"{'-' if s is None else format(s, '.2g'):>10}  {verdict(key, a, b, s)}")
    if not spreads:
        lines.append(f"(no {spread_file}: run python -m benchmarks.seed_spread to measure the spread)")
    else:
        lines.append(f"spread: the standard deviation over seeds ({spread_file}); noise: a "
                     f"difference within {NOISE:.2f} spreads")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toonvae.report", description=(
        "Without options: print the results table of metrics/ (python -m toonvae.pages puts "
        "it in the README). With --compare: "
        "each metric against another revision's, with its seed-to-seed spread."))
    ap.add_argument("--compare", metavar="REV", help="a commit, branch, tag or experiment")
    ap.add_argument("--to", metavar="REV", help="compare with this revision instead of the "
                    "working tree")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(args.compare, args.to))
        return
    print(results_table(Path("metrics")))


if __name__ == "__main__":
    sys.exit(report_errors(main))
