"""Where code runs and how repeatable it is: device choice, seeds, threads."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from toonvae.errors import ToonvaeError


def set_determinism(seed: int, threads: int = 0) -> None:
    """Seed every RNG and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ToonvaeError("train.device: 'cuda' asked for but no CUDA device is visible; "
                           "use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise ToonvaeError("train.device: 'mps' asked for but MPS is not available; "
                           "use 'auto' or 'cpu'")
    return torch.device(name)
