"""Writing files so that a killed process never leaves a truncated one behind."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


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
