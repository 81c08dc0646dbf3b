"""Images from a local folder or a local archive: any faces a user has (CelebA, ...)."""

from __future__ import annotations

import shutil
from pathlib import Path

from toonvae.errors import ToonvaeError
from toonvae.progress import progress
from toonvae.sources.archive import extract_to


def copy_matching(src: Path, out_dir: Path, glob: str) -> int:
    """Copy the files under ``src`` that match ``glob`` into ``out_dir``, keeping their
    relative paths (and a sidecar .csv of attributes where there is one)."""
    src = Path(src)
    files = sorted(p for p in src.glob(glob) if p.is_file() and not p.is_symlink())
    if not files:
        raise ToonvaeError(f"{src}: no files match {glob!r}; check datasets.<name>.path and glob")
    copied = 0
    for f in progress(files, desc=f"copying from {src.name}", unit="file"):
        rel = f.relative_to(src)
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)  # a copy: DVC then owns these bytes, the user's folder is untouched
        sidecar = f.with_suffix(".csv")
        if sidecar != f and sidecar.is_file() and not dest.with_suffix(".csv").exists():
            shutil.copyfile(sidecar, dest.with_suffix(".csv"))
        copied += 1
    return copied


def keep_matching(root: Path, glob: str) -> int:
    """Delete the files under ``root`` that ``glob`` does not match, but keep the
    sidecar .csv of a matched file; return how many files matched."""
    root = Path(root)
    matched = {p for p in root.glob(glob) if p.is_file()}
    keep = matched | {p.with_suffix(".csv") for p in matched}
    for p in root.rglob("*"):
        if p.is_file() and p not in keep:
            p.unlink()
    if not matched:
        raise ToonvaeError(f"{root}: no unpacked files match {glob!r}; check datasets.<name>.glob")
    return len(matched)


def from_folder(path: str, glob: str, out_dir: Path, max_bytes: int) -> int:
    """A directory is copied (matching files only); an archive is safely unpacked into
    ``out_dir`` and pruned to the matching files (``sources.check`` vetted the path)."""
    src = Path(path).expanduser()
    if src.is_dir():
        return copy_matching(src, out_dir, glob)
    extract_to(src, out_dir, max_bytes)
    return keep_matching(out_dir, glob)
