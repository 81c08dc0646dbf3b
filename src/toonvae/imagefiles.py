"""Which files are images: shared by the sources (to count) and preprocess (to read)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_images(root: Path) -> list[Path]:
    """Every image file under ``root``, sorted, so the order never depends on the OS."""
    return sorted(p for p in Path(root).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
