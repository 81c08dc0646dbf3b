"""Prepared splits, memory-mapped, and a batch iterator over them.

The arrays are small uint8 images, so the fastest loader is no DataLoader at all:
gather a sorted index batch from the memory map (sequential-ish reads), convert
once to float. No worker processes, no per-image Python objects.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from toonvae.errors import ToonvaeError


class PreparedData:
    def __init__(self, root: Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise ToonvaeError(f"{self.root}: no prepared data (manifest.json missing); "
                               "run the preprocess stage first")
        self.manifest = json.loads(manifest.read_text())

    def split(self, name: str) -> np.ndarray:
        path = self.root / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ToonvaeError(f"{path}: unreadable ({exc}); rerun the preprocess stage") from None

    def attributes(self, split: str) -> np.ndarray | None:
        """Integer labels (N x attributes, -1 where missing) in split order, or None."""
        names = self.manifest.get("attributes") or []
        path = self.root / "attributes.csv"
        if not names or not path.is_file():
            return None
        n = int(self.manifest["counts"][split])
        labels = np.full((n, len(names)), -1, dtype=np.int64)
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["split"] == split:
                    labels[int(row["index"])] = [int(row[a]) for a in names]
        return labels

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])


def to_float(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N x 3 x S x S -> float32 in [0, 1] on ``device``."""
    # np.require copies read-only memory-map slices: torch wants writable arrays.
    return torch.from_numpy(np.require(batch, np.uint8, ["C", "W"])).to(device).float().div_(255.0)


def batches(array: np.ndarray, batch_size: int, *, shuffle: bool = False,
            rng: np.random.Generator | None = None, drop_last: bool = False, start: int = 0):
    """Yield uint8 numpy batches; shuffled with ``rng`` when asked (one permutation per call).

    ``start`` skips the first batches of that order without reading them (a resumed epoch).
    """
    n = len(array)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for first in range(start * batch_size, stop, batch_size):
        idx = order[first:first + batch_size]
        if shuffle:
            idx = np.sort(idx)  # sorted reads are faster on a memory map; order within a batch is irrelevant
        yield array[idx]
