"""Raw images -> fixed-size uint8 arrays, a deterministic split and a manifest.

Output layout of ``prepare``::

    <out>/train.npy, val.npy, test.npy   uint8, N x 3 x S x S, read memory-mapped
    <out>/manifest.json                  counts, size, crop, skipped files and why
    <out>/attributes.csv                 split, index, file, one column per attribute
                                         (only when the source has attributes)

Images are decoded in worker processes and written straight into memory-mapped
files, so memory stays bounded whatever the dataset size.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from toonvae.errors import ToonvaeError
from toonvae.progress import progress

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SPLITS = ("train", "val", "test")
Image.MAX_IMAGE_PIXELS = 40_000_000  # decompression bombs raise instead of eating memory


def list_images(raw_dir: Path) -> list[Path]:
    """Every image file under ``raw_dir``, sorted, so the order never depends on the OS."""
    return sorted(p for p in Path(raw_dir).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int):
    """A seeded permutation of range(n), cut into train, val and test index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def crop_box(width: int, height: int, mode: str, box) -> tuple[int, int, int, int]:
    """The square region to keep: the centre square, or the centre square of a fractional box."""
    if mode == "box":
        x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    else:
        x0, y0, x1, y1 = 0, 0, width, height
    side = min(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    side = round(side)
    return left, top, left + side, top + side


def load_image(path: Path, size: int, mode: str, box, min_side: int):
    """(array 3 x size x size uint8, None) or (None, reason the file was skipped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if min(im.size) < min_side:
                    return None, f"too small ({im.size[0]}x{im.size[1]} < {min_side} px)"
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    # Transparent backgrounds (the Cartoon Set) become white.
                    rgba = im.convert("RGBA")
                    im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im.alpha_composite(rgba)
                im = im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "decompression bomb (too many pixels)"
    except (OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"unreadable ({reason})"
    im = im.crop(crop_box(*im.size, mode, box))
    im = im.resize((size, size), Image.LANCZOS)  # LANCZOS antialiases when shrinking
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy(), None


def read_attributes(image: Path) -> dict[str, int] | None:
    """The Cartoon Set CSV beside an image: lines of ``"name", value_index, num_values``."""
    sidecar = image.with_suffix(".csv")
    if not sidecar.is_file():
        return None
    out = {}
    with open(sidecar, newline="", encoding="utf-8") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if len(row) >= 2:
                try:
                    out[row[0].strip()] = int(row[1])
                except ValueError:
                    return None
    return out or None


def _load_job(job):
    path, size, mode, box, min_side = job
    return load_image(Path(path), size, mode, box, min_side)


def prepare(raw_dir: Path, out_dir: Path, *, image_size: int, crop: str, box,
            val_fraction: float, test_fraction: float, min_side: int, seed: int,
            max_bad_fraction: float = 0.5, workers: int = 0) -> dict:
    """Decode, crop, resize and split every image under ``raw_dir`` into ``out_dir``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = list_images(raw_dir)
    if not files:
        raise ToonvaeError(f"{raw_dir}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                           "run the download stage first")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    splits = split_indices(len(files), val_fraction, test_fraction, seed)
    skipped, counts, attr_rows = [], {}, []
    workers = workers or os.cpu_count() or 1
    bar = progress(total=len(files), desc="preprocessing", unit="img")
    with bar, ProcessPoolExecutor(workers) as pool:
        for split in SPLITS:
            idx = splits[split]
            arr = np.lib.format.open_memmap(tmp / f"{split}.partial.npy", mode="w+",
                                            dtype=np.uint8,
                                            shape=(len(idx), 3, image_size, image_size))
            jobs = [(str(files[i]), image_size, crop, box, min_side) for i in idx]
            kept = 0
            for i, (img, reason) in zip(idx, pool.map(_load_job, jobs, chunksize=32)):
                bar.update()
                rel = files[i].relative_to(raw_dir).as_posix()
                if img is None:
                    skipped.append({"file": rel, "reason": reason})
                    continue
                arr[kept] = img
                attrs = read_attributes(files[i])
                if attrs is not None:
                    attr_rows.append({"split": split, "index": kept, "file": rel, **attrs})
                kept += 1
            arr.flush()
            del arr
            _shrink(tmp / f"{split}.partial.npy", tmp / f"{split}.npy", kept)
            counts[split] = kept
    bad = len(skipped) / len(files)
    if bad > max_bad_fraction:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToonvaeError(f"{raw_dir}: {len(skipped)} of {len(files)} images are unusable "
                           f"(first: {skipped[0]['file']}: {skipped[0]['reason']}); "
                           "check the download")
    if counts["train"] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToonvaeError(f"{raw_dir}: no training images left after the split; "
                           "add images or lower preprocess.val_fraction/test_fraction")
    attr_names = sorted({k for row in attr_rows for k in row} - {"split", "index", "file"})
    if attr_rows:
        with open(tmp / "attributes.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["split", "index", "file", *attr_names], restval=-1)
            writer.writeheader()
            writer.writerows(attr_rows)
    manifest = {"image_size": image_size, "crop": crop, "crop_box": list(box),
                "files": len(files), "counts": counts, "attributes": attr_names,
                "skipped": skipped}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return manifest


def _shrink(partial: Path, final: Path, rows: int, chunk: int = 4096) -> None:
    """Keep the first ``rows`` rows of a .npy file, copying in chunks (bounded memory)."""
    src = np.load(partial, mmap_mode="r")
    if rows == len(src):
        del src
        partial.rename(final)
        return
    dst = np.lib.format.open_memmap(final, mode="w+", dtype=src.dtype, shape=(rows, *src.shape[1:]))
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        dst[start:stop] = src[start:stop]
    dst.flush()
    del src, dst
    partial.unlink()
