"""Where code runs and how repeatable it is: device choice, seeds, threads, precision."""

from __future__ import annotations

import contextlib
import os
import random
import sys

import numpy as np
import torch

from toonvae.errors import ToonvaeError
from toonvae.numerics import check_loaded
from toonvae.progress import log


def set_determinism(seed: int, threads: int = 0, deterministic: bool = True,
                    numerics: str = "native") -> None:
    """Seed every RNG; with ``deterministic``, ask torch for deterministic kernels, else
    let cuDNN benchmark and pick the fastest ones. Warn if ``numerics`` (portable) did not
    get the kernels it pinned (toonvae.numerics)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    deterministic_algorithms(deterministic)
    # Deterministic mode also fills every new tensor with NaN (a kernel per allocation on
    # CUDA) to expose reads of uninitialised memory; no code here reads any.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = not deterministic
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)
    if warning := check_loaded(numerics):
        log(f"warning: {warning}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA devices that have it, else fp32."""
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The forward pass's context: bf16 autocast, or nothing for fp32. Losses cast to
    fp32 themselves (``toonvae.losses``), so the KL and the likelihood never run in bf16."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_channels_last(device: torch.device) -> bool:
    """NHWC memory layout: what tensor-core convolutions want on CUDA. On the CPU it
    measured within noise (benchmarks/train_bench.py), so there it stays NCHW."""
    return device.type == "cuda"


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


def deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)`` without the import it
    makes of torch._inductor's config (all of torch._dynamo: about 2.6 s a process on 2
    cores) only to set inductor's own flag. Nothing here compiles; where inductor is
    loaded already (a benchmark's torch.compile), its flag is set too."""
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode
    torch._C._set_deterministic_algorithms(mode, warn_only=True)
