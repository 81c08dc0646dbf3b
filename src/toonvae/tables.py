"""The Markdown tables of ``benchmarks/arch_bench.py``'s rows (experiments/archs*.json,
hvae-*.json), without torch: the documentation's tables are these functions' output over
the committed JSON files (tests/test_readme.py checks it)."""

from __future__ import annotations


def table(rows: list[dict]) -> str:
    lines = ["| dataset | arch | epochs | train s | parameters | images/s | mse | psnr (dB) "
             "| elbo | iwae (bits/dim) | swd prior | swd gmm | floor | flat detail |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        floor = r["swd_floor"]
        detail = f"{r['flat_detail']:.2f}" if "flat_detail" in r else "–"  # rows of before it
        lines.append(
            f"| {r['dataset']} | {r['arch']} | {r['epochs']} | {r['train_s']:.0f} "
            f"| {r['parameters']:,} | {r['images_per_s']:.0f} | {r['mse']:.5f} | {r['psnr']:.2f} "
            f"| {r['elbo_bpd']:.3f} | {r['iwae_bpd']:.3f} "
            f"| {r['swd_prior']:.1f} ({r['swd_prior'] / floor:.1f}x) "
            f"| {r['swd_gmm']:.1f} ({r['swd_gmm'] / floor:.1f}x) | {floor:.1f} | {detail} |")
    at = [r for r in rows if "swd_prior_at" in r]
    if at:
        temps = list(at[0]["swd_prior_at"])
        lines += ["", "swd from the prior at temperature t (x the floor):", "",
                  "| dataset | arch | " + " | ".join(f"t = {t}" for t in temps) + " |",
                  "|---|---|" + "---:|" * len(temps)]
        for r in at:
            floor = r["swd_floor"]
            lines.append(f"| {r['dataset']} | {r['arch']} | " + " | ".join(
                f"{v:.1f} ({v / floor:.2f}x)" for v in r["swd_prior_at"].values()) + " |")
    if any("swd_gaps" in r for r in rows):
        lines += ["", gaps_table(rows)]
    return "\n".join(lines)


def gaps_table(rows: list[dict]) -> str:
    """swd (and its multiple of the floor) of the rows' ``swd_gaps``: decodes with the top
    latent levels from the posterior and the rest from the prior, one column per level."""
    gapped = [r for r in rows if "swd_gaps" in r]
    levels = list(dict.fromkeys(k for r in gapped for k in r["swd_gaps"]))
    levels.sort(key=lambda k: (k != "none") + (k == "all"))  # none first, all last
    lines = ["swd when the latent levels named come from the posterior means of the floor's "
             "train images and the rest from the prior (x the floor):", "",
             "| dataset | arch | epochs | " + " | ".join(
                 "none (the prior)" if k == "none" else k for k in levels) + " |",
             "|---|---|---:|" + "---:|" * len(levels)]
    for r in gapped:
        floor = r["swd_floor"]
        lines.append(f"| {r['dataset']} | {r['arch']} | {r['epochs']} | " + " | ".join(
            f"{r['swd_gaps'][k]:.1f} ({r['swd_gaps'][k] / floor:.2f}x)"
            if k in r["swd_gaps"] else "–" for k in levels) + " |")
    return "\n".join(lines)


def brief_table(rows: list[dict]) -> str:
    """One row per arch (in the order of first appearance), its epochs, then per dataset:
    psnr, iwae bits/dim, and swd from the prior and from the mixture as multiples of the floor."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    cells = {(r["arch"], r["dataset"]): r for r in rows}
    head = "| arch | epochs |" + "".join(
        f" {d} psnr | {d} iwae | {d} prior | {d} gmm |" for d in datasets)
    lines = [head, "|---|---:|" + "---:|" * 4 * len(datasets)]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        here = [cells.get((arch, d)) for d in datasets]
        epochs = "/".join(sorted({str(r["epochs"]) for r in here if r}))
        line = f"| {arch} | {epochs} |"
        for r in here:
            line += (" – |" * 4 if r is None else
                     f" {r['psnr']:.2f} | {r['iwae_bpd']:.3f} "
                     f"| {r['swd_prior'] / r['swd_floor']:.2f}x "
                     f"| {r['swd_gmm'] / r['swd_floor']:.2f}x |")
        lines.append(line)
    return "\n".join(lines)
