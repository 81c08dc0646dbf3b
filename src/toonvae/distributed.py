"""Multi-process training with PyTorch's own engine: torchrun and DistributedDataParallel.

``train.nproc: N`` (N > 1) makes the train stage start itself again under torchrun
(``torch.distributed.run``, the code behind the ``torchrun`` command) with N processes
on this machine: NCCL with one GPU per process, or gloo on CPUs. A stage script started
by torchrun directly (``torchrun --nnodes 2 --nproc-per-node 8 ... stages/train.py anime``,
the multi-node case) finds torchrun's environment and does not launch again.

``train.batch_size`` stays the optimizer's batch: each process takes its share of every
batch (a DistributedSampler-style split of the same shuffled order, made batch by batch)
and DDP averages the gradients. So the steps per epoch, the learning-rate schedule and
the logged losses mean what they mean in one process; only the speed changes. Rank 0
alone logs, checkpoints and writes the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from toonvae.errors import ToonvaeError

PEER_LOST = 3  # exit status of a process whose peer died: a consequence, not a cause


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the environment torchrun sets (one process without it)."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                 int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))


def launch(nproc: int, script: str, args: list[str], threads: int, device: str) -> None:
    """Run ``python script args`` in ``nproc`` local processes under torchrun; return when
    all succeed. A failure raises one ToonvaeError: the processes' own error, or the
    process that failed first."""
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from toonvae.numerics import thread_count
    from toonvae.runtime import pick_device

    kind = pick_device(device).type
    if kind == "mps":
        raise ToonvaeError("train.nproc: DistributedDataParallel needs CUDA or the CPU, not "
                           "MPS; set train.device: cpu or train.nproc: 1")
    if kind == "cuda" and torch.cuda.device_count() < nproc:
        raise ToonvaeError(f"train.nproc: {nproc} processes need {nproc} GPUs, "
                           f"{torch.cuda.device_count()} visible; lower train.nproc")
    # torchrun would set 1 thread per process and warn; share the cores out instead
    # (portable numerics have set a fixed count already: toonvae.numerics).
    os.environ.setdefault("OMP_NUM_THREADS", str(thread_count("native", threads, nproc)))
    _quiet_launcher()
    ns = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}",
                                       script, *args])
    try:
        run(ns)
    except SignalException:
        raise KeyboardInterrupt from None
    except ChildFailedError as exc:
        raise _first_cause(exc.failures, nproc) from None


def _first_cause(failures: dict, nproc: int) -> ToonvaeError:
    """The one line to tell the user when processes failed: the error of the lowest rank
    that failed on its own (not because another one died, not stopped by torchrun)."""
    import signal

    knock_on = (PEER_LOST, -signal.SIGTERM)  # a lost peer; torchrun stopping the rest
    causes = {r: f for r, f in failures.items() if f.exitcode not in knock_on} or failures
    rank, failure = min(causes.items())
    message = failure.message  # the error file's text, or its {"message": ...} record
    message = message.get("message", "") if isinstance(message, dict) else str(message)
    prefix = f"{ToonvaeError.__name__}: "
    if failure.exitcode == 2 and message.startswith(prefix):
        return ToonvaeError(message[len(prefix):])
    how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
           else f"exited with status {failure.exitcode}")
    return ToonvaeError(f"training process {rank} of {nproc} {how}, and the others were "
                        "stopped; rerun to resume from the last checkpoint, or set "
                        "train.nproc: 1 to debug")


def peer_lost(exc: BaseException) -> bool:
    """Did a collective fail because another process died? (gloo raises RuntimeError
    from its transport; NCCL raises DistBackendError.)"""
    import torch.distributed as dist

    backend_error = getattr(dist, "DistBackendError", None)
    if backend_error is not None and isinstance(exc, backend_error):
        return True
    return isinstance(exc, RuntimeError) and any(
        s in str(exc) for s in ("gloo/transport", "Connection reset by peer",
                                "Connection closed by peer", "Broken pipe"))


def _quiet_launcher() -> None:
    """torchrun's agent logs its own lines around a failure; the stage says it in one."""
    import logging

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)


def die_with_launcher() -> None:
    """torchrun starts each process in a session of its own, so a SIGKILLed launcher
    (a killed `dvc repro`) would leave them training and writing on their own. On Linux,
    ask the kernel to SIGKILL this process when its launcher dies."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != launcher:  # it died before the prctl took hold
        os.kill(os.getpid(), signal.SIGKILL)


def init(device, w: World):
    """Join the process group; return this process's device (its own GPU under CUDA)."""
    import torch
    import torch.distributed as dist

    die_with_launcher()
    if device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise ToonvaeError(f"train: process {w.rank} wants GPU {w.local_rank} but "
                               f"{torch.cuda.device_count()} are visible; start at most one "
                               "process per GPU")
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    elif device.type == "cpu":
        dist.init_process_group("gloo")
    else:
        raise ToonvaeError(f"train: DistributedDataParallel needs CUDA or the CPU, not "
                           f"{device.type}; set train.device: cpu")
    return device


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t):
    """Sum a tensor over every process, in place; returns it."""
    import torch.distributed as dist

    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
