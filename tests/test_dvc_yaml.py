"""dvc.yaml declares what every stage reads: a missing dep means silently stale results."""

import re

import yaml

from conftest import ROOT
from deps_util import toonvae_imports

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_body(stage):
    return stage.get("do", stage)


def test_every_stage_depends_on_the_library_files_it_imports():
    for name, stage in DVC.items():
        body = stage_body(stage)
        script = re.search(r"python (stages/\S+\.py)", body["cmd"]).group(1)
        deps = [d for d in body["deps"] if isinstance(d, str)]
        assert script in deps, name
        for f in toonvae_imports(ROOT / script):
            rel = f.relative_to(ROOT).as_posix()
            assert any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps), \
                f"stage {name} imports {rel} but does not list it in deps"


def test_per_dataset_stages_have_the_users_names():
    per_dataset = {n for n, s in DVC.items() if "foreach" in s}
    assert per_dataset == {"download", "preprocess", "train", "evaluate", "render-figures"}
    assert all(s["foreach"] == "${datasets}" for n, s in DVC.items() if n in per_dataset)


def test_results_in_git_are_not_cached_and_data_is():
    outs = {}
    for stage in DVC.values():
        body = stage_body(stage)
        for kind in ("outs", "metrics", "plots"):
            for o in body.get(kind, []):
                path, opts = (o, {}) if isinstance(o, str) else next(iter(o.items()))
                outs[path] = opts.get("cache", True)
    assert outs["metrics/${key}.json"] is False
    assert outs["figures/${key}"] is False and outs["figures/vae.png"] is False
    assert outs["data/raw/${key}"] and outs["data/prepared/${key}"] and outs["models/${key}"]
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/data/" in ignored and "/models/" in ignored
