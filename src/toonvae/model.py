"""A model file: save, load and describe a trained model of any architecture.

The file holds the weights, the ``ModelConfig`` that rebuilds them (through the registry,
``toonvae.archs``), the fitted mixture, and what the train stage records beside them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from toonvae.archs import ModelConfig, build
from toonvae.archs.base import LatentVAE
from toonvae.errors import ToonvaeError
from toonvae.files import atomic_path
from toonvae.flow import FlowPrior


def count_parameters(model: nn.Module) -> int:
    """The VAE's parameters: a learned prior fitted after training (``flow``) is not one."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("flow."))


@torch.no_grad()
def describe(model: LatentVAE) -> list[tuple[str, str, tuple[int, ...]]]:
    """(part, label, output shape) for each block, by running one dummy image through."""
    was_training = model.training
    model.eval()
    rows = model.describe_rows()
    model.train(was_training)
    return rows


FORMAT_VERSION = 1


def save_model(model: LatentVAE, path, extra: dict | None = None) -> None:
    """Weights plus the config that rebuilds them, written via a temp file and a rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if not k.startswith("flow.")}  # the learned prior goes under its own key
    blob = {"format": FORMAT_VERSION, "config": model.cfg.to_dict(), "state_dict": state,
            **(extra or {})}
    if model.gmm is not None:
        blob["gmm"] = {k: v.detach().cpu() for k, v in model.gmm.items()}
    if model.flow is not None:
        blob["flow"] = {"config": model.flow.config(),
                        "state_dict": {k: v.detach().cpu()
                                       for k, v in model.flow.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_model(path, device: str | torch.device = "cpu") -> tuple[LatentVAE, dict]:
    """Rebuild a model saved by ``save_model``; untrusted files load with weights_only."""
    path = Path(path)
    if path.is_dir() or not path.suffix:  # a model directory, as the stages write them
        path = path / "model.pt"
    if not path.is_file():
        raise ToonvaeError(f"{path}: no model file; run the train stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ToonvaeError(f"{path}: not a readable toonvae model ({type(exc).__name__}); "
                           "retrain it") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ToonvaeError(f"{path}: model format {blob.get('format') if isinstance(blob, dict) else '?'}"
                           f" is not {FORMAT_VERSION}; retrain it with this version")
    try:
        model = build(ModelConfig.from_dict(blob["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ToonvaeError(f"{path}: its config is not a toonvae model's ({exc}); "
                           "retrain it") from None
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ToonvaeError(f"{path}: weights do not match the architecture in the file "
                           f"({str(exc).splitlines()[0]}); retrain it") from None
    model.gmm = _checked_gmm(blob.get("gmm"), model.cfg.latent_dim, path)
    if blob.get("flow") is not None:
        model.flow = _checked_flow(blob["flow"], model.cfg.latent_dim, path)
    return model.to(device).eval(), blob


def _checked_flow(saved, latent_dim: int, path) -> FlowPrior:
    try:
        cfg = saved["config"]
        flow = FlowPrior(int(cfg["dim"]), int(cfg["layers"]), int(cfg["hidden"]),
                         int(cfg["mask_seed"]))
        flow.load_state_dict(saved["state_dict"])
        ok = flow.dim <= latent_dim
    except (KeyError, TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ToonvaeError(f"{path}: its learned prior (flow) does not fit latent_dim "
                           f"{latent_dim}; retrain it")
    return flow.eval()


def _checked_gmm(gmm, latent_dim: int, path) -> dict[str, torch.Tensor] | None:
    if gmm is None:
        return None
    try:
        k = len(gmm["weights"])
        spread = (gmm["scales"].shape == (k, latent_dim) if "scales" in gmm
                  else gmm["scale_tril"].shape == (k, latent_dim, latent_dim))
        ok = gmm["means"].shape == (k, latent_dim) and spread
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ToonvaeError(f"{path}: its latent mixture does not fit latent_dim {latent_dim}; "
                           "retrain it")
    return gmm
