"""Where raw images come from. Every source writes the raw layout of the real dataset.

- ``synthetic``: procedural faces (offline default), see ``synthetic.py``.
- ``kaggle``: a pinned kagglehub dataset, copied from kagglehub's cache.
- ``url``: an HTTP(S) archive, downloaded (resumable, verified) into ``data/downloads/``
  and safely unpacked.
- ``folder``: a local directory, or a local .zip/.tar(.gz) archive.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from toonvae.files import atomic_dir
from toonvae.imagefiles import list_images
from toonvae.params import DatasetParams, ParamError

DOWNLOADS = Path("data/downloads")  # outside every DVC output, so partial downloads survive


def check(ds: DatasetParams, key: str = "datasets.<name>") -> None:
    """What can be checked before any work: a folder source's path exists and is usable.

    Not part of params validation: on a machine that pulled the prepared data from a
    DVC remote, another user's missing folder must not stop every stage.
    """
    if ds.source != "folder":
        return
    from toonvae.sources.archive import is_archive

    src = Path(ds.path).expanduser()
    if not src.exists():
        raise ParamError(f"{key}.path: {ds.path!r} does not exist; point it at a folder of "
                         "images or a .zip/.tar(.gz) archive")
    if not (src.is_dir() or is_archive(src)):
        raise ParamError(f"{key}.path: {ds.path!r} is neither a folder nor a "
                         ".zip/.tar(.gz) archive; point it at one of those")


def download(ds: DatasetParams, out_dir: Path, seed: int, downloads: Path = DOWNLOADS,
             key: str = "datasets.<name>") -> int:
    """Fill ``out_dir`` with the raw files of ``ds``; return how many images it holds.

    Written to a sibling temp folder first and renamed at the end, so an interrupted
    or refused download never leaves a half-filled ``out_dir`` behind.
    """
    check(ds, key)
    with atomic_dir(out_dir) as tmp:
        _fill(ds, tmp, seed, Path(downloads))
        return len(list_images(tmp))


def _fill(ds: DatasetParams, tmp: Path, seed: int, downloads: Path) -> int:
    if ds.source == "synthetic":
        from toonvae.sources.synthetic import generate

        return generate(ds.style, tmp, ds.count, seed, ds.raw_size)
    if ds.source == "kaggle":
        from toonvae.sources import kaggle
        from toonvae.sources.folder import copy_matching

        return copy_matching(kaggle.download(ds.handle), tmp, ds.glob)
    if ds.source == "url":
        from toonvae.sources.archive import extract_to
        from toonvae.sources.folder import keep_matching
        from toonvae.sources.url import fetch

        name = ds.url.rstrip("/").rsplit("/", 1)[-1] or "download"
        key = hashlib.sha1(ds.url.encode()).hexdigest()[:10]
        archive = downloads / f"{key}-{name}"
        fetch(ds.url, archive, ds.sha256)
        extract_to(archive, tmp, ds.max_bytes)
        return keep_matching(tmp, ds.glob)
    if ds.source == "folder":
        from toonvae.sources.folder import from_folder

        return from_folder(ds.path, ds.glob, tmp, ds.max_bytes)
    raise AssertionError(ds.source)  # params validation lets only known sources through
