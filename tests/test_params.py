import copy

import pytest
import yaml

from conftest import ROOT
from toonvae import params
from toonvae.params import ParamError

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_committed_params_are_valid():
    p = params.load(ROOT / "params.yaml")
    assert p.image_size == 64 and set(p.datasets) == {"anime", "cartoon"}
    assert p.datasets["cartoon"].style == "cartoon"


def with_change(path, value):
    raw = copy.deepcopy(DEFAULT)
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("latnt_dim", 8, "latnt_dim: unknown key"),
    ("latent_dim", DELETE, "latent_dim: missing"),
    ("latent_dim", "big", "latent_dim: expected an integer"),
    ("latent_dim", 0, "latent_dim: 0 is not allowed"),
    ("image_size", 60, "image_size: 60 is not allowed; expected a multiple of 16"),
    ("seed", -1, "seed: -1 is not allowed"),
    ("seed", 1.5, "seed: expected an integer"),
    ("train.epochs", True, "train.epochs: expected an integer"),
    ("train.lr", "fast", "train.lr: expected a number"),
    ("train.lr", -0.1, "train.lr: -0.1 is not allowed"),
    ("train.device", "tpu", "train.device: 'tpu' is not allowed; expected one of auto"),
    ("train.epoch", 3, "train.epoch: unknown key; allowed here: epochs"),
    ("model.arch", "unet", "model.arch: 'unet' is not allowed"),
    ("model.channels", [8, 16], "model.channels: expected a list of 4"),
    ("datasets.anime.source", "ftp", "datasets.anime.source: 'ftp' is not allowed"),
    ("datasets.anime.crop", "face", "datasets.anime.crop: 'face' is not allowed"),
    ("datasets.cartoon.crop_box", [0.5, 0.2, 0.4, 0.9], "datasets.cartoon.crop_box"),
    ("datasets.anime.count", 5, "datasets.anime.count: 5 is not allowed"),
    ("datasets", {}, "datasets: expected a non-empty mapping"),
    ("preprocess.val_fraction", 0.9, "preprocess.val_fraction: 0.9 is not allowed"),
    ("figures", [1, 2], "figures: expected a mapping"),
    ("datasets.anime.sorce", "url", "datasets.anime.sorce: unknown key"),
    ("datasets.anime.style", DELETE, "datasets.anime.style: missing; source 'synthetic' needs it"),
    ("preprocess.max_bad_fraction", 2, "preprocess.max_bad_fraction: 2 is not allowed"),
])
def test_bad_values_name_the_key(path, value, message):
    with pytest.raises(ParamError) as err:
        params.from_dict(with_change(path, value))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("lr: null", "lr: 1e-3")
    (tmp_path / "params.yaml").write_text(text)
    assert params.load(tmp_path / "params.yaml").train.lr == 0.001


def test_unknown_dataset_and_broken_yaml(tmp_path):
    with pytest.raises(ParamError, match="no dataset 'celeba'"):
        params.from_dict(DEFAULT).dataset("celeba")
    (tmp_path / "params.yaml").write_text("seed: [1,\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        params.load(tmp_path / "params.yaml")


@pytest.mark.parametrize("entry, message", [
    ({"source": "kaggle", "crop": "center"}, "datasets.x.handle: missing"),
    ({"source": "kaggle", "crop": "center", "handle": "splcher/animefacedataset"},
     "datasets.x.handle: 'splcher/animefacedataset' is not allowed; expected a pinned handle"),
    ({"source": "url", "crop": "box", "url": "ftp://host/a.tgz"},
     "datasets.x.url: 'ftp://host/a.tgz' is not allowed"),
    ({"source": "url", "crop": "box", "url": "https://h/a.tgz", "sha256": "abc"},
     "datasets.x.sha256: 'abc' is not allowed; expected 64 hex digits"),
    ({"source": "folder", "crop": "center"}, "datasets.x.path: missing"),
    ({"source": "folder", "crop": "center", "path": "/d", "glob": "../*.png"},
     "datasets.x.glob: '../*.png' is not allowed"),
    ({"source": "url", "crop": "center", "style": "anime", "count": 100},
     "datasets.x.url: missing; source 'url' needs it"),
])
def test_each_source_checks_its_own_options(entry, message):
    raw = copy.deepcopy(DEFAULT)
    raw["datasets"] = {"x": entry}
    with pytest.raises(ParamError) as err:
        params.from_dict(raw)
    assert message in str(err.value)


def test_real_sources_validate():
    raw = copy.deepcopy(DEFAULT)
    raw["datasets"] = {
        "anime": {"source": "kaggle", "crop": "center", "handle": "splcher/animefacedataset/versions/3"},
        "cartoon": {"source": "url", "crop": "box", "url": "https://storage.googleapis.com/"
                    "cartoonset_public_files/cartoonset10k.tgz"},
        "myfaces": {"source": "folder", "crop": "center", "path": "/some/dir", "glob": "**/*.png"},
    }
    p = params.from_dict(raw)
    assert p.datasets["myfaces"].glob == "**/*.png" and p.datasets["cartoon"].sha256 is None


def test_switching_a_source_keeps_the_other_sources_options():
    raw = copy.deepcopy(DEFAULT)
    raw["datasets"]["cartoon"].update(source="url", url="https://h/cartoonset10k.tgz")
    p = params.from_dict(raw)  # style/count/raw_size stay, unused by url
    assert p.datasets["cartoon"].source == "url" and p.datasets["cartoon"].count == 4000
