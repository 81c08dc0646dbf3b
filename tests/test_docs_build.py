"""The documentation site builds in strict mode, and strict mode catches what it should.

MkDocs is not in the compute lock: CI installs docs/requirements.lock after the suite and
runs this file again (``.ci/run``); without MkDocs these tests skip.
"""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("mkdocs", reason="pip install -r docs/requirements.lock")


def build(root):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(root / "site")], cwd=root, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def site_copy(tmp_path):
    for name in ("mkdocs.yml", "docs", "figures"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return tmp_path


def test_the_site_builds_strict_with_every_figure(site_copy):
    proc = build(site_copy)
    assert proc.returncode == 0, proc.stderr
    for png in (ROOT / "figures").rglob("*.png"):
        assert (site_copy / "site" / png.relative_to(ROOT)).is_file(), png
    home = (site_copy / "site" / "index.html").read_text()
    assert 'src="figures/anime/samples.png"' in home  # the repository link, served in the site


@pytest.mark.parametrize("broken", ["[gone](nowhere.md)", "[gone](scaling.md#no-such-anchor)",
                                    "![gone](../../figures/anime/nothing.png)"])
def test_a_broken_link_anchor_or_figure_fails_the_build(site_copy, broken):
    page = site_copy / "docs" / "guides" / "gpu.md"
    page.write_text(page.read_text() + f"\n{broken}\n")
    proc = build(site_copy)
    target = broken.split("(")[1].rstrip(")").split("#")[0].removeprefix("../../")
    assert proc.returncode != 0, proc.stderr
    assert "WARNING" in proc.stderr and target.split("/")[-1] in proc.stderr, proc.stderr
