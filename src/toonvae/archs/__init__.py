"""The architectures (``model.arch``): what each one is, in one place.

``ARCHS`` maps a name to its ``Arch``: the class that builds it and the settings that
go with it. Everything else (params, training, samplers, the API, the CLI, the
benchmarks) asks this registry; no other module tests an arch's name.

This module imports no torch, so params.yaml is checked without loading it: a model's
class is named here and imported when a model is built. The layers below never import
this module (config.py, then base.py, then one module per arch), so there is no cycle.
Adding an architecture is one module under ``toonvae/archs/`` with a ``LatentVAE``
subclass and one entry here (docs/architectures.md shows one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from toonvae.archs.config import DEFAULT_CHANNELS, SAMPLERS, ModelConfig
from toonvae.errors import ToonvaeError

__all__ = ["ARCHS", "Arch", "DEFAULT_ARCH", "DEFAULT_CHANNELS", "ModelConfig", "SAMPLERS",
           "arch", "build", "choose_sampler", "eval_likelihood", "likelihood"]

DEFAULT_ARCH = "resnet"


@dataclass(frozen=True)
class Arch:
    """What an architecture is, beside its network."""
    model: str  # "module:Class", a LatentVAE subclass, imported when a model is built
    lr: float  # Adam's learning rate at any batch size (train.lr: null)
    likelihood: str  # the training objective under model.likelihood: auto
    sampler: str  # where sampler.kind: auto draws from (choose_sampler)
    cpu_batch: int = 32  # train.batch_size: auto on a CPU
    # The gradient's norm is clipped to this many times the pixel values per image (the
    # loss is in nats per image); None: no clipping.
    grad_clip_per_value: float | None = None
    # Latent groups at several resolutions (latent_dim must fit its layout; a model's
    # ``latent_levels`` names them).
    hierarchical: bool = False

    def model_class(self) -> type:
        module, name = self.model.split(":")
        return getattr(importlib.import_module(module), name)

    def grad_clip(self, cfg: ModelConfig) -> float | None:
        if self.grad_clip_per_value is None:
            return None
        return self.grad_clip_per_value * 3 * cfg.image_size ** 2


ARCHS: dict[str, Arch] = {
    # Residual blocks with GroupNorm; the default. Every lr holds at any batch size: scaling
    # it up with the batch (by the square root or linearly) trained worse at batch 128
    # (benchmarks/recipe_bench.py batch-*).
    "resnet": Arch("toonvae.archs.resnet:ResnetVAE", lr=0.004, likelihood="gaussian",
                   sampler="gmm"),
    # The original notebook's network, its 1000*MSE objective and its Adam lr.
    "seed": Arch("toonvae.archs.seed:SeedVAE", lr=0.0005, likelihood="mse", sampler="gmm"),
    # Hierarchical: its prior is learned level by level, and is what its samples should
    # honestly come from. On a CPU, batch 16 costs about the same per image as 32, and in
    # the same wall-clock twice the steps trained better (experiments/hvae-sweep.json). Its
    # clip is about 5x the gradient norm's median at 64 px (VDVAE clips too).
    "hvae": Arch("toonvae.archs.hvae:HVAE", lr=0.002, likelihood="gaussian", sampler="prior",
                 cpu_batch=16, grad_clip_per_value=4.0, hierarchical=True),
}


def arch(name: str) -> Arch:
    """The registry entry of ``name``, or one line naming the allowed ones."""
    if name not in ARCHS:
        raise ToonvaeError(f"model.arch: {name!r} is not allowed; expected one of "
                           + ", ".join(ARCHS))
    return ARCHS[name]


def build(cfg: ModelConfig):
    """A new, randomly initialised model (a ``LatentVAE``) of ``cfg.arch``."""
    return arch(cfg.arch).model_class()(cfg)


def likelihood(cfg: ModelConfig) -> str:
    """The training objective: ``model.likelihood``, or the arch's own under ``auto``."""
    return cfg.likelihood if cfg.likelihood != "auto" else arch(cfg.arch).likelihood


def eval_likelihood(cfg: ModelConfig) -> str:
    """The discretized likelihood of the reported ELBO; MSE is a fixed-scale Gaussian."""
    return "logistic" if likelihood(cfg) == "logistic" else "gaussian"


def choose_sampler(kind: str, model) -> str:
    """The one sampler policy: what ``sampler.kind`` (``auto``, or a sampler's name) draws
    from for ``model``. The evaluate stage, ``toonvae sample``, ``toonvae.load(...).sample``
    and the comparison figures all ask here.

    ``auto`` is the arch's own: the prior for hvae, whose prior is learned level by level
    and is what its samples should honestly come from; the mixture for the flat-latent
    archs, whose N(0, I) prior the aggregate posterior does not fill (or the prior, where a
    model file has no fitted mixture)."""
    if kind != "auto":
        return kind
    own = arch(model.cfg.arch).sampler
    return "prior" if own == "gmm" and model.gmm is None else own
