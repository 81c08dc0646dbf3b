"""Kaggle datasets through kagglehub, always with a pinned version.

A pinned handle (``owner/name/versions/N``) that is already in kagglehub's cache
needs no network and no credentials; an unpinned one would ask the API first.
Credentials follow kagglehub's conventions: ``KAGGLE_USERNAME`` and ``KAGGLE_KEY``,
or ``~/.kaggle/kaggle.json``, or ``kagglehub.login()``.
"""

from __future__ import annotations

from pathlib import Path

from toonvae.errors import ToonvaeError
from toonvae.params import KAGGLE_HANDLE

HINT = ("set Kaggle credentials (KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json) "
        "and check the handle, or use source: synthetic to work offline")


def download(handle: str) -> Path:
    """The local folder holding the files of ``handle`` (from kagglehub's cache or Kaggle)."""
    if not KAGGLE_HANDLE.match(handle):
        raise ToonvaeError(f"datasets.<name>.handle: {handle!r} is not pinned; "
                           "use owner/dataset/versions/N")
    try:
        import kagglehub
    except ImportError:
        raise ToonvaeError("kagglehub is not installed; pip install kagglehub") from None
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # kagglehub raises requests, HTTP and its own errors
        first = (str(exc).splitlines() or [""])[0][:160]
        raise ToonvaeError(f"kaggle: could not get {handle} ({type(exc).__name__}: {first}); "
                           + HINT) from None
