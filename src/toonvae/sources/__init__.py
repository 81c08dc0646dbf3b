"""Where raw images come from. Every source writes the raw layout of the real dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

from toonvae.params import DatasetParams


def download(ds: DatasetParams, out_dir: Path, seed: int) -> int:
    """Fill ``out_dir`` with the raw images of ``ds``; return how many there are.

    Written to a sibling temp folder first and renamed at the end, so an interrupted
    download never leaves a half-filled ``out_dir`` behind.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if ds.source == "synthetic":
        from toonvae.sources.synthetic import generate

        count = generate(ds.style, tmp, ds.count, seed, ds.raw_size)
    else:  # params validation only lets known sources through
        raise AssertionError(ds.source)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return count
