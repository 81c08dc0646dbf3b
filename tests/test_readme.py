"""The README and the documentation pages: short, generated from their data, linked right."""

import re
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT
from toonvae import pages
from toonvae.errors import ToonvaeError
from toonvae.report import results_table

README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


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


def test_readme_is_a_front_door_of_at_most_200_lines():
    assert len(README.splitlines()) <= 200
    for heading in ("## Quick start", "## A CPU-only install", "## Results",
                    "## Train on the real datasets",
                    "## On a GPU", "## Compare experiments", "## Use a trained model",
                    "## Development", "## Documentation"):
        assert f"\n{heading}\n" in README, heading


def test_the_python_version_is_the_one_pyproject_requires():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert "Python 3.11 or later" in README


def test_every_generated_block_agrees_with_its_data():
    stale = pages.refresh(ROOT, write=False)
    assert not stale, f"run python -m toonvae.pages: {stale}"
    table = README.split("<!-- gen: results -->\n")[1].split("<!-- /gen -->")[0].strip()
    assert table == results_table(ROOT / "metrics")
    assert "| anime |" in table and "| cartoon |" in table


def test_a_change_of_data_makes_its_page_stale(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "anime.json").write_text((ROOT / "metrics" / "anime.json").read_text())
    page = tmp_path / "README.md"
    page.write_text("# t\n<!-- gen: results -->\nold\n<!-- /gen -->\nrest\n")
    assert pages.refresh(tmp_path) == [page]
    assert "| anime | 0." in page.read_text() and page.read_text().endswith("<!-- /gen -->\nrest\n")
    assert pages.refresh(tmp_path, write=False) == []
    text = (tmp_path / "metrics" / "anime.json").read_text()
    (tmp_path / "metrics" / "anime.json").write_text(text.replace('"mse": 0.', '"mse": 1.', 1))
    assert pages.refresh(tmp_path, write=False) == [page]


def test_a_broken_block_is_one_line_naming_the_page_and_the_block(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- gen: arch nosuch.json -->\n<!-- /gen -->\n")
    with pytest.raises(ToonvaeError, match=r"README.md: <!-- gen: arch nosuch.json -->: "
                       r".*nosuch.json: not found"):
        pages.refresh(tmp_path)
    (tmp_path / "README.md").write_text("<!-- gen: nonsense -->\n<!-- /gen -->\n")
    proc = subprocess.run([sys.executable, "-m", "toonvae.pages", "--check", "--root",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no generator 'nonsense'" in proc.stderr and "Traceback" not in proc.stderr


def test_every_committed_figure_is_shown_somewhere():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    figures = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "figures").rglob("*.png"))
    assert figures, "no committed figures"
    for fig in figures:
        assert f"/{fig})" in text or f"({fig})" in text, f"{fig} is on no page"


def test_every_relative_link_of_the_readme_and_the_pages_exists():
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links {target}, which is not there"


def test_no_page_speaks_of_how_the_project_is_made():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        words = re.findall(r"\b(issues?|sessions?|lent)\b", text, re.I)
        assert not words, f"{page.relative_to(ROOT)}: {words}"


def test_params_reference_lists_every_key_of_params_yaml():
    import yaml

    page = (ROOT / "docs" / "reference" / "params.md").read_text()
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, body in values.items():
        keys = [section] if not isinstance(body, dict) or section == "datasets" else [
            f"{section}.{k}" for k in body]
        for key in keys:
            assert f"| `{key}` |" in page or section == "datasets", key
    for key in ("source", "handle", "url", "path", "glob", "crop_box"):  # per dataset
        assert f"| `{key}` |" in page.split("### datasets.")[1].split("### ")[0], key


@pytest.mark.slow
def test_the_readme_python_snippet_runs_on_a_trained_pipeline(tiny_pipeline):
    snippet = re.search(r"^```python\n(.*?)^```", README, re.M | re.S).group(1)
    assert 'toonvae.load("models/anime")' in snippet
    snippet = snippet.replace("models/anime", "models/cartoon")  # the tiny pipeline's dataset
    proc = subprocess.run([sys.executable, "-c", snippet + "\nprint(faces.shape, strip.shape)"],
                          cwd=tiny_pipeline[0], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("torch.Size([16, 3, ") and "torch.Size([8, 3, " in proc.stdout
