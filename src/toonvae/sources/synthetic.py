"""Procedural faces: the offline stand-in for the real datasets.

Two styles, each written in the raw layout of the dataset it replaces, so that
preprocess cannot tell them apart from the real thing:

- ``cartoon``: like Google's Cartoon Set, a transparent RGBA PNG per face drawn in
  layers (hair back, face, hair front, eyes, eyebrows, mouth, facial hair, glasses)
  plus a CSV of ``"attribute", value_index, num_values`` lines.
- ``anime``: like the Kaggle anime face crops, a JPG per face in ``images/`` with
  the face filling the frame on a coloured background.

Every face is drawn from its own RNG seeded by ``(seed, index)``, so face i is the
same whatever the count, and the output is byte-identical for the same seed.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from toonvae.params import SYNTHETIC_STYLES
from toonvae.progress import progress

# ---------------------------------------------------------------- palettes
SKIN = [(255, 224, 196), (241, 194, 160), (224, 172, 128), (198, 134, 90),
        (160, 102, 62), (110, 70, 45)]
CARTOON_HAIR = [(20, 20, 24), (90, 56, 30), (150, 95, 45), (225, 180, 90),
                (190, 75, 35), (200, 200, 205), (245, 240, 225), (120, 60, 140)]
CARTOON_EYES = [(70, 45, 25), (60, 120, 200), (70, 140, 80), (120, 120, 130), (30, 30, 30)]
GLASSES = [(20, 20, 20), (140, 30, 30), (40, 70, 150), (190, 160, 60)]
ANIME_HAIR = [(30, 28, 40), (95, 60, 40), (240, 210, 120), (215, 60, 50), (245, 140, 60),
              (245, 150, 190), (150, 90, 200), (60, 90, 200), (140, 200, 240),
              (225, 225, 235), (80, 170, 110), (40, 40, 110)]
ANIME_EYES = [(200, 40, 50), (50, 110, 220), (50, 160, 90), (150, 70, 200), (220, 170, 40),
              (130, 80, 40), (235, 100, 160), (40, 190, 200)]
ANIME_SKIN = [(255, 236, 222), (252, 226, 205), (245, 214, 190), (255, 243, 235)]

# Attribute name -> number of values, in the order they are written to the CSV.
CARTOON_ATTRIBUTES = {
    "face_shape": 4, "face_color": len(SKIN), "hair": 8, "hair_color": len(CARTOON_HAIR),
    "eye_color": len(CARTOON_EYES), "eye_shape": 3, "eyebrow_shape": 4, "mouth": 4,
    "facial_hair": 4, "glasses": 4, "glasses_color": len(GLASSES),
}


def generate(style: str, out_dir: Path, count: int, seed: int, size: int,
             workers: int = 0) -> int:
    """Write ``count`` faces of ``style`` under ``out_dir``; return how many were written.

    Faces are independent, so they are drawn by ``workers`` processes (0: one per core).
    """
    if style not in SYNTHETIC_STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; allowed: {', '.join(SYNTHETIC_STYLES)}")
    folder = Path(out_dir) / ("cartoonset" if style == "cartoon" else "images")
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(style, folder, seed, size, i) for i in range(count)]
    workers = workers or os.cpu_count() or 1
    bar = progress(total=count, desc=f"drawing {style} faces", unit="img")
    with bar:
        if workers == 1:
            for job in jobs:
                _write_face(job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_face, jobs, chunksize=64):
                    bar.update()
    return count


def _write_face(job) -> None:
    style, folder, seed, size, i = job
    rng = np.random.default_rng([seed, i])
    if style == "cartoon":
        image, attrs = draw_cartoon(rng, size)
        stem = folder / f"cs{i:08d}"
        image.save(stem.with_suffix(".png"), compress_level=1)
        stem.with_suffix(".csv").write_text(
            "".join(f'"{k}", {attrs[k]}, {n}\n' for k, n in CARTOON_ATTRIBUTES.items()))
    else:
        # The Kaggle crops vary in size around ``size`` (roughly 90 to 120 px).
        side = int(rng.integers(max(16, size - 15), size + 16))
        draw_anime(rng, side).save(folder / f"{i}_{2000 + i % 20}.jpg", quality=92)


# ---------------------------------------------------------------- helpers
def _shade(color, factor):
    return tuple(int(max(0, min(255, c * factor))) for c in color)


def _mix(a, b, t):
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _pick(rng, n):
    return int(rng.integers(n))


# ---------------------------------------------------------------- cartoon
def draw_cartoon(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict]:
    """One Cartoon-Set-like face on a transparent canvas, and its attribute indices."""
    a = {k: _pick(rng, n) for k, n in CARTOON_ATTRIBUTES.items()}
    # Like the real set, most faces wear no glasses and no beard.
    a["glasses"] = 0 if rng.random() < 0.55 else 1 + _pick(rng, 3)
    a["facial_hair"] = 0 if rng.random() < 0.5 else 1 + _pick(rng, 3)
    s = size / 500.0  # all coordinates are designed on the real set's 500 px canvas
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    line = (25, 20, 20, 255)
    lw = max(1, round(5 * s))

    skin = SKIN[a["face_color"]]
    hair = CARTOON_HAIR[a["hair_color"]]
    cx, cy = 250, 265
    rx, ry = [(95, 120), (105, 108), (88, 135), (102, 122)][a["face_shape"]]
    face_box = [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]
    style = a["hair"]  # 0 bald, 1 short, 2 spiky, 3 bun, 4 curly, 5 side part, 6 long, 7 mohawk

    def box(x0, y0, x1, y1):
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    # hair back: long hair falls behind the face and shoulders
    if style == 6:
        d.rounded_rectangle(box(cx - rx - 30, cy - ry - 25, cx + rx + 30, cy + ry + 55),
                            radius=90 * s, fill=hair, outline=line, width=lw)
    if style == 4:
        for k in range(14):
            ang = math.pi * (0.95 + 1.1 * k / 13)
            px, py = cx + (rx + 10) * math.cos(ang), cy - 20 + (ry + 5) * math.sin(ang)
            r = 34
            d.ellipse(box(px - r, py - r, px + r, py + r), fill=hair, outline=line, width=lw)

    # ears, then the face
    for side in (-1, 1):
        ex = cx + side * rx
        d.ellipse(box(ex - 22, cy - 22, ex + 22, cy + 28), fill=skin, outline=line, width=lw)
    if a["face_shape"] == 3:
        d.rounded_rectangle(face_box, radius=70 * s, fill=skin, outline=line, width=lw)
    else:
        d.ellipse(face_box, fill=skin, outline=line, width=lw)

    # hair front
    top = cy - ry
    if style in (1, 3, 5, 6):
        d.chord(box(cx - rx - 8, top - 30, cx + rx + 8, cy + 10), 180, 360,
                fill=hair, outline=line, width=lw)
        if style == 5:  # side part: a swept lock over one side of the forehead
            d.polygon([((cx - rx) * s, (top + 40) * s), ((cx + 20) * s, (top + 10) * s),
                       ((cx + rx) * s, (top + 70) * s), ((cx + rx) * s, (top + 30) * s),
                       ((cx - rx) * s, (top + 20) * s)], fill=hair)
        if style == 3:
            d.ellipse(box(cx - 38, top - 95, cx + 38, top - 20), fill=hair, outline=line, width=lw)
    elif style == 2:
        pts = []
        n = 7
        for k in range(n + 1):
            x = cx - rx - 5 + (2 * rx + 10) * k / n
            pts.append((x * s, (top + 35) * s))
            if k < n:
                xm = x + (2 * rx + 10) / n / 2
                pts.append((xm * s, (top - 45 - 15 * math.sin(math.pi * k / n)) * s))
        d.polygon(pts, fill=hair, outline=line)
    elif style == 4:
        d.chord(box(cx - rx - 5, top - 20, cx + rx + 5, cy), 180, 360, fill=hair)
    elif style == 7:
        d.rounded_rectangle(box(cx - 25, top - 55, cx + 25, top + 40), radius=20 * s,
                            fill=hair, outline=line, width=lw)

    # eyes
    eye_y = cy - 5
    ew, eh = [(22, 22), (26, 13), (30, 20)][a["eye_shape"]]
    iris = CARTOON_EYES[a["eye_color"]]
    for side in (-1, 1):
        ex = cx + side * 45
        d.ellipse(box(ex - ew, eye_y - eh, ex + ew, eye_y + eh), fill=(255, 255, 255),
                  outline=line, width=lw)
        ir = min(ew, eh) * 0.85
        d.ellipse(box(ex - ir, eye_y - ir, ex + ir, eye_y + ir), fill=iris)
        pr = ir * 0.45
        d.ellipse(box(ex - pr, eye_y - pr, ex + pr, eye_y + pr), fill=(10, 10, 10))
        hr = ir * 0.25
        d.ellipse(box(ex + pr - hr, eye_y - pr - hr, ex + pr + hr, eye_y - pr + hr),
                  fill=(255, 255, 255))

    # eyebrows: straight, arched, angry, thick
    brow = hair if style != 0 else _shade(skin, 0.5)
    brow_y = eye_y - eh - 22
    bw = max(2, round([7, 7, 8, 14][a["eyebrow_shape"]] * s))
    for side in (-1, 1):
        x0, x1 = cx + side * 20, cx + side * 75
        if a["eyebrow_shape"] == 1:
            d.arc(box(min(x0, x1), brow_y - 8, max(x0, x1), brow_y + 22), 200, 340,
                  fill=brow, width=bw)
        else:
            tilt = 10 if a["eyebrow_shape"] == 2 else 0
            d.line([(x0 * s, (brow_y + tilt) * s), (x1 * s, (brow_y - tilt) * s)],
                   fill=brow, width=bw)

    # nose
    d.arc(box(cx - 12, cy + 22, cx + 12, cy + 48), 20, 160, fill=_shade(skin, 0.6), width=lw)

    # mouth: smile, open grin, flat, small "o"
    my = cy + 72
    if a["mouth"] == 0:
        d.arc(box(cx - 35, my - 30, cx + 35, my + 15), 20, 160, fill=line, width=lw)
    elif a["mouth"] == 1:
        d.chord(box(cx - 38, my - 28, cx + 38, my + 22), 0, 180, fill=(255, 255, 255),
                outline=line, width=lw)
    elif a["mouth"] == 2:
        d.line([((cx - 28) * s, my * s), ((cx + 28) * s, my * s)], fill=line, width=lw)
    else:
        d.ellipse(box(cx - 12, my - 10, cx + 12, my + 14), fill=(120, 30, 40), outline=line,
                  width=lw)

    # facial hair: none, mustache, goatee, full beard
    fh = a["facial_hair"]
    if fh == 1:
        d.chord(box(cx - 40, my - 28, cx + 40, my + 2), 180, 360, fill=hair, outline=line,
                width=lw)
    elif fh == 2:
        d.ellipse(box(cx - 22, cy + ry - 38, cx + 22, cy + ry + 8), fill=hair, outline=line,
                  width=lw)
    elif fh == 3:
        d.chord(box(cx - rx, cy - 10, cx + rx, cy + ry + 25), 0, 180, fill=hair, outline=line,
                width=lw)
        d.chord(box(cx - 30, my - 18, cx + 30, my + 16), 0, 180, fill=(255, 255, 255),
                outline=line, width=lw)

    # glasses: none, round, square, sunglasses
    g = a["glasses"]
    if g:
        gc = GLASSES[a["glasses_color"]]
        gw = max(2, round(6 * s))
        for side in (-1, 1):
            ex = cx + side * 45
            b = box(ex - 34, eye_y - 26, ex + 34, eye_y + 26)
            if g == 1:
                d.ellipse(b, outline=gc, width=gw)
            elif g == 2:
                d.rectangle(b, outline=gc, width=gw)
            else:
                d.rounded_rectangle(b, radius=14 * s, fill=(25, 25, 30), outline=gc, width=gw)
        d.line([((cx - 11) * s, eye_y * s), ((cx + 11) * s, eye_y * s)], fill=gc, width=gw)
    return img, a


# ---------------------------------------------------------------- anime
def draw_anime(rng: np.random.Generator, side: int) -> Image.Image:
    """One anime-style face crop, ``side`` px square, the face filling the frame."""
    S = 256  # draw big, then downsample: antialiasing for free
    hair = ANIME_HAIR[_pick(rng, len(ANIME_HAIR))]
    iris = ANIME_EYES[_pick(rng, len(ANIME_EYES))]
    skin = ANIME_SKIN[_pick(rng, len(ANIME_SKIN))]
    bg_top = tuple(int(v) for v in rng.integers(120, 256, 3))
    bg_bottom = _mix(bg_top, tuple(int(v) for v in rng.integers(60, 256, 3)), 0.6)

    # background: a vertical gradient
    grad = np.linspace(0, 1, S)[:, None, None]
    bg = (np.array(bg_top)[None, None] * (1 - grad) + np.array(bg_bottom)[None, None] * grad)
    canvas = Image.fromarray(np.broadcast_to(bg, (S, S, 3)).astype(np.uint8), "RGB")

    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    dark_hair = _shade(hair, 0.6)
    light_hair = _mix(hair, (255, 255, 255), 0.45)
    outline = _shade(hair, 0.35)
    cx, cy = 128, 138
    fw, fh = rng.uniform(80, 92), rng.uniform(92, 104)  # face half-width, half-height

    # hair back: a big mass framing the head, long or short
    length = rng.uniform(0.3, 1.0)
    d.ellipse([cx - fw - 30, cy - fh - 45, cx + fw + 30, cy + fh * 0.6], fill=hair)
    d.rectangle([cx - fw - 26, cy - 20, cx + fw + 26, cy + 40 + 140 * length], fill=dark_hair)

    # face: round top, pointed chin
    chin = cy + fh + rng.uniform(0, 14)
    pts = [(cx + fw * math.cos(t), cy - 10 + fh * 0.85 * math.sin(t))
           for t in np.linspace(math.pi, 2 * math.pi, 24)]
    pts += [(cx + fw * 0.95, cy + fh * 0.35), (cx + fw * 0.45, chin - 18), (cx, chin),
            (cx - fw * 0.45, chin - 18), (cx - fw * 0.95, cy + fh * 0.35)]
    d.polygon(pts, fill=skin)
    d.line([(cx + fw * 0.45, chin - 18), (cx, chin), (cx - fw * 0.45, chin - 18)],
           fill=_shade(skin, 0.75), width=2)

    # eyes: tall, with a dark lash line, gradient iris, pupil and highlights
    eye_y = cy + rng.uniform(8, 18)
    ew, eh = rng.uniform(20, 26), rng.uniform(25, 33)
    gap = rng.uniform(38, 46)
    for sx in (-1, 1):
        ex = cx + sx * gap
        d.ellipse([ex - ew, eye_y - eh, ex + ew, eye_y + eh], fill=(255, 255, 255))
        d.ellipse([ex - ew * 0.8, eye_y - eh * 0.85, ex + ew * 0.8, eye_y + eh * 0.95],
                  fill=_shade(iris, 0.55))
        d.ellipse([ex - ew * 0.68, eye_y - eh * 0.55, ex + ew * 0.68, eye_y + eh * 0.9],
                  fill=iris)
        d.ellipse([ex - ew * 0.5, eye_y + eh * 0.15, ex + ew * 0.5, eye_y + eh * 0.85],
                  fill=_mix(iris, (255, 255, 255), 0.4))
        d.ellipse([ex - ew * 0.3, eye_y - eh * 0.35, ex + ew * 0.3, eye_y + eh * 0.35],
                  fill=(20, 15, 25))
        d.ellipse([ex + sx * ew * 0.1 - 8, eye_y - eh * 0.55 - 6, ex + sx * ew * 0.1 + 8,
                   eye_y - eh * 0.55 + 10], fill=(255, 255, 255))
        d.ellipse([ex - sx * ew * 0.35 - 4, eye_y + eh * 0.35 - 4, ex - sx * ew * 0.35 + 4,
                   eye_y + eh * 0.35 + 4], fill=(255, 255, 255))
        # upper lash line, thicker at the outer corner
        d.line([(ex - sx * ew * 1.05, eye_y - eh * 0.55), (ex, eye_y - eh * 1.05),
                (ex + sx * ew * 1.15, eye_y - eh * 0.7)], fill=(30, 20, 25), width=7)
        d.line([(ex - ew * 0.6, eye_y + eh * 1.0), (ex + ew * 0.6, eye_y + eh * 1.0)],
               fill=_shade(skin, 0.6), width=2)
        # blush
        d.ellipse([ex - 16, eye_y + eh + 8, ex + 16, eye_y + eh + 18],
                  fill=_mix(skin, (250, 120, 140), 0.35))

    # eyebrows, partly hidden by the bangs later
    for sx in (-1, 1):
        ex = cx + sx * gap
        d.line([(ex - 18, eye_y - eh - 18 - 2 * sx), (ex + 18, eye_y - eh - 18 + 2 * sx)],
               fill=outline, width=3)

    # nose and mouth
    d.line([(cx + 2, cy + 48), (cx - 2, cy + 54)], fill=_shade(skin, 0.7), width=2)
    my = cy + rng.uniform(66, 76)
    if rng.random() < 0.5:
        d.line([(cx - 8, my), (cx + 8, my)], fill=(150, 60, 60), width=2)
    else:
        d.polygon([(cx - 9, my - 3), (cx + 9, my - 3), (cx, my + 7)], fill=(170, 50, 60))

    # bangs: spikes hanging over the forehead down to the eyebrows
    n = int(rng.integers(5, 9))
    base_y = cy - fh - 25
    tip_y = eye_y - eh - rng.uniform(0, 14)
    left, right = cx - fw - 22, cx + fw + 22
    pts = [(left, base_y - 30), (right, base_y - 30)]
    xs = np.linspace(right, left, 2 * n + 1)
    for k, x in enumerate(xs):
        jitter = rng.uniform(-6, 6)
        pts.append((x + jitter, tip_y + rng.uniform(-10, 10) if k % 2 else base_y + 40))
    d.polygon(pts, fill=hair)
    # side locks along the cheeks
    for sx in (-1, 1):
        x0 = cx + sx * (fw + 12)
        d.polygon([(x0 - 22 * sx, cy - 40), (x0 + 10 * sx, cy - 50),
                   (x0 + 6 * sx, cy + fh + 40 * length), (x0 - 14 * sx, cy + fh * 0.6)],
                  fill=hair)
    # a shine band across the hair
    d.arc([cx - fw, cy - fh - 40, cx + fw, cy - fh + 30], 200, 250, fill=light_hair, width=6)
    d.arc([cx - fw + 10, cy - fh - 35, cx + fw - 10, cy - fh + 25], 290, 330,
          fill=light_hair, width=5)

    # pose: a small tilt, shift and zoom; the face still fills the frame
    angle = rng.uniform(-10, 10)
    layer = layer.rotate(angle, resample=Image.BICUBIC, center=(cx, cy))
    canvas.paste(layer, (0, 0), layer)
    zoom = rng.uniform(0.85, 1.0)
    crop = S * zoom
    ox, oy = rng.uniform(0, S - crop), rng.uniform(0, S - crop)
    canvas = canvas.crop((round(ox), round(oy), round(ox + crop), round(oy + crop)))
    canvas = canvas.filter(ImageFilter.SMOOTH)
    return canvas.resize((side, side), Image.LANCZOS)
