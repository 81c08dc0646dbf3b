"""One home per concept: the architecture registry, the sampler policy, the import graph,
and params.py's defaults against params.yaml's."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from toonvae import archs, params
from toonvae.archs import ARCHS, ModelConfig

SRC = ROOT / "src" / "toonvae"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the toonvae modules it imports}, every import statement (lazy ones in
    functions too, not those under ``if TYPE_CHECKING``), plus the registry's model classes,
    which ``toonvae.archs`` imports by name when it builds a model."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # drop what only a type checker runs
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                node.body = []
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {f for f in found if f in modules and f != name}
        graph[name] = edges
    graph["toonvae.archs"] |= {spec.model.split(":")[0] for spec in ARCHS.values()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "toonvae.archs.hvae" in graph["toonvae.archs"]  # the registry's edges are in it
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # The checker finds one where there is one: the old model.build <-> archs.hvae shape.
    assert find_cycle({**graph, "toonvae.archs.base": graph["toonvae.archs.base"]
                       | {"toonvae.archs"}}) is not None


ARCH_NAMES = set(ARCHS)


def _names_an_arch(tree: ast.AST, tables: bool = True) -> list[int]:
    """Lines that test an arch's name, ``arch == "hvae"``, ``x in ("seed", ...)``, or (with
    ``tables``) key a table of settings by one, ``{"hvae": 16}``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            consts += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                       for e in c.elts if isinstance(e, ast.Constant)]
            if any(c.value in ARCH_NAMES for c in consts):
                lines.append(node.lineno)
        elif tables and isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value in ARCH_NAMES for k in node.keys):
                lines.append(node.lineno)
    return lines


def test_no_code_outside_archs_branches_on_an_arch_name():
    files = [p for p in SRC.rglob("*.py") if "archs" not in p.relative_to(SRC).parts]
    files += sorted((ROOT / "stages").glob("*.py"))
    benchmarks = sorted((ROOT / "benchmarks").glob("*.py"))  # their result tables may name
    found = {str(p.relative_to(ROOT)): lines for p in files + benchmarks  # the archs measured
             if (lines := _names_an_arch(ast.parse(p.read_text()), p not in benchmarks))}
    assert found == {}, found
    assert _names_an_arch(ast.parse('if cfg.arch == "hvae": pass')) == [1]  # it can fail


def test_each_arch_is_what_its_registry_entry_says():
    for name, spec in ARCHS.items():
        latent = 84 if spec.hierarchical else 8
        cfg = ModelConfig(name, 32, latent, channels=(8, 8, 16, 16))
        model = archs.build(cfg)
        assert type(model) is spec.model_class()
        assert archs.likelihood(cfg) == spec.likelihood
        assert [n for n, _ in model.latent_levels()][-1] in ("all", "8x8")
        assert model.latent_levels()[-1][1] == latent
        assert spec.sampler in params.SAMPLERS
    assert archs.arch("hvae").grad_clip(ModelConfig("hvae", 64, 1344)) == 4.0 * 3 * 64 * 64
    assert archs.arch("resnet").grad_clip(ModelConfig("resnet", 64, 128)) is None
    with pytest.raises(Exception, match=r"^model.arch: 'vqvae' is not allowed; expected one of "
                                        r"resnet, seed, hvae$"):
        archs.build(ModelConfig("vqvae", 32, 8))


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_params_py_defaults_are_params_yaml_values():
    """A key deleted from params.yaml keeps its value: the dataclass default is the same."""
    given = yaml.safe_load((ROOT / "params.yaml").read_text())
    parsed = params.from_dict(given)
    checked = 0
    for section in ("preprocess", "model", "train", "evaluate", "sampler", "figures", "runtime"):
        defaults = _defaults(getattr(params, f"{section.title()}Params"))
        assert set(given[section]) <= set(defaults), section  # each has one to fall back to
        for key in given[section]:
            assert getattr(getattr(parsed, section), key) == defaults[key], f"{section}.{key}"
            checked += 1
    assert checked >= 40, checked


@pytest.fixture(scope="module")
def hvae_project(tmp_path_factory):
    """A tiny trained hvae in the DVC layout, with params.yaml saying so, and its
    evaluate stage run as `dvc repro` runs it."""
    from toonvae.prepare import prepare
    from toonvae.sources.synthetic import generate
    from toonvae.train import TrainConfig, train

    root = tmp_path_factory.mktemp("hvae-project")
    generate("cartoon", root / "raw", 60, seed=0, size=64, workers=1)
    prepare(root / "raw", root / "data" / "prepared" / "cartoon", image_size=32, crop="center",
            box=None, val_fraction=0.1, test_fraction=0.2, min_side=16, seed=0, workers=1)
    mc = ModelConfig("hvae", 32, 84, channels=(8, 8, 16, 16))
    train(root / "data" / "prepared" / "cartoon", root / "models" / "cartoon" / "model.pt",
          root / "curves", mc, TrainConfig(epochs=1, batch_size=8, threads=1, gmm_components=2))
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p.update(image_size=32, latent_dim=84)
    p["datasets"] = {"cartoon": {"source": "synthetic", "style": "cartoon", "crop": "center"}}
    p["model"].update(arch="hvae", channels=[8, 8, 16, 16])
    p["train"]["threads"] = 1
    p["evaluate"].update(batch_size=8, iwae_samples=2, iwae_images=4, swd_images=8,
                         fid_weights=None)
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), "cartoon"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root, proc.stderr


@pytest.mark.slow  # trains a model and runs a stage
def test_cli_api_and_metrics_name_the_same_sampler(hvae_project, capsys, tmp_path):
    import toonvae
    from toonvae.cli import main
    from toonvae.progress import read_summaries

    root, log = hvae_project
    model_dir = root / "models" / "cartoon"
    vae = toonvae.load(model_dir)
    assert vae.model.gmm is not None  # a mixture was fitted, yet hvae's own is the prior
    metrics = json.loads((root / "metrics" / "cartoon.json").read_text())
    scored = metrics["cartoon"]["sampler"] if "cartoon" in metrics else metrics["sampler"]
    assert main(["info", "--model", str(model_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert main(["sample", "--model", str(model_dir), "--n", "2", "--out",
                 str(tmp_path / "s.png")]) == 0
    said = capsys.readouterr().err
    assert scored == vae.default_sampler == info["default_sampler"] == "prior"
    assert "(sampler prior)" in said
    assert read_summaries(log)[-1]["sampler"] == "prior"
    # The API's samples are the prior's, not the mixture's the model also holds.
    assert vae.sample(2, seed=3).equal(vae.sample(2, seed=3, sampler="prior"))
    assert not vae.sample(2, seed=3).equal(vae.sample(2, seed=3, sampler="gmm"))


def test_the_docs_example_arch_is_one_module_and_one_entry(tmp_path, monkeypatch):
    """docs/architectures.md's module and registry entry, as written there, train."""
    import re

    from toonvae.prepare import prepare
    from toonvae.sources.synthetic import generate
    from toonvae.train import TrainConfig, train

    page = (ROOT / "docs" / "architectures.md").read_text()
    module, entry = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(module.splitlines()) <= 25  # the page promises a short example
    (tmp_path / "docs_mlp.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    name, spec = eval("{" + entry.strip().rstrip(",") + "}", vars(archs)).popitem()
    monkeypatch.setitem(ARCHS, name, dataclasses.replace(spec, model="docs_mlp:MlpVAE"))
    generate("cartoon", tmp_path / "raw", 40, seed=0, size=48, workers=1)
    prepare(tmp_path / "raw", tmp_path / "prepared", image_size=16, crop="center", box=None,
            val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)
    result = train(tmp_path / "prepared", tmp_path / "model.pt", tmp_path / "curves",
                   ModelConfig(name, 16, 4, channels=(8, 8, 8, 8)),
                   TrainConfig(epochs=1, batch_size=8, threads=1, gmm_components=2))
    assert result["lr"] == 0.001 and result["history"][0]["train"]["loss"] > 0
    from toonvae.model import describe, load_model

    model, _ = load_model(tmp_path / "model.pt")
    assert type(model).__name__ == "MlpVAE" and model.gmm is not None
    assert archs.choose_sampler("auto", model) == "gmm"
    assert [label for _, label, _ in describe(model)][1] == "flatten"
