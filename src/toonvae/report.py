"""The README's results table, made from metrics/<dataset>.json so it cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = [("mse", "mse ↓", "{:.5f}"), ("psnr", "psnr (dB) ↑", "{:.2f}"),
           ("ssim", "ssim ↑", "{:.3f}"), ("elbo_bpd", "elbo (bits/dim) ↓", "{:.3f}"),
           ("iwae_bpd", "iwae (bits/dim) ↓", "{:.3f}"), ("kl", "kl (nats)", "{:.1f}"),
           ("active_units", "active units", "{}"), ("swd", "swd ↓", "{:.1f}"),
           ("swd_floor", "swd floor", "{:.1f}"), ("fid", "fid ↓", "{:.1f}"),
           ("attr_probe_acc", "attr probe acc ↑", "{:.3f}"),
           ("attr_recon_acc", "attr acc recon / orig", "{:.3f}"), ("n_test", "test images", "{}")]


def results_table(metrics_dir: Path) -> str:
    files = sorted(Path(metrics_dir).glob("*.json"))
    lines = ["| dataset | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for f in files:
        m = json.loads(f.read_text())
        cells = [fmt.format(m[key]) if m.get(key) is not None else "–" for key, _, fmt in COLUMNS]
        if m.get("attr_orig_acc") is not None:  # recon accuracy next to the originals' ceiling
            i = [c[0] for c in COLUMNS].index("attr_recon_acc")
            cells[i] += " / " + "{:.3f}".format(m["attr_orig_acc"])
        lines.append(f"| {f.stem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(readme: Path, metrics_dir: Path) -> bool:
    """Rewrite the table between the markers; return whether the file changed."""
    text = Path(readme).read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme}: no {START} ... {END} markers")
    new = pattern.sub(lambda _: f"{START}\n{results_table(metrics_dir)}\n{END}", text)
    if new != text:
        Path(readme).write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = update_readme(Path("README.md"), Path("metrics"))
    print("README.md results table " + ("updated" if changed else "already up to date"))
