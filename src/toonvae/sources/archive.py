"""Safe extraction of .zip and .tar(.gz/.bz2/.xz) archives.

Every member is checked before anything is written: absolute paths, ``..``
components, links, device files and FIFOs are refused, and so is an archive whose
members add up to more than ``max_bytes``. Members are then written one by one
under the target folder, so nothing can land outside it. tarfile's own
``filter="data"`` does much of this on Python >= 3.12; we do it ourselves to
give one clear message and to behave the same on every Python we support.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from toonvae.errors import ToonvaeError
from toonvae.params import MAX_ARCHIVE_BYTES

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path) -> bool:
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    name = name.replace("\\", "/")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ToonvaeError(f"{archive}: refusing member with an absolute path {name!r}; "
                           "the archive is unsafe, get it from a trusted source")
    if ".." in p.parts:
        raise ToonvaeError(f"{archive}: refusing member {name!r} that climbs out with '..'; "
                           "the archive is unsafe, get it from a trusted source")
    return PurePosixPath(*[part for part in p.parts if part not in ("", ".")])


def _too_big(archive: Path, total: int, max_bytes: int) -> ToonvaeError:
    return ToonvaeError(f"{archive}: members would unpack to more than {max_bytes:,} bytes "
                        f"({total:,} so far); raise datasets.<name>.max_bytes if this is expected")


def extract(archive: Path, target: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> int:
    """Extract ``archive`` into ``target`` (created); return the number of files written."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, target, max_bytes)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, target, max_bytes)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, ToonvaeError):
            raise
        raise ToonvaeError(f"{archive}: broken archive ({exc}); download it again") from None
    raise ToonvaeError(f"{archive}: not a zip or tar archive; give a folder or a "
                       f"{', '.join(ARCHIVE_SUFFIXES)} file")


def _extract_zip(archive: Path, target: Path, max_bytes: int) -> int:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        total = 0
        for m in members:
            _safe_name(archive, m.filename)
            mode = m.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ToonvaeError(f"{archive}: refusing symbolic link {m.filename!r}; "
                                   "the archive is unsafe, get it from a trusted source")
            total += m.file_size
            if total > max_bytes:
                raise _too_big(archive, total, max_bytes)
        written = 0
        for m in members:
            rel = _safe_name(archive, m.filename)
            if m.is_dir() or not rel.parts:
                continue
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(dest, "wb") as dst:
                # Count real bytes too: a lying header must not fill the disk.
                copied = _copy_limited(src, dst, m.file_size)
            if copied != m.file_size:
                raise _too_big(archive, copied, m.file_size)
            written += 1
    return written


def _extract_tar(archive: Path, target: Path, max_bytes: int) -> int:
    written, total = 0, 0
    # Stream mode ("r|*") reads a .tgz once, front to back, however large it is.
    with tarfile.open(archive, mode="r|*") as tf:
        for m in tf:
            rel = _safe_name(archive, m.name)
            if m.issym() or m.islnk():
                raise ToonvaeError(f"{archive}: refusing link {m.name!r} -> {m.linkname!r}; "
                                   "the archive is unsafe, get it from a trusted source")
            if m.isdev() or m.isfifo():
                raise ToonvaeError(f"{archive}: refusing device or FIFO member {m.name!r}; "
                                   "the archive is unsafe, get it from a trusted source")
            if m.isdir() or not rel.parts:
                continue
            if not m.isfile():
                raise ToonvaeError(f"{archive}: refusing member {m.name!r} of unknown type; "
                                   "the archive is unsafe, get it from a trusted source")
            total += m.size
            if total > max_bytes:
                raise _too_big(archive, total, max_bytes)
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            with src, open(dest, "wb") as dst:
                _copy_limited(src, dst, m.size)
            written += 1
    return written


def _copy_limited(src, dst, limit: int, chunk: int = 1 << 20) -> int:
    copied = 0
    while True:
        block = src.read(min(chunk, limit - copied + 1))
        if not block:
            return copied
        copied += len(block)
        if copied > limit:
            return copied
        dst.write(block)


def extract_to(archive: Path, out_dir: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> int:
    """Extract into ``out_dir``; on any refusal remove what was written and re-raise."""
    try:
        return extract(archive, out_dir, max_bytes)
    except ToonvaeError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
