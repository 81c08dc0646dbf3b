"""Training checkpoints: everything needed to resume a killed run bit for bit.

A checkpoint holds the model, the optimiser, the weight average, torch's RNG states, the position in
training (epoch, and batches done within it), the running sums of the epoch's losses
and the logged history of finished epochs. It is written through a temp file and a
rename, loaded with ``weights_only=True``, and tagged with the run it belongs to: the
model config, every train setting that changes the numbers, and a digest of the
prepared data. A checkpoint of another run is ignored with a message, never resumed.

Checkpoints live in ``checkpoints/<dataset>/``, which is not a DVC output: DVC deletes
a stage's outputs before running it, and a checkpoint has to survive exactly that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toonvae.files import atomic_path
from toonvae.progress import log

FORMAT_VERSION = 1


def data_digest(root: Path) -> str:
    """sha256 of the prepared data's manifest and arrays (~1 s per GB)."""
    h = hashlib.sha256()
    root = Path(root)
    for name in ("manifest.json", "train.npy", "val.npy"):
        path = root / name
        if not path.is_file():
            continue
        h.update(name.encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


@dataclass
class Position:
    """Where training stands: ``step`` batches of ``epoch`` (0-based) are done."""
    epoch: int = 0
    step: int = 0
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, recon, kl sums
    seen: int = 0
    history: list[dict] = field(default_factory=list)  # the logged values of finished epochs


class Checkpointer:
    """``writer=False``: resume from the file but never write it (the processes of a
    distributed run other than rank 0 all resume; rank 0 alone saves)."""

    def __init__(self, path: Path, run: dict, writer: bool = True):
        self.path = Path(path)
        self.run = run
        self.writer = writer

    def save(self, model, optimizer, pos: Position, ema=None) -> None:
        if not self.writer:
            return
        blob = {"format": FORMAT_VERSION, "run": self.run,
                "epoch": pos.epoch, "step": pos.step, "totals": list(map(float, pos.totals)),
                "seen": pos.seen, "history": pos.history,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
        with atomic_path(self.path) as tmp:
            torch.save(blob, tmp)

    def resume(self, model, optimizer, ema=None) -> Position | None:
        """Load the checkpoint into ``model``, ``optimizer`` (and the weight average
        ``ema``) when it is this run's."""
        if self.writer:  # a kill mid-write
            self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
        if not self.path.is_file():
            return None
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a foreign or damaged file: say so, start over
            log(f"ignoring checkpoint {self.path}: unreadable ({type(exc).__name__}); "
                "training from the start")
            return None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
            log(f"ignoring checkpoint {self.path}: not a toonvae checkpoint of this version; "
                "training from the start")
            return None
        if blob["run"] != self.run:
            changed = ", ".join(_changed(blob["run"], self.run)) or "the run"
            log(f"ignoring checkpoint {self.path}: it belongs to other settings "
                f"({changed} changed); training from the start")
            return None
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        if ema is not None:
            ema.load_state_dict(blob["ema"])
        torch.set_rng_state(blob["rng_cpu"])
        if blob["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(blob["rng_cuda"])
        pos = Position(blob["epoch"], blob["step"], blob["totals"], blob["seen"], blob["history"])
        log(f"resuming from checkpoint {self.path}: epoch {pos.epoch + 1}, "
            f"after batch {pos.step} (an earlier run stopped there)")
        return pos

    def remove(self) -> None:
        """The run finished: a leftover checkpoint would only resume a finished run."""
        if self.writer:
            self.path.unlink(missing_ok=True)


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, e.g. ``model.latent_dim``."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
