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
from PIL import Image, UnidentifiedImageError

from toonvae.errors import ToonvaeError
from toonvae.files import atomic_dir, sha256_of
from toonvae.imagefiles import IMAGE_SUFFIXES, list_images
from toonvae.progress import progress

SPLITS = ("train", "val", "test")
# Larger images are refused as decompression bombs before they are decoded (checked here,
# not by setting PIL's global: importing toonvae changes no other code's PIL).
MAX_IMAGE_PIXELS = 40_000_000


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
                if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(path)
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
        return None, "decompression bomb (more than {:,} pixels)".format(MAX_IMAGE_PIXELS)
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
    return sha256_of(path)


def drop_duplicates(files: list[str], digests: list[str | None]) -> tuple[list[str], list[dict]]:
    """Keep the first of each set of byte-identical files (in sorted order), so the
    same face can never sit in both train and test."""
    first: dict[str, str] = {}
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
    workers = workers or os.cpu_count() or 1
    with atomic_dir(out_dir) as tmp:
        with ProcessPoolExecutor(workers) as pool:
            # Start the workers while this process is still small: they are forked copies of it.
            list(pool.map(abs, range(workers)))
            # Plain strings: a list of 100k Path objects costs several times more memory.
            files = [str(p) for p in list_images(raw_dir)]
            if not files:
                raise ToonvaeError(f"{raw_dir}: no images found "
                                   f"({', '.join(sorted(IMAGE_SUFFIXES))}); run the download stage first")
            skipped, counts = [], {}
            n_files = len(files)
            digests = list(progress(_windowed_map(pool, _file_digest, files),
                                    desc="hashing", unit="file", total=len(files)))
            files, duplicates = drop_duplicates(files, digests)
            splits = split_indices(len(files), val_fraction, test_fraction, seed)
            attrs = AttributeTable(tmp / "attributes.jsonl")
            bar = progress(total=len(files), desc="preprocessing", unit="img")
            with bar:
                _decode_splits(pool, files, splits, raw_dir, tmp, image_size, crop, box, min_side,
                               bar, skipped, counts, attrs)
        bad = len(skipped) / n_files
        if bad > max_bad_fraction:
            raise ToonvaeError(f"{raw_dir}: {len(skipped)} of {n_files} images are unusable "
                               f"(first: {skipped[0]['file']}: {skipped[0]['reason']}); "
                               "check the download")
        if counts["train"] == 0:
            raise ToonvaeError(f"{raw_dir}: no training images left after the split; "
                               "add images or lower preprocess.val_fraction/test_fraction")
        attr_names = attrs.finish(tmp / "attributes.csv")
        reasons = {}
        for s in skipped:
            kind = s["reason"].split(" (")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        manifest = {"image_size": image_size, "crop": crop, "crop_box": list(box) if box else None,
                    "files": n_files, "counts": counts, "attributes": attr_names,
                    "skipped_by_reason": dict(sorted(reasons.items())), "skipped": skipped,
                    "duplicates": [{"file": Path(d["file"]).relative_to(raw_dir).as_posix(),
                                    "same_as": Path(d["same_as"]).relative_to(raw_dir).as_posix()}
                                   for d in duplicates]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _decode_splits(pool, files, splits, raw_dir, tmp, image_size, crop, box, min_side, bar,
                   skipped, counts, attrs) -> None:
    """Decode each split's files in the worker pool, streaming them into its .npy file."""
    for split in SPLITS:
        idx = splits[split]
        arr = NpyRowWriter(tmp / f"{split}.npy", (3, image_size, image_size), len(idx))
        kept = 0
        for i, (img, reason) in zip(idx, _decoded(pool, [files[i] for i in idx], image_size,
                                                  crop, box, min_side)):
            bar.update()
            rel = Path(files[i]).relative_to(raw_dir).as_posix()
            if img is None:
                skipped.append({"file": rel, "reason": reason})
                continue
            arr.append(img)
            row_attrs = read_attributes(Path(files[i]))
            if row_attrs is not None:
                attrs.add({"split": split, "index": kept, "file": rel, **row_attrs})
            kept += 1
        arr.close()
        counts[split] = kept


def _windowed_map(pool, fn, items, window: int = 1024):
    """pool.map in order, with at most ``window`` tasks in flight: bounded memory."""
    for start in range(0, len(items), window):
        yield from pool.map(fn, items[start:start + window], chunksize=16)


def _decoded(pool, files, image_size, crop, box, min_side, window: int = 128):
    """Decoded images (or skip reasons), in the order of ``files``. At most ``window``
    decoded images wait for this process (196 KB each at 256 px): bounded memory."""
    for start in range(0, len(files), window):
        jobs = [(f, image_size, crop, box, min_side) for f in files[start:start + window]]
        yield from pool.map(_load_job, jobs, chunksize=8)


class AttributeTable:
    """Rows of per-image attributes, spooled to disk as JSON lines while decoding (the
    100k Cartoon Set would otherwise hold 100k dicts), written as one CSV at the end."""

    def __init__(self, spool: Path):
        self.spool = Path(spool)
        self.file = open(self.spool, "w", encoding="utf-8")
        self.names: set[str] = set()

    def add(self, row: dict) -> None:
        self.names.update(k for k in row if k not in ("split", "index", "file"))
        self.file.write(json.dumps(row) + "\n")

    def finish(self, csv_path: Path) -> list[str]:
        """Write the CSV (only when there were attributes); return the attribute names."""
        self.file.close()
        names = sorted(self.names)
        if names:
            with open(self.spool, encoding="utf-8") as rows, \
                    open(csv_path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["split", "index", "file", *names], restval=-1)
                writer.writeheader()
                for line in rows:
                    writer.writerow(json.loads(line))
        self.spool.unlink()
        return names


class NpyRowWriter:
    """Appends uint8 rows to a .npy file with plain writes.

    Writing through a memory map would keep every written page in this process's
    resident set; plain writes leave them to the page cache, so memory stays flat
    however large the split. The header is written for ``capacity`` rows and fixed
    on close to the number actually appended (skipped files make it smaller).
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], capacity: int):
        self.path, self.row_shape, self.rows = Path(path), tuple(row_shape), 0
        self.row_bytes = int(np.prod(row_shape))
        self.file = open(self.path, "wb")
        self.file.write(self._header(capacity))
        self.header_len = self.file.tell()

    def _header(self, rows: int) -> bytes:
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "|u1", "fortran_order": False, "shape": (rows, *self.row_shape)})
        return buf.getvalue()

    def append(self, row: np.ndarray) -> None:
        data = np.ascontiguousarray(row, dtype=np.uint8)
        assert data.size == self.row_bytes, (data.shape, self.row_shape)
        self.file.write(data.tobytes())
        self.rows += 1

    def close(self) -> None:
        header = self._header(self.rows)
        if len(header) == self.header_len:
            self.file.seek(0)
            self.file.write(header)
            self.file.close()
            return
        # The row count needs a header of another length: copy the rows behind a new one.
        self.file.close()
        tmp = self.path.with_name(self.path.name + ".resize")
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(header)
            src.seek(self.header_len)
            shutil.copyfileobj(src, dst, 1 << 22)
        tmp.replace(self.path)
