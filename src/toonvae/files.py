"""Files: written so that a killed process never leaves a truncated one behind, and
their digests."""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


CHUNK = 1 << 22  # bytes read at a time while hashing


@contextmanager
def atomic_path(path):
    """Yield a temp path beside ``path``; on success rename it over ``path``.

    A rename within one directory is atomic, so readers (and DVC) see either the old
    file or the complete new one. On an exception the temp file is removed; after a
    SIGKILL it stays as ``<name>.tmp`` and the next write replaces it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path):
    """Yield an empty temp folder beside ``path``; on success it replaces ``path``.

    An interrupted or refused fill never leaves a half-filled ``path``: on an exception
    the temp folder is removed, and one left by a SIGKILL is cleared by the next run.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def sha256_of(path) -> str:
    """The sha256 of a file's bytes, as hex, read a block at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()
