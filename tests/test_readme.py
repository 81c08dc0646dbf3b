import re

from conftest import ROOT
from toonvae.report import END, START, results_table

README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start_blocks():
    section = re.search(r"^## Quick start$(.*?)(?=^## )", README, re.M | re.S).group(1)
    return [b.strip() for b in re.findall(r"^```[^\n]*\n(.*?)^```", section, re.M | re.S)]


def test_quick_start_is_two_one_line_commands_and_ci_runs_the_second():
    blocks = quick_start_blocks()
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    assert "python3 -m venv .venv" in blocks[0] and blocks[0].endswith("dvc repro")
    assert blocks[1].endswith("pytest")
    for block in blocks:  # the exact versions, then the project itself
        assert "pip install -r requirements.lock && pip install --no-deps -e ." in block
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1] in ci.splitlines()


def test_results_table_matches_the_metrics_files():
    table = README.split(START)[1].split(END)[0].strip()
    assert table == results_table(ROOT / "metrics")
    assert "| anime |" in table and "| cartoon |" in table


def test_every_committed_figure_is_shown():
    figures = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "figures").rglob("*.png"))
    assert figures, "no committed figures"
    for fig in figures:
        assert f"({fig})" in README, f"{fig} is not in the README"


def test_architecture_tables_are_the_benchmark_output_of_the_committed_rows():
    import json

    from toonvae.tables import brief_table, gaps_table, table

    def rows(name):
        return json.loads((ROOT / "experiments" / name).read_text())
    for name in ("archs.json", "archs-gpu.json", "upsample.json", "hvae-3x.json",
                 "hvae-3x-b16.json"):
        assert table(rows(name)) in README, f"README's table of experiments/{name} is stale"
    temperatures = table(rows("hvae-temperatures.json")).split("\n\n")[-1]
    assert temperatures.startswith("| dataset | arch | t = 0.5 |") and temperatures in README
    assert brief_table(rows("hvae-sweep.json")) in README
    for name in ("hvae-6x.json", "hvae-12x.json"):  # their gaps: in the one below
        assert table(rows(name)).split("\n\n")[0] in README, f"experiments/{name} is stale"
    gaps = gaps_table(rows("hvae-gaps.json") + rows("hvae-6x.json") + rows("hvae-12x.json"))
    assert gaps.startswith("swd when the latent levels named") and gaps in README
    seeds = sorted(rows("hvae-gaps.json") + rows("hvae-seeds.json"), key=lambda r: r["dataset"])
    assert table(seeds).split("\n\n")[0] in README, "README's table of hvae's seeds is stale"
