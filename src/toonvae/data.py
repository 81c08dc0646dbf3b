"""Prepared splits on disk, read a batch at a time, and a batch iterator over them.

The arrays are small uint8 images, so the fastest loader is no DataLoader at all:
gather a sorted index batch with positional reads (runs of neighbours in one read),
convert once to float. No worker processes, no per-image Python objects.

Why positional reads and not ``np.load(mmap_mode="r")``: every page of a memory map
that was read stays in the process's resident set until it is unmapped, so one epoch
over a memory-mapped split grows RSS by the whole file. ``os.pread`` goes through the
same page cache (repeat epochs read from RAM) but leaves RSS flat as data grows
(``benchmarks/memory_bench.py`` measures it).
"""

from __future__ import annotations

import csv
import json
import os
import queue
import threading
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

    def split(self, name: str) -> "ImageRows":
        return ImageRows(self.root / f"{name}.npy")

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


class ImageRows:
    """The images of a ``.npy`` file (N x 3 x S x S uint8), read on indexing.

    ``rows[i]``, ``rows[a:b]`` and ``rows[index_array]`` return fresh, writable numpy
    arrays; nothing else of the file is held in memory.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self._offset = f.tell()
            size = self.path.stat().st_size
        except (OSError, ValueError) as exc:
            raise ToonvaeError(f"{self.path}: unreadable ({exc}); rerun the preprocess "
                               "stage") from None
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
        if fortran or len(self.shape) != 4 or size < self._offset + len(self) * self._row_bytes:
            raise ToonvaeError(f"{self.path}: not a prepared image array (shape {self.shape}, "
                               f"{size} bytes); rerun the preprocess stage")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._read_run(start, max(stop - start, 0))
            key = np.arange(start, stop, step)
        if np.isscalar(key):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of range for {len(self)} images")
            return self._read_run(i % len(self), 1)[0]
        index = np.asarray(key, dtype=np.int64)
        if index.ndim != 1:
            raise IndexError("images are indexed by an int, a slice or a 1-d index array")
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"an index is out of range for {len(self)} images")
        index = index % max(len(self), 1)
        unique, inverse = np.unique(index, return_inverse=True)
        out = np.empty((len(unique), *self._row_shape), self.dtype)
        # Read each run of consecutive rows with one call.
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run in np.split(np.arange(len(unique)), breaks):
            if len(run):
                out[run[0]:run[-1] + 1] = self._read_run(int(unique[run[0]]), len(run))
        return out if np.array_equal(unique, index) else out[inverse]

    def _read_run(self, first: int, count: int) -> np.ndarray:
        out = np.empty((count, *self._row_shape), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        want, pos, done = count * self._row_bytes, self._offset + first * self._row_bytes, 0
        while done < want:
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got == 0:
                raise ToonvaeError(f"{self.path}: the file ended early; rerun the preprocess "
                                   "stage")
            done += got
        return out

    def __array__(self, dtype=None, copy=None):
        """The whole split, read into memory (used by tests and small splits only)."""
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def to_float(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N x 3 x S x S (numpy, or a tensor on any device) -> float32 in [0, 1] on
    ``device``. A pinned host tensor (``prefetched``) is copied without the host waiting."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=batch.device.type == "cpu").float().div_(255.0)
    # np.require copies read-only views (numpy memory maps): torch wants writable arrays.
    return torch.from_numpy(np.require(batch, np.uint8, ["C", "W"])).to(device).float().div_(255.0)


def batches(array: np.ndarray, batch_size: int, *, shuffle: bool = False,
            rng: np.random.Generator | None = None, drop_last: bool = False, start: int = 0,
            shard: tuple[int, int] = (0, 1), index: np.ndarray | None = None):
    """Yield uint8 batches of ``array`` (numpy-indexable, or a tensor: tensor batches on its
    device); shuffled with ``rng`` when asked (one permutation per call). With ``index``,
    only those rows, in that order.

    ``start`` skips the first batches of that order without reading them (a resumed epoch).
    ``shard=(rank, processes)`` yields only this process's part of each batch, every
    ``processes``-th image: the processes share one order (the same ``rng``) and together
    see each batch once, as DistributedSampler would split them.
    """
    rank, processes = shard
    rows = np.arange(len(array)) if index is None else np.asarray(index, dtype=np.int64)
    n = len(rows)
    order = rows[rng.permutation(n)] if shuffle else rows
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    if isinstance(array, torch.Tensor):
        # The whole order goes to the device once: a copy from pageable host memory in
        # every step would make the host wait for the device at every batch.
        order = torch.from_numpy(order).to(array.device)
    for first in range(start * batch_size, stop, batch_size):
        idx = order[first:first + batch_size]
        if shuffle:  # sorted reads coalesce; the order within a batch is irrelevant
            idx = idx.sort().values if isinstance(idx, torch.Tensor) else np.sort(idx)
        if processes > 1:
            idx = idx[rank::processes]
        yield array[idx]


def prefetched(items, depth: int = 3, pin: bool = False):
    """Yield ``items`` (uint8 numpy batches) read ``depth`` ahead by a background thread,
    as pinned tensors when ``pin``: on a GPU, a split too large for device memory is then
    read from disk while the device computes, and copied without the host waiting for it.
    """
    done = object()
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def read():
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(torch.from_numpy(item).pin_memory() if pin else item)
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)
        ready.put(done)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def seeded_rows(n_total: int, n: int, seed) -> np.ndarray:
    """Sorted indices of ``min(n, n_total)`` distinct rows of ``n_total``, drawn by
    numpy's ``default_rng(seed)`` (an int or a sequence of ints): the same for the same seed.
    Every seeded subset (figures' faces, swd's floor, the mixture's training codes) is one."""
    return np.sort(np.random.default_rng(seed).choice(n_total, min(n, n_total), replace=False))
