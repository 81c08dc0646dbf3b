"""The Markdown tables of the committed measurements (experiments/*.json: arch_bench's
rows, recipe_bench's, the experiment grid), without torch. toonvae.pages puts them in the
documentation, and tests/test_readme.py checks the pages agree with the files."""

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
    if any("swd_flow" in r for r in rows):
        lines += ["", flow_table(rows)]
    return "\n".join(lines)


def flow_table(rows: list[dict]) -> str:
    """swd of samples whose top latent levels come from a flow fitted post hoc to their
    posterior draws (``swd_flow``), beside the prior's and the mixture's, as multiples of the
    floor; and each flow's NLL of held-out draws against N(0, I)'s, in nats per dimension."""
    flowed = [r for r in rows if "swd_flow" in r]
    depths = list(dict.fromkeys(k for r in flowed for k in r["swd_flow"]))
    lines = ["swd of samples with the levels named drawn from a flow fitted to their posterior "
             "draws and the rest from the prior (x the floor), and the flow's held-out NLL "
             "against N(0, I)'s (nats/dim):", "",
             "| dataset | arch | epochs | prior | gmm | " + " | ".join(
                 f"flow: {k} | NLL {k}" for k in depths) + " |",
             "|---|---|---:|---:|---:|" + "---:|---:|" * len(depths)]
    for r in flowed:
        floor = r["swd_floor"]
        cells = []
        for k in depths:
            f = r["swd_flow"].get(k)
            cells += (["–", "–"] if f is None else
                      [f"{f['swd']:.1f} ({f['swd'] / floor:.2f}x)",
                       f"{f['flow_nll']:.3f} / {f['prior_nll']:.3f}"])
        lines.append(f"| {r['dataset']} | {r['arch']} | {r['epochs']} "
                     f"| {r['swd_prior']:.1f} ({r['swd_prior'] / floor:.2f}x) "
                     f"| {r['swd_gmm']:.1f} ({r['swd_gmm'] / floor:.2f}x) | "
                     + " | ".join(cells) + " |")
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


def recipe_table(rows: list[dict]) -> str:
    """benchmarks/recipe_bench.py's rows, with their ratios to the first (the baseline)."""
    base, lr = rows[0], "lr" in rows[0]
    lines = ["| variant |" + (" lr |" if lr else "") + " mse | elbo (bits/dim) | swd prior "
             "| swd gmm | mse ratio | swd gmm ratio |",
             "|---|" + ("---:|" if lr else "") + "---:|" * 6]
    for r in rows:
        lines.append(f"| {r['variant']} |" + (f" {r['lr']:g} |" if lr else "")
                     + f" {r['mse']:.5f} | {r['elbo_bpd']:.3f} | {r['swd_prior']:.1f} "
                     f"| {r['swd_gmm']:.1f} | {r['mse'] / base['mse']:.3f} "
                     f"| {r['swd_gmm'] / base['swd_gmm']:.3f} |")
    return "\n".join(lines)


def _fmt(v, digits):
    return "–" if v is None else f"{v:.{digits}f}"


def grid_table(results: dict) -> str:
    """The grid table: one line per experiment and dataset, then default vs seed."""
    lines = ["| experiment | changed | dataset | mse ↓ | psnr (dB) ↑ | elbo (bits/dim) ↓ | "
             "iwae (bits/dim) ↓ | swd, best sampler ↓ | train time (s) | parameters |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    by_name = {e["name"]: e for e in results["grid"]}
    for e in results["grid"]:
        changed = ", ".join(f"`{k}={v}`" for k, v in e["overrides"].items()) or "–"
        if e["status"] != "Success":
            lines.append(f"| {e['name']} | {changed} | – | {e['status'].lower()} | | | | | | |")
            continue
        for dataset, m in e["datasets"].items():
            lines.append(f"| {e['name']} | {changed} | {dataset} | {_fmt(m['mse'], 5)} | "
                         f"{_fmt(m['psnr'], 2)} | {_fmt(m['elbo_bpd'], 3)} | "
                         f"{_fmt(m['iwae_bpd'], 3)} | {_fmt(m['swd_best'], 1)} | "
                         f"{_fmt(m.get('train_s'), 0)} | {e['parameters']:,} |")
    default, seed = by_name.get("default"), by_name.get("seed")
    if default and seed and "datasets" in default and "datasets" in seed:
        lines.append("")
        for dataset, d in default["datasets"].items():
            s = seed["datasets"].get(dataset)
            if not s:
                continue
            lines.append(f"- {dataset}: the default against `arch: seed` has "
                         f"{_drop(d['mse'], s['mse'])} lower test mse, "
                         f"{s['elbo_bpd'] - d['elbo_bpd']:.3f} bits/dim lower elbo and "
                         f"{_drop(d['swd_best'], s['swd_best'])} lower swd, training for "
                         f"{_fmt(d.get('train_s'), 0)} s against {_fmt(s.get('train_s'), 0)} s.")
    return "\n".join(lines)


def _drop(ours, theirs) -> str:
    return f"{100 * (1 - ours / theirs):.0f}%"


def family(row: dict) -> str:
    """A row's setting without its seed: the arch spec less ``seed=`` and ``epochs=``, with
    the epochs it trained (the baseline's come from params.yaml, the others' from the spec),
    so that the rows of one setting trained with other seeds group together."""
    parts = [p for p in row["arch"].split("+") if not p.startswith(("seed=", "epochs="))]
    return f"{'+'.join(parts)}, {row['epochs']} epochs"


def sampler_scores(row: dict) -> dict[str, dict]:
    """{sampler: {swd, fd, kid, precision, recall}} of a row: the prior, the mixture, and
    each learned-prior depth (``flow: 4x4``); keys a row lacks are left out."""
    out = {}
    for name in ("prior", "gmm"):
        if row.get(f"swd_{name}") is not None:
            out[name] = {k: row[f"{k}_{name}"] for k in ("swd", "fd", "kid", "precision",
                                                         "recall") if f"{k}_{name}" in row}
    for depth, scores in row.get("swd_flow", {}).items():
        out[f"flow: {depth}"] = scores
    return out


def seed_summary(rows: list[dict]) -> str:
    """Per dataset, arch and sampler, over the rows of one setting (one per training seed):
    mean ± sd of mse, psnr, IWAE, and of swd and fd as multiples of their train-vs-test
    floors, precision and recall; train seconds and parameters."""
    import statistics

    def cell(values, digits=2, unit=""):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}{unit}"
        return (f"{statistics.mean(values):.{digits}f}{unit} ± "
                f"{statistics.stdev(values):.{digits}f}")

    lines = ["| dataset | arch | sampler | seeds | mse | psnr (dB) | iwae (bits/dim) | swd "
             "(x floor) | fd (x floor) | precision | recall | train s | parameters |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for arch in dict.fromkeys(family(r) for r in rows if r["dataset"] == dataset):
            here = [r for r in rows if r["dataset"] == dataset and family(r) == arch]
            model = [cell([r["mse"] for r in here], 5), cell([r["psnr"] for r in here]),
                     cell([r["iwae_bpd"] for r in here], 3)]
            cost = [cell([r["train_s"] for r in here], 0),
                    f"{statistics.mean(r['parameters'] for r in here):,.0f}"]
            samplers = list(dict.fromkeys(k for r in here for k in sampler_scores(r)))
            for sampler in samplers:
                got = [(r, sampler_scores(r).get(sampler)) for r in here]
                got = [(r, s) for r, s in got if s]

                def ratio(key, floor):
                    return cell([s[key] / r[floor] for r, s in got if key in s and floor in r],
                                unit="x")
                lines.append(" | ".join([
                    f"| {dataset}", arch, sampler, str(len(got)), *model,
                    ratio("swd", "swd_floor"), ratio("fd", "fd_floor"),
                    cell([s.get("precision") for _, s in got]),
                    cell([s.get("recall") for _, s in got]), *cost]) + " |")
            floors = [r for r in here if "fd_floor" in r]
            if floors:
                lines.append(" | ".join([
                    f"| {dataset}", arch, "train vs test (the floor)", str(len(floors)),
                    "", "", "", "1x", "1x", cell([r["precision_floor"] for r in floors]),
                    cell([r["recall_floor"] for r in floors]), "", ""]) + " |")
    return "\n".join(lines)