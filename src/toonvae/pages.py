"""Every generated part of the README and the documentation site, from committed data.

A page marks a generated block as

    <!-- gen: NAME ARG ... -->
    ...
    <!-- /gen -->

and this module fills it from ``metrics/``, ``experiments/*.json``, ``params.py`` and
``params.yaml``, ``dvc.yaml`` or the CLI's ``--help``. ``python -m toonvae.pages`` rewrites
every block; ``--check`` only says which pages disagree with their data (tests and CI run it).
Nothing here imports torch, so it runs in a second.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import json
import os
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import yaml

from toonvae import tables
from toonvae.errors import ToonvaeError, report_errors
from toonvae.files import write_text

BLOCK = re.compile(r"(<!-- gen: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(?=^<!-- /gen -->$)",
                   re.S | re.M)
HELP_COLUMNS = "92"  # argparse wraps --help to the terminal; fixed here so pages do not move


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _rows(root: Path, names: list[str]) -> list[dict]:
    """The rows of experiments/<name>... in turn; ``--by-dataset`` groups them by dataset."""
    rows = [r for n in names if not n.startswith("--")
            for r in json.loads((root / "experiments" / n).read_text(encoding="utf-8"))]
    return sorted(rows, key=lambda r: r["dataset"]) if "--by-dataset" in names else rows


def _sources(root: Path) -> dict:
    return json.loads((root / "experiments" / "sources.json").read_text())


def stamp(root: Path, names: list[str]) -> str:
    """Where a page's data came from: the file, its commit, torch and device, the command."""
    src = _sources(root)
    lines = []
    for n in dict.fromkeys(names):
        s = src[n]
        note = f" ({s['note']})" if s.get("note") else ""
        lines.append(f"- `experiments/{n}`: commit `{s['commit']}`, torch {s['torch']}, "
                     f"{s['device']}; `{s['command']}`{note}")
    return "Data of this page:\n\n" + "\n".join(lines)


def spread_table(root: Path) -> str:
    """σ over the seeds of experiments/spread.json, and the lowest and highest value."""
    data = json.loads((root / "experiments" / "spread.json").read_text())
    keys = ["mse", "elbo_bpd", "iwae_bpd", "swd", "psnr", "ssim", "swd_prior", "attr_probe_acc"]
    lines = [f"Standard deviation σ over seeds {', '.join(map(str, data['seeds']))} "
             f"(seed 0 and the spread's own runs at commit `{data['commit']}`; "
             "lowest and highest value in brackets):", "",
             "| dataset | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for dataset, sd in data["spread"].items():
        cells = []
        for k in keys:
            vals = data["values"][dataset].get(k)
            cells.append("–" if k not in sd else
                         f"σ {sd[k]:.2g} ({min(vals):.4g}–{max(vals):.4g})")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _field_comments(source: str) -> dict[tuple[str, str], str]:
    """{(class, field): the comment lines just above the field} of params.py."""
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                i, comment = item.lineno - 2, []
                while i >= 0 and lines[i].strip().startswith("#"):
                    comment.insert(0, lines[i].strip().lstrip("#").strip())
                    i -= 1
                found[(node.name, item.target.id)] = " ".join(comment)
    return found


def _yaml_comments(text: str) -> dict[str, str]:
    """{dotted key: its comment} of params.yaml, continuation lines included."""
    found, path, last = {}, [], None
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z_][\w-]*):\s*([^#]*?)\s*(?:#\s?(.*))?$", line)
        if m:
            depth = len(m.group(1)) // 2
            path = path[:depth] + [m.group(2)]
            last = ".".join(path)
            if m.group(4):
                found[last] = m.group(4).strip()
        elif last and re.match(r"^ +#", line) and last in found:
            found[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None if line.strip() else last
    return found


def _fmt_value(v) -> str:
    if v is None:
        return "`null`"
    return f"`{json.dumps(v) if isinstance(v, (list, tuple, bool)) else v}`"


def params_reference(root: Path) -> str:
    """One table per section of params.yaml: key, value here, what is allowed, what it does."""
    from toonvae import params as P

    source = (root / "src" / "toonvae" / "params.py").read_text()
    code_doc = _field_comments(source)
    text = (root / "params.yaml").read_text()
    yaml_doc = _yaml_comments(text)
    values = yaml.safe_load(text)

    def rows(cls, prefix, given):
        out = []
        for f in dataclasses.fields(cls):
            if f.name == "datasets":
                continue
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(f.default):
                continue  # a section: its own table
            required = f.default is dataclasses.MISSING
            value = given.get(f.name, None if required else f.default)
            allowed = f.metadata.get("allowed", "")
            doc = code_doc.get((cls.__name__, f.name)) or yaml_doc.get(key, "")
            shown = "required" if required and f.name not in given else _fmt_value(value)
            allowed, doc = (t.replace("*", "\\*").replace("|", "\\|") for t in (allowed, doc))
            out.append(f"| `{key}` | {shown} | {allowed} | {doc} |")
        return out

    head = ["| key | value in params.yaml | allowed | what it does |", "|---|---|---|---|"]
    parts = ["### Top level", "", *head, *rows(P.Params, "", values)]
    sections = [("datasets.&lt;name&gt;", P.DatasetParams, None)] + [
        (f.name, f.default.__class__, f.name) for f in dataclasses.fields(P.Params)
        if dataclasses.is_dataclass(f.default)]
    for title, cls, key in sections:
        given = values.get(key, {}) if key else {}
        body = rows(cls, f"{key}." if key else "", given)  # datasets: defaults, short keys
        parts += ["", f"### {title}", "", *head, *body]
    parts += ["", "Keys of `datasets.<name>` that each source reads: " + "; ".join(
        f"`{s}`: " + ", ".join(f"`{k}`" for k in sorted(ks)) for s, ks in P.SOURCE_KEYS.items())
        + ". For `datasets.<name>`, the value column gives the default; set one as "
        "`-S datasets.anime.count=8000`."]
    return "\n".join(parts)


def stages_reference(root: Path) -> str:
    """dvc.yaml's stages: command, what each reads (files and params) and writes."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]

    def names(items):
        return ", ".join(f"`{next(iter(i)) if isinstance(i, dict) else i}`" for i in items)

    lines = ["| stage | command | reads | params | library modules | writes |",
             "|---|---|---|---|---|---|"]
    for name, s in stages.items():
        body = s.get("do", s)
        name = f"{name}@${{item}}" if "foreach" in s else name
        params = []
        for p in body.get("params", []):
            params += list(p.values())[0] if isinstance(p, dict) else [p]
        deps = [d for d in body.get("deps", []) if not d.startswith("src/toonvae/")]
        library = [d.removeprefix("src/toonvae/").removesuffix(".py")
                   for d in body.get("deps", []) if d.startswith("src/toonvae/")]
        outs = body.get("outs", []) + body.get("metrics", []) + body.get("plots", [])
        lines.append(f"| `{name}` | `{body['cmd']}` | {names(deps)} "
                     f"| {', '.join(f'`{p}`' for p in params)} | {', '.join(library)} "
                     f"| {names(outs)} |")
    return "\n".join(lines).replace("${item}", "<dataset>").replace("${key}", "<dataset>")


def archs_table() -> str:
    """The registry: what each model.arch trains with under the params' auto settings."""
    from toonvae.archs import ARCHS, DEFAULT_ARCH

    lines = ["| `model.arch` | class | lr (`train.lr: null`) | likelihood (`auto`) "
             "| sampler (`auto`) | CPU batch (`auto`) | gradient clip |",
             "|---|---|---:|---|---|---:|---|"]
    for name, a in ARCHS.items():
        clip = "–" if a.grad_clip_per_value is None else f"{a.grad_clip_per_value:g} x pixel values"
        lines.append(f"| `{name}`{' (default)' if name == DEFAULT_ARCH else ''} "
                     f"| `{a.model.split(':')[1]}` | {a.lr:g} | {a.likelihood} | {a.sampler} "
                     f"| {a.cpu_batch} | {clip} |")
    return "\n".join(lines)


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=[a-z)`])(?<!\bal)\. ", text, maxsplit=1)[0].rstrip(".")


def layout(root: Path) -> str:
    """Every module of the library, the benchmarks and the research scripts, by docstring."""
    lines = ["| path | what it is |", "|---|---|"]
    for folder in ("stages", "src/toonvae", "benchmarks", "research"):
        for path in sorted((root / folder).rglob("*.py")):
            if path.name == "__init__.py" and path.parent.name != "archs" and \
                    path.parent.name != "sources":
                continue
            lines.append(f"| `{path.relative_to(root).as_posix()}` | {_summary(path)} |")
    for path in sorted((root / "research").glob("*.sh")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines()[1:]
                      if ln.startswith("#") and ln.strip("# ")), "")
        lines.append(f"| `{path.relative_to(root).as_posix()}` | {first} |")
    src = _sources(root)
    for path in sorted((root / "experiments").glob("*.json")):
        if path.name == "sources.json":
            what = "where each file here came from: commit, torch, device, command"
        else:
            what = f"`{src[path.name]['command']}`" if path.name in src else ""
        lines.append(f"| `experiments/{path.name}` | {what} |")
    return "\n".join(lines)


def cli_reference(root: Path) -> str:
    from toonvae.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        ap = build_parser()
        parts = ["```console", "$ toonvae --help", ap.format_help().rstrip(), "```"]
        sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in sub.choices.items():
            parts += ["", f"### toonvae {name}", "", "```console", f"$ toonvae {name} --help",
                      p.format_help().rstrip(), "```"]
    finally:
        if old is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


def render(spec: str, root: Path) -> str:
    name, *args = spec.split()
    if name == "results":
        from toonvae.report import results_table
        return results_table(root / "metrics")
    if name == "experiments":
        return tables.grid_table(json.loads((root / "experiments" / "results.json").read_text()))
    if name == "arch":  # arch_bench rows; "arch-main" leaves the gaps and temperatures out
        return tables.table(_rows(root, args))
    if name == "arch-main":
        return tables.table(_rows(root, args)).split("\n\n")[0]
    if name == "temperatures":
        return tables.table(_rows(root, args)).split("\n\n")[-1]
    if name == "gaps":
        return tables.gaps_table(_rows(root, args))
    if name == "brief":
        return tables.brief_table(_rows(root, args))
    if name == "flow":
        return tables.flow_table(_rows(root, args))
    if name == "seed-summary":
        return tables.seed_summary(_rows(root, args))
    if name == "recipe":
        return tables.recipe_table(_rows(root, args))
    if name == "table":  # a measurement table kept as {"columns": [...], "rows": [[...]]}
        data = json.loads((root / "experiments" / args[0]).read_text(encoding="utf-8"))
        cells = [[f"{c:,}" if isinstance(c, int) else str(c) for c in row]
                 for row in data["rows"]]
        return "\n".join(["| " + " | ".join(data["columns"]) + " |",
                          "|" + "---|" * len(data["columns"])]
                         + ["| " + " | ".join(row) + " |" for row in cells])
    if name == "committed-cpu":  # the CPU whose fingerprint the train stage checks against
        meta = json.loads((root / "experiments" / "numerics" / "committed.json")
                          .read_text(encoding="utf-8"))["meta"]
        return (f"The committed results were computed on: {meta['cpu']} ({meta['vendor']}, "
                f"family/model/stepping {meta['family/model/stepping']}; "
                f"{', '.join(meta['isa'])}), torch {meta['torch']}, {meta['threads']} threads.")
    if name == "platform":  # what computed a committed run
        text = (root / "metrics" / "platform" / f"{args[0]}.json").read_text(encoding="utf-8")
        return "```json\n" + text.rstrip() + "\n```"
    if name == "gpu-speed":  # the Kaggle-scale resnet run on a GPU, in one sentence
        from toonvae.archs import DEFAULT_ARCH

        row = next(r for r in _rows(root, ["archs-gpu.json"]) if r["arch"] == DEFAULT_ARCH
                   and r["dataset"] == "anime")
        src = _sources(root)["archs-gpu.json"]
        return (f"On {src['device'].removeprefix('GPU: ')} (torch {src['torch']}), "
                f"{row['epochs']} {row['arch']} epochs of the anime set at batch {row['batch']} "
                f"took "
                f"{row['train_s']:.0f} s of training, {row['images_per_s']:,.0f} images/s.")
    if name == "cpu-speed":  # one epoch of the anime set on a 2-core CPU (run A)
        data = json.loads((root / "experiments" / "kaggle-cpu.json").read_text(encoding="utf-8"))
        src = _sources(root)["kaggle-cpu.json"]
        per_image = data["epoch_s"] / data["train_images"]
        return (f"On a {src['device'].removeprefix('CPU: ')} at {data['threads']} threads, one "
                f"epoch of the anime set's {data['train_images']:,} training faces took "
                f"{data['epoch_s']:.0f} s ({1 / per_image:.0f} images/s): 30 epochs are about "
                f"{30 * data['epoch_s'] / 3600:.1f} hours.")
    if name == "spread":
        return spread_table(root)
    if name == "stamp":
        return stamp(root, args)
    if name == "quickstart":  # the README's two commands, as the README has them
        text = (root / "README.md").read_text(encoding="utf-8")
        section = re.search(r"^## Quick start$(.*?)(?=^## )", text, re.M | re.S).group(1)
        return "\n\n".join(re.findall(r"^```[^\n]*\n.*?^```", section, re.M | re.S))
    if name == "api":  # the README's Python snippet, which CI runs
        text = (root / "README.md").read_text(encoding="utf-8")
        return re.search(r"^```python\n.*?^```", text, re.M | re.S).group(0)
    if name == "params":
        return params_reference(root)
    if name == "stages":
        return stages_reference(root)
    if name == "archs":
        return archs_table()
    if name == "layout":
        return layout(root)
    if name == "cli":
        return cli_reference(root)
    raise ValueError(f"no generator {name!r} (see toonvae.pages.render)")


def refresh(root: Path, write: bool = True, only: str | None = None) -> list[Path]:
    """Fill every block of every page (or only the blocks named ``only``); return the pages
    whose text changed (or would)."""
    def fill(m):
        spec = m.group("spec")
        if only and spec.split()[0] != only:
            return m.group(0)
        try:
            return m.group(1) + render(spec, root) + "\n"
        except (OSError, KeyError, IndexError, ValueError) as exc:
            what = f"{exc.filename}: not found" if isinstance(exc, FileNotFoundError) else exc
            raise ToonvaeError(f"{page.relative_to(root)}: <!-- gen: {spec} -->: {what}; fix "
                               "the block or restore its data (git checkout, dvc repro)") from None

    stale = []
    for page in pages(root):
        if not page.is_file():
            continue
        old = page.read_text(encoding="utf-8")
        new = BLOCK.sub(fill, old)
        if new != old:
            stale.append(page)
            if write:
                write_text(page, new)
    return stale


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toonvae.pages",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; fail naming each page that disagrees with its data")
    ap.add_argument("--root", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    with redirect_stdout(io.StringIO()):  # nothing a generator imports may print into ours
        stale = refresh(args.root, write=not args.check)
    names = ", ".join(str(p.relative_to(args.root)) for p in stale)
    if args.check and stale:
        raise ToonvaeError(f"{names}: generated blocks disagree with their data; run "
                           "python -m toonvae.pages and commit the pages")
    print(f"updated {names}" if stale else "every generated block agrees with its data")


if __name__ == "__main__":
    sys.exit(report_errors(main))
