"""Which CPU kernels compute the numbers: ``runtime.numerics`` in params.yaml.

- ``portable`` (the default): every library that picks its kernels by CPU is capped at
  AVX2, and the thread count is fixed (``train.threads``, or 2 when that is 0), since the
  thread count changes the order of summation. What that makes the same on another CPU
  is measured, not assumed: ``toonvae.fingerprint`` hashes the ops of a training step,
  and the train stage compares them with the fingerprint of the CPU that made the
  committed results before it trains (docs/reference/reproducibility.md has the CPUs confirmed).
- ``native``: the fastest kernels this CPU has and one thread per core: the same bytes on
  this machine only.

Each library reads its environment variable once, when it first runs (OpenMP's when torch
is imported), so the pins must be in place before torch loads: stage scripts call
``toonvae.stage.pin_numerics()`` before they import anything that imports torch. A process
where torch is already loaded is started again with the pins (``os.execv``), so its work
always runs under them; torchrun's processes inherit them.

Measured on a 2-core AMD EPYC (AVX2): each pin below changes the bits of a training step
when its library is given another value, so none is decoration. What no pin reaches:
torch's CPU square root is MKL's VML, which picks its code by CPU vendor whatever
MKL_CBWR says. An Intel Xeon (AVX-512, AMX) and an AMD EPYC (family 26, AVX-512) agreed
in all 121 other fingerprinted ops and parted at the first AdamW step, so ``toonvae.optim``
takes the CPU's own, correctly rounded, square root. Under valgrind, which shows programs
another CPU's cache sizes (L1 32 KB, L2 256 KB, L3 8 MB), every fingerprinted op of the
Xeon kept its bits: oneDNN's cache-dependent blocking does not reach these shapes.
Switching oneDNN off costs 2.5x a training step on the Xeon (411 against 167 ms,
``research/numerics_probe.py``), over the 1.5x this mode may cost.

GPU kernels are out of scope: CUDA results differ between GPU models and driver versions,
and no variable pins them. ARM and Apple CPUs have other kernels altogether.
"""

from __future__ import annotations

import os
import sys

MODES = ("portable", "native")
PORTABLE_THREADS = 2  # the committed results' count: what a 2-core laptop runs well

# Capped at AVX2, each library's own switch:
ISA_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",   # torch's vectorised kernels (elementwise, reductions)
    "ONEDNN_MAX_CPU_ISA": "AVX2",    # oneDNN: torch's CPU convolutions
    "MKL_CBWR": "COMPATIBLE",       # MKL: torch's matrix products (Intel and AMD alike)
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS: numpy's and scikit-learn's matrix products
}
# numpy's own AVX-512 loops, by the names numpy 2.4 and later give them (older releases
# name them differently, so they are left alone there).
NUMPY_PIN = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_count(mode: str, threads: int, processes: int = 1) -> int:
    """Threads per process: ``train.threads`` when set; else in portable mode the fixed
    count shared between this machine's processes, in native mode the cores shared out
    (0 for one process: torch's own choice, one per core)."""
    if threads:
        return threads
    if mode == "portable":
        return max(1, PORTABLE_THREADS // processes)
    return max(1, (os.cpu_count() or 1) // processes) if processes > 1 else 0


def pins(mode: str, threads: int = 0, processes: int = 1) -> dict[str, str]:
    """The environment a process computing in ``mode`` must start with."""
    if mode not in MODES:
        raise ValueError(f"unknown numerics mode {mode!r}")
    if mode == "native":
        return {}
    count = str(thread_count(mode, threads, processes))
    return {**ISA_PINS, **(NUMPY_PIN if _numpy_names_groups() else {}),
            **{name: count for name in THREAD_VARIABLES}}


def _numpy_names_groups() -> bool:
    from importlib.metadata import version

    major, minor = (int(part) for part in version("numpy").split(".")[:2])
    return (major, minor) >= (2, 4)


def pin(mode: str, threads: int = 0, processes: int = 1) -> None:
    """Put ``mode``'s pins into this process's environment before torch loads; if torch
    is loaded already, run this process's command again with them."""
    wanted = pins(mode, threads, processes)
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return
    os.environ.update(wanted)
    if "torch" in sys.modules or "numpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def platform(mode: str) -> dict:
    """What computed this run's numbers, for the record beside the metrics: everything
    that must match for two runs to agree, nothing that may differ between them (no CPU
    model, host name or core count). Call after torch has loaded."""
    import numpy
    import torch

    return {"numerics": mode, "torch": torch.__version__.split("+")[0],
            "numpy": numpy.__version__, "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def check_loaded(mode: str) -> str | None:
    """A warning if portable numerics did not get what they pinned (a CPU without AVX2,
    or torch imported before the pins); None when all is as pinned."""
    import torch

    if mode != "portable":
        return None
    got = torch.backends.cpu.get_cpu_capability()
    if got != "AVX2":
        return (f"runtime.numerics: portable runs torch's AVX2 kernels but this process has "
                f"{got}; its results will not match other machines' bytes")
    return None
