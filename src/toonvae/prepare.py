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
import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from toonvae.errors import ToonvaeError
from toonvae.progress import progress
from toonvae.imagefiles import IMAGE_SUFFIXES, list_images

SPLITS = ("train", "val", "test")
Image.MAX_IMAGE_PIXELS = 40_000_000  # decompression bombs raise instead of eating memory


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
    """(array 3 x size x size uint8, None) or (None, why the file was skipped).

    Reasons, counted per kind in the manifest: "empty file", "not an image",
    "truncated", "too small", "decompression bomb", "unreadable". Grayscale, palette
    and transparent images are converted to RGB (transparency onto white).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None, "empty file"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if min(im.size) < min_side:
                    return None, f"too small ({im.size[0]}x{im.size[1]} < {min_side} px)"
                im.load()
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    # Transparent backgrounds (the Cartoon Set) become white.
                    rgba = im.convert("RGBA")
                    im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im.alpha_composite(rgba)
                im = im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "decompression bomb (more than {:,} pixels)".format(Image.MAX_IMAGE_PIXELS)
    except UnidentifiedImageError:
        return None, "not an image (no decoder recognises it)"
    except (OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated" if "truncated" in reason.lower() else "unreadable"
        return None, f"{kind} ({reason})"
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


def _file_digest(path: str) -> str | None:
    """sha256 of the file's bytes; None for an empty file (skipped later as "empty file",
    not counted as a duplicate of every other empty file)."""
    if Path(path).stat().st_size == 0:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def drop_duplicates(files: list[Path], digests: list[str]) -> tuple[list[Path], list[dict]]:
    """Keep the first of each set of byte-identical files (in sorted order), so the
    same face can never sit in both train and test."""
    first: dict[str, Path] = {}
    kept, dropped = [], []
    for f, d in zip(files, digests):
        if d is not None and d in first:
            dropped.append({"file": f, "same_as": first[d]})
        else:
            first[d] = f
            kept.append(f)
    return kept, dropped


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
    skipped, counts, attr_rows = [], {}, []
    n_files = len(files)
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        digests = list(progress(pool.map(_file_digest, map(str, files), chunksize=64),
                                desc="hashing", unit="file", total=len(files)))
        files, duplicates = drop_duplicates(files, digests)
        splits = split_indices(len(files), val_fraction, test_fraction, seed)
        bar = progress(total=len(files), desc="preprocessing", unit="img")
        with bar:
            _decode_splits(pool, files, splits, raw_dir, tmp, image_size, crop, box, min_side,
                           bar, skipped, counts, attr_rows)
    bad = len(skipped) / n_files
    if bad > max_bad_fraction:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToonvaeError(f"{raw_dir}: {len(skipped)} of {n_files} images are unusable "
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
    reasons = {}
    for s in skipped:
        kind = s["reason"].split(" (")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    manifest = {"image_size": image_size, "crop": crop, "crop_box": list(box) if box else None,
                "files": n_files, "counts": counts, "attributes": attr_names,
                "skipped_by_reason": dict(sorted(reasons.items())), "skipped": skipped,
                "duplicates": [{"file": d["file"].relative_to(raw_dir).as_posix(),
                                "same_as": d["same_as"].relative_to(raw_dir).as_posix()}
                               for d in duplicates]}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return manifest


def _decode_splits(pool, files, splits, raw_dir, tmp, image_size, crop, box, min_side, bar,
                   skipped, counts, attr_rows) -> None:
    """Decode each split's files in the worker pool, straight into its memory map."""
    for split in SPLITS:
        idx = splits[split]
        arr = np.lib.format.open_memmap(tmp / f"{split}.partial.npy", mode="w+",
                                        dtype=np.uint8,
                                        shape=(len(idx), 3, image_size, image_size))
        kept = 0
        for i, (img, reason) in zip(idx, _decoded(pool, [files[i] for i in idx], image_size,
                                                  crop, box, min_side)):
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


def _decoded(pool, files, image_size, crop, box, min_side, window: int = 1024):
    """Decoded images in order; at most ``window`` in flight, so memory stays bounded."""
    for start in range(0, len(files), window):
        jobs = [(str(f), image_size, crop, box, min_side) for f in files[start:start + window]]
        yield from pool.map(_load_job, jobs, chunksize=16)


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
