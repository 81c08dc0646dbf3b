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
