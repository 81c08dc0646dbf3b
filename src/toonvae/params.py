"""params.yaml as typed, validated dataclasses.

Everything is checked before any work starts: a wrong type, an out-of-range value
or an unknown key (a typo such as ``latnt_dim``) raises ``ParamError`` with one line
naming the key, the bad value and what is allowed. Every default here is params.yaml's
(a test compares them), so a key deleted from params.yaml keeps its value.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from toonvae.archs import ARCHS, DEFAULT_ARCH, DEFAULT_CHANNELS, SAMPLERS
from toonvae.errors import ToonvaeError


class ParamError(ToonvaeError):
    """A value in params.yaml is missing, mistyped or out of range."""


def _rule(check, allowed):
    return {"check": check, "allowed": allowed}


# A train setting that leaves the training loop's numbers as they are: a checkpoint resumes
# across a change of it (toonvae.train.TrainConfig.run_settings).
SAME_RUN = {"same_run": True}


def _range(lo=None, hi=None):
    def check(v):
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    if hi is None:
        return _rule(check, f">= {lo}")
    return _rule(check, f"between {lo} and {hi}")


def _one_of(*values):
    return _rule(lambda v: v in values, "one of " + ", ".join(map(str, values)))


# What the sources take, defined once (toonvae.sources uses them too).
SYNTHETIC_STYLES = ("anime", "cartoon")  # procedural faces in the layout of each real set
KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/versions/\d+$")  # owner/dataset/versions/N
MAX_ARCHIVE_BYTES = 64 * 2**30  # archives unpack to no more (the Cartoon Set 100k: ~5 GB)

SOURCE_KEYS = {  # the options each source reads, beside source, crop and crop_box
    "synthetic": {"style", "count", "raw_size"},
    "kaggle": {"handle", "glob"},
    "url": {"url", "sha256", "glob", "max_bytes"},
    "folder": {"path", "glob", "max_bytes"},
}
REQUIRED_KEYS = {"synthetic": "style", "kaggle": "handle", "url": "url", "folder": "path"}


@dataclass(frozen=True)
class DatasetParams:
    source: str = field(metadata=_one_of(*SOURCE_KEYS))
    crop: str = field(metadata=_one_of("center", "box"))
    # Fractions of the raw image (x0, y0, x1, y1), used when crop is "box".
    crop_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    # synthetic: procedural faces in the layout of the real dataset
    style: str = field(default="anime", metadata=_one_of(*SYNTHETIC_STYLES))
    # synthetic: how many faces to draw, and their size in pixels.
    count: int = field(default=1000, metadata=_range(10, 10_000_000))
    raw_size: int = field(default=256, metadata=_range(32, 2048))
    # kaggle: a pinned kagglehub handle, owner/dataset/versions/N
    handle: typing.Optional[str] = field(default=None, metadata=_rule(
        lambda v: KAGGLE_HANDLE.match(v) is not None,
        "a pinned handle owner/dataset/versions/N"))
    # url: an http(s) archive, and optionally its sha256
    url: typing.Optional[str] = field(default=None, metadata=_rule(
        lambda v: re.match(r"^https?://[^\s/]+/\S*$", v) is not None, "an http:// or https:// URL"))
    # url: the archive's sha256; without it the stage prints the one it got, to pin.
    sha256: typing.Optional[str] = field(default=None, metadata=_rule(
        lambda v: re.match(r"^[0-9a-fA-F]{64}$", v) is not None, "64 hex digits"))
    # folder: a local directory or .zip/.tar(.gz) archive
    path: typing.Optional[str] = field(default=None, metadata=_rule(bool, "a non-empty path"))
    # which files to keep, relative to the source's root (kaggle, url, folder)
    glob: str = field(default="**/*", metadata=_rule(
        lambda v: bool(v) and not v.startswith("/") and ".." not in v.split("/"),
        "a relative glob such as **/*.png"))
    # archives may not unpack to more than this
    max_bytes: int = field(default=MAX_ARCHIVE_BYTES, metadata=_range(1, 2**50))

    def _check(self, key, given):
        # Options of other sources may stay (so `dvc exp run -S datasets.x.source=url
        # -S datasets.x.url=...` switches a dataset); they are ignored. Typos are still
        # caught: a key that no source knows is an unknown key.
        required = REQUIRED_KEYS[self.source]
        if required not in given:
            raise ParamError(f"{key}.{required}: missing; source {self.source!r} needs it")
        x0, y0, x1, y1 = self.crop_box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ParamError(f"{key}.crop_box: {list(self.crop_box)} is not allowed; expected "
                             "fractions [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1")


@dataclass(frozen=True)
class PreprocessParams:
    # Shares of the images held out for validation and test (a seeded permutation).
    val_fraction: float = field(default=0.05, metadata=_range(0.0, 0.5))
    test_fraction: float = field(default=0.05, metadata=_range(0.0, 0.5))
    min_side: int = field(default=32, metadata=_range(1, 4096))
    # More unusable images than this fraction stops the stage: the download is broken.
    max_bad_fraction: float = field(default=0.5, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class ModelParams:
    arch: str = field(default=DEFAULT_ARCH, metadata=_one_of(*ARCHS))
    # Encoder widths, one per stride-2 stage (the decoder mirrors them). GroupNorm uses
    # min(8, width) groups, so a width above 8 must be a multiple of 8.
    channels: tuple[int, int, int, int] = field(default=DEFAULT_CHANNELS, metadata=_rule(
        lambda v: all(1 <= c <= 4096 and (c <= 8 or c % 8 == 0) for c in v),
        "widths between 1 and 4096, each at most 8 or a multiple of 8"))
    # auto: the arch's own (seed: the notebook's 1000*MSE; resnet, hvae: discretized Gaussian).
    likelihood: str = field(default="auto", metadata=_one_of("auto", "gaussian", "logistic",
                                                             "mse"))
    # resnet's decoder: resize (x2 nearest, then a 3x3 conv), tconv (4x4 stride-2
    # transposed convs, which leave a checkerboard texture) or resize-rgb (tconv, but a
    # resize for the last, which writes the image). hvae always resizes; seed is the
    # notebook's network.
    upsample: str = field(default="resize-rgb",
                          metadata=_one_of("resize", "tconv", "resize-rgb"))


@dataclass(frozen=True)
class TrainParams:
    # Passes over the training split.
    epochs: int = field(default=8, metadata=_range(1, 100_000))
    # auto: what suits the device and arch (toonvae.train.resolve_batch_size: the arch's
    # cpu_batch on a CPU, 32 for resnet and seed, 16 for hvae; 512 per CUDA GPU).
    batch_size: typing.Union[int, typing.Literal["auto"]] = field(default="auto", metadata=_rule(
        lambda v: v == "auto" or 1 <= v <= 65_536, "'auto' or between 1 and 65536"))
    # null: the arch's own (toonvae.archs.ARCHS: seed the notebook's 0.0005; resnet 0.004;
    # hvae 0.002) at any batch size.
    lr: typing.Optional[float] = field(default=None, metadata=_range(1e-8, 10.0))
    # Weight of the KL term (1: the ELBO itself).
    beta: float = field(default=1.0, metadata=_range(0.0, 1000.0))
    # auto: cuda, then mps, then cpu.
    device: str = field(default="auto", metadata=_one_of("auto", "cpu", "cuda", "mps"))
    # 0: runtime.numerics decides (portable: 2; native: one per core).
    threads: int = field(default=0, metadata=_range(0, 1024))
    # Checkpoint every N batches as well as after each epoch (0: after each epoch only).
    checkpoint_every: int = field(default=0, metadata={**_range(0, 10_000_000), **SAME_RUN})
    # auto: bf16 autocast on CUDA (the KL and likelihood stay fp32), fp32 elsewhere.
    precision: str = field(default="auto", metadata=_one_of("auto", "fp32", "bf16"))
    # true: deterministic kernels, the same bytes on every run (the committed results);
    # false: lets cuDNN pick the fastest kernels (GPU speed, run-to-run noise).
    deterministic: bool = True
    # The optimizer; the recipe's parts are measured in docs/research/training.md.
    optimizer: str = field(default="adamw", metadata=_one_of("adamw", "adam"))
    # AdamW's decoupled weight decay.
    weight_decay: float = field(default=0.0, metadata=_range(0.0, 1.0))
    # cosine: from lr down to 0 over all batches, after the warm-up; constant: lr throughout.
    schedule: str = field(default="cosine", metadata=_one_of("cosine", "constant"))
    warmup_steps: int = field(default=100, metadata=_range(0, 10_000_000))
    # beta rises linearly from 0 to train.beta over this many epochs (0: from the start).
    kl_warmup_epochs: float = field(default=0.0, metadata=_range(0.0, 100_000.0))
    # Nats per latent dimension below which the batch-mean KL is not pushed down (0: off).
    free_bits: float = field(default=0.0, metadata=_range(0.0, 100.0))
    # Decay of the exponential moving average of the weights that is evaluated and saved
    # (0: the raw weights).
    ema: float = field(default=0.0, metadata=_rule(lambda v: v == 0 or 0.5 <= v < 1,
                                                   "0 (off) or a decay in [0.5, 1)"))
    # Processes of DistributedDataParallel training under torchrun (one per GPU, or gloo
    # processes on the CPU); they share each batch of batch_size. 1: a single process.
    # A DDP checkpoint resumes in one process, so nproc is not part of the run.
    nproc: int = field(default=1, metadata={**_range(1, 1024), **SAME_RUN})

    def _check(self, key, given):
        if self.batch_size != "auto" and self.batch_size % self.nproc:
            raise ParamError(f"{key}.batch_size: {self.batch_size} does not split evenly "
                             f"between train.nproc {self.nproc} processes; use a multiple "
                             f"of {self.nproc}")


@dataclass(frozen=True)
class EvaluateParams:
    # Test images per forward pass.
    batch_size: int = field(default=250, metadata=_range(1, 65_536))
    # The importance-weighted bound: k samples per image, on the first N test images.
    iwae_samples: int = field(default=128, metadata=_range(1, 100_000))
    iwae_images: int = field(default=1000, metadata=_range(1, 10_000_000))
    # Images per set for the sliced Wasserstein distance (samples, test, train floor).
    swd_images: int = field(default=1000, metadata=_range(2, 1_000_000))
    # torch-fidelity's Inception weights; FID is computed only when this file is present
    # and has the published sha256 (null: never).
    fid_weights: typing.Optional[str] = field(
        default="~/.cache/torch/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth",
        metadata=_rule(bool, "a path to weights-inception-2015-12-05-6726825d.pth, or null"))


@dataclass(frozen=True)
class SamplerParams:
    # prior: z ~ N(0, I); gmm: a Gaussian mixture fitted to the training posterior means;
    # flow: the prior with its top flow_levels levels drawn from a normalizing flow fitted
    # to posterior draws; auto: the prior for hvae (its learned hierarchical prior), the
    # mixture for the others.
    kind: str = field(default="auto", metadata=_one_of("auto", *SAMPLERS))
    # Components of the mixture fitted after training.
    gmm_components: int = field(default=10, metadata=_range(1, 1000))
    # Latent levels, from the top, that the flow fitted after training covers (hvae: 1 is
    # 4x4, 2 is 4x4 and 8x8; a flat latent has 1 level); 0: no flow, no sampler flow. Off
    # by default: the fit costs minutes a dataset on a 2-core CPU (docs: Samplers).
    flow_levels: int = field(default=0, metadata=_range(0, 16))
    # Optimizer steps of the flow's fit (it keeps its best held-out step).
    flow_steps: int = field(default=1500, metadata=_range(0, 1_000_000))


@dataclass(frozen=True)
class FiguresParams:
    # Images in samples.png, reconstruction.png and noise.png, and grid columns.
    samples: int = field(default=32, metadata=_range(1, 1024))
    reconstructions: int = field(default=16, metadata=_range(1, 256))
    noise: int = field(default=32, metadata=_range(1, 1024))
    columns: int = field(default=8, metadata=_range(1, 64))
    interpolation_pairs: int = field(default=4, metadata=_range(1, 32))
    interpolation_steps: int = field(default=8, metadata=_range(2, 32))
    traversal_dims: int = field(default=8, metadata=_range(1, 64))
    traversal_steps: int = field(default=9, metadata=_range(2, 32))
    # The temperatures of temperature.png.
    temperatures: tuple[float, float, float] = field(default=(0.5, 0.7, 1.0), metadata=_rule(
        lambda v: all(0 < t <= 5 for t in v), "three temperatures above 0 and at most 5"))
    # Attribute vectors of these attributes (where the dataset labels them).
    attributes: tuple[str, str, str] = ("glasses", "facial_hair", "hair_color")
    # Test faces each attribute vector is added to.
    attribute_faces: int = field(default=4, metadata=_range(1, 16))


@dataclass(frozen=True)
class RuntimeParams:
    # portable: kernels capped at AVX2 and fixed threads, so CPUs whose per-op fingerprint
    # matches the committing CPU's give its bytes (docs: Reproducibility); native: this
    # CPU's fastest kernels, the same bytes on this machine only.
    numerics: str = field(default="portable", metadata=_one_of("portable", "native"))


@dataclass(frozen=True)
class Params:
    # Seeds every RNG: data drawing, the split, initialisation, batches, sampling.
    seed: int = field(metadata=_range(0, 2**32 - 1))
    image_size: int = field(metadata=_rule(lambda v: 16 <= v <= 1024 and v % 16 == 0,
                                           "a multiple of 16 between 16 and 1024 "
                                           "(the networks halve it four times)"))
    # Size of the latent code (hvae: the total over its levels, channels x 336 at 64 px).
    latent_dim: int = field(metadata=_range(1, 4096))
    datasets: dict[str, DatasetParams]
    preprocess: PreprocessParams = PreprocessParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    sampler: SamplerParams = SamplerParams()
    figures: FiguresParams = FiguresParams()
    runtime: RuntimeParams = RuntimeParams()

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            raise ParamError(f"params.yaml: no dataset {name!r} under 'datasets'; "
                             f"defined: {', '.join(sorted(self.datasets)) or 'none'}")
        return self.datasets[name]


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ParamError(f"{path}: not valid YAML{line}; fix the syntax") from None
    return from_dict(raw)


def from_dict(raw) -> Params:
    return _build(Params, raw, "")


def to_dict(params) -> dict:
    """Plain dict (tuples as lists), e.g. to store a config inside a model file."""
    return _plain(dataclasses.asdict(params))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _build(cls, raw, prefix):
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(raw, dict):
        raise ParamError(f"{where}: expected a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamError(f"{prefix}{unknown[0]}: unknown key; allowed here: "
                         f"{', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING:
                raise ParamError(f"{key}: missing; add it to params.yaml")
            continue
        values[name] = _convert(hints[name], raw[name], key)
        rule = f.metadata.get("check")
        if rule and values[name] is not None and not rule(values[name]):
            raise ParamError(f"{key}: {_show(raw[name])} is not allowed; "
                             f"expected {f.metadata['allowed']}")
    obj = cls(**values)
    if hasattr(obj, "_check"):
        obj._check(where, set(raw))
    return obj


def _convert(hint, value, key):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:  # Optional[X]
        return None if value is None else _convert(args[0], value, key)
    if origin is typing.Union:  # X or a literal word such as 'auto'
        words = [w for a in args if typing.get_origin(a) is typing.Literal
                 for w in typing.get_args(a)]
        if value in words:
            return value
        kinds = [a for a in args if typing.get_origin(a) is not typing.Literal]
        if kinds == [int] and (isinstance(value, bool) or not isinstance(value, int)):
            raise ParamError(f"{key}: expected an integer or "
                             + " or ".join(repr(w) for w in words) + f", got {_show(value)}")
        return _convert(kinds[0], value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is dict:
        if not isinstance(value, dict) or not value:
            raise ParamError(f"{key}: expected a non-empty mapping, got {_show(value)}")
        out = {}
        for name, item in value.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ParamError(f"{key}.{name}: bad name; use lowercase letters, "
                                 "digits, '-' and '_'")
            out[name] = _convert(args[1], item, f"{key}.{name}")
        return out
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ParamError(f"{key}: expected a list of {len(args)} numbers, "
                             f"got {_show(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        # YAML 1.1 reads 1e-3 as a string: accept any string that is a float.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key}: expected a number, got {_show(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ParamError(f"{key}: expected a finite number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"unsupported params type {hint} for {key}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
