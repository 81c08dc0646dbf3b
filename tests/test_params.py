import copy
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from toonvae import params, sources
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


SIZE_RULE = "a multiple of 16 between 16 and 1024 (the networks halve it four times)"
WIDTHS = "widths between 1 and 4096, each at most 8 or a multiple of 8"

# Each bad params.yaml variant and the one line the user sees for it, word for word.
BAD = [
    ("latnt_dim", 8, "latnt_dim: unknown key; allowed here: seed, image_size, latent_dim, "
     "datasets, preprocess, model, train, evaluate, sampler, figures, runtime"),
    ("latent_dim", DELETE, "latent_dim: missing; add it to params.yaml"),
    ("runtime.numerics", "fast",
     "runtime.numerics: 'fast' is not allowed; expected one of portable, native"),
    ("latent_dim", "big", "latent_dim: expected an integer, got 'big'"),
    ("latent_dim", 2.5, "latent_dim: expected an integer, got 2.5"),
    ("latent_dim", 0, "latent_dim: 0 is not allowed; expected between 1 and 4096"),
    ("image_size", 60, f"image_size: 60 is not allowed; expected {SIZE_RULE}"),
    ("image_size", 8, f"image_size: 8 is not allowed; expected {SIZE_RULE}"),
    ("seed", -1, "seed: -1 is not allowed; expected between 0 and 4294967295"),
    ("seed", 1.5, "seed: expected an integer, got 1.5"),
    ("train.epochs", True, "train.epochs: expected an integer, got True"),
    ("train.epochs", 0, "train.epochs: 0 is not allowed; expected between 1 and 100000"),
    ("train.batch_size", 0,
     "train.batch_size: 0 is not allowed; expected 'auto' or between 1 and 65536"),
    ("train.batch_size", "big", "train.batch_size: expected an integer or 'auto', got 'big'"),
    ("train.batch_size", 2.5, "train.batch_size: expected an integer or 'auto', got 2.5"),
    ("train.lr", "fast", "train.lr: expected a number, got 'fast'"),
    ("train.lr", -0.1, "train.lr: -0.1 is not allowed; expected between 1e-08 and 10.0"),
    ("train.lr", float("nan"), "train.lr: expected a finite number, got nan"),
    ("train.device", "tpu", "train.device: 'tpu' is not allowed; expected one of auto, cpu, cuda, mps"),
    ("train.epoch", 3, "train.epoch: unknown key; allowed here: epochs, batch_size, lr, beta, "
     "device, threads, checkpoint_every, precision, deterministic, optimizer, weight_decay, "
     "schedule, warmup_steps, kl_warmup_epochs, free_bits, ema, nproc"),
    ("train.checkpoint_every", -5,
     "train.checkpoint_every: -5 is not allowed; expected between 0 and 10000000"),
    ("train.precision", "fp16",
     "train.precision: 'fp16' is not allowed; expected one of auto, fp32, bf16"),
    ("train.deterministic", "yes", "train.deterministic: expected true or false, got 'yes'"),
    ("train.optimizer", "sgd", "train.optimizer: 'sgd' is not allowed; expected one of adamw, adam"),
    ("train.schedule", "linear",
     "train.schedule: 'linear' is not allowed; expected one of cosine, constant"),
    ("train.warmup_steps", -1,
     "train.warmup_steps: -1 is not allowed; expected between 0 and 10000000"),
    ("train.kl_warmup_epochs", -0.5,
     "train.kl_warmup_epochs: -0.5 is not allowed; expected between 0.0 and 100000.0"),
    ("train.free_bits", "some", "train.free_bits: expected a number, got 'some'"),
    ("train.ema", 1.0, "train.ema: 1.0 is not allowed; expected 0 (off) or a decay in [0.5, 1)"),
    ("train.ema", 0.2, "train.ema: 0.2 is not allowed; expected 0 (off) or a decay in [0.5, 1)"),
    ("train.nproc", 0, "train.nproc: 0 is not allowed; expected between 1 and 1024"),
    ("train", {"batch_size": 32, "nproc": 3}, "train.batch_size: 32 does not split evenly "
     "between train.nproc 3 processes; use a multiple of 3"),
    ("train.weight_decay", 2, "train.weight_decay: 2 is not allowed; expected between 0.0 and 1.0"),
    ("model.arch", "unet", "model.arch: 'unet' is not allowed; expected one of resnet, seed, hvae"),
    ("model.channels", [8, 16], "model.channels: expected a list of 4 numbers, got [8, 16]"),
    ("model.channels", [12, 24, 48, 96],
     f"model.channels: [12, 24, 48, 96] is not allowed; expected {WIDTHS}"),
    ("model.channels", [16, 32, 0, 128],
     f"model.channels: [16, 32, 0, 128] is not allowed; expected {WIDTHS}"),
    ("model.likelihood", "bernoulli",
     "model.likelihood: 'bernoulli' is not allowed; expected one of auto, gaussian, logistic, mse"),
    ("model.upsample", "bilinear",
     "model.upsample: 'bilinear' is not allowed; expected one of resize, tconv, resize-rgb"),
    ("datasets", {}, "datasets: expected a non-empty mapping, got {}"),
    ("datasets.Anime Faces", {"source": "synthetic", "style": "anime", "crop": "center"},
     "datasets.Anime Faces: bad name; use lowercase letters, digits, '-' and '_'"),
    ("datasets.anime.source", "ftp",
     "datasets.anime.source: 'ftp' is not allowed; expected one of synthetic, kaggle, url, folder"),
    ("datasets.anime.sorce", "url", "datasets.anime.sorce: unknown key; allowed here: source, "
     "crop, crop_box, style, count, raw_size, handle, url, sha256, path, glob, max_bytes"),
    ("datasets.anime.style", DELETE, "datasets.anime.style: missing; source 'synthetic' needs it"),
    ("datasets.anime.crop", "face",
     "datasets.anime.crop: 'face' is not allowed; expected one of center, box"),
    ("datasets.cartoon.crop_box", [0.5, 0.2, 0.4, 0.9],
     "datasets.cartoon.crop_box: [0.5, 0.2, 0.4, 0.9] is not allowed; expected fractions "
     "[x0, y0, x1, y1] with 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1"),
    ("datasets.anime.count", 5,
     "datasets.anime.count: 5 is not allowed; expected between 10 and 10000000"),
    ("preprocess.val_fraction", 0.9,
     "preprocess.val_fraction: 0.9 is not allowed; expected between 0.0 and 0.5"),
    ("preprocess.max_bad_fraction", 2,
     "preprocess.max_bad_fraction: 2 is not allowed; expected between 0.0 and 1.0"),
    ("evaluate.batch_size", "all", "evaluate.batch_size: expected an integer, got 'all'"),
    ("evaluate.iwae_samples", 0,
     "evaluate.iwae_samples: 0 is not allowed; expected between 1 and 100000"),
    ("sampler.kind", "vamp", "sampler.kind: 'vamp' is not allowed; expected one of auto, prior, gmm, flow"),
    ("figures", [1, 2], "figures: expected a mapping of keys, got [1, 2]"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_key(path, value, message):
    with pytest.raises(ParamError) as err:
        params.from_dict(with_change(path, value))
    assert str(err.value) == message


@pytest.mark.parametrize("path, message", [
    ("/no/such/faces", "datasets.mine.path: '/no/such/faces' does not exist; point it at a "
     "folder of images or a .zip/.tar(.gz) archive"),
    ("notes.txt", "datasets.mine.path: 'notes.txt' is neither a folder nor a "
     ".zip/.tar(.gz) archive; point it at one of those"),
])
def test_a_folder_source_path_is_checked_before_any_download(tmp_path, monkeypatch, path,
                                                             message):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("a text file, not images")
    out = tmp_path / "raw"
    ds = params.DatasetParams(source="folder", crop="center", path=path)
    with pytest.raises(ParamError) as err:
        sources.download(ds, out, seed=0, key="datasets.mine")
    assert str(err.value) == message
    assert not out.exists() and not (tmp_path / "raw.tmp").exists()


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
