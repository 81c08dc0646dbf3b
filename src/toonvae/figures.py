"""Every picture the README and the docs show, written deterministically (no timestamps in PNGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# The object-oriented API, not pyplot: no backend to switch at import, and a figure saved
# to PNG is drawn by Agg, the same pixels everywhere.
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle
from PIL import Image

from toonvae import archs
from toonvae.archs.base import LatentVAE
from toonvae.data import seeded_rows, to_float
from toonvae.files import atomic_path
from toonvae.model import describe

PNG_META = {"Software": None}  # matplotlib otherwise stamps its version into the file


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2,
              pad_value: float = 1.0) -> torch.Tensor:
    """torchvision.utils.make_grid's layout of a batch (N, 3, H, W): ``nrow`` images a row,
    ``padding`` px of ``pad_value`` around each; one image comes back as it is. Written
    here because importing torchvision loads torch._dynamo (about 3 s a process on 2
    cores); a test checks it against torchvision's, pixel for pixel."""
    if len(images) == 1:
        return images[0]
    n, channels, h, w = images.shape
    columns = min(nrow, n)
    rows = -(-n // columns)
    grid = images.new_full((channels, rows * (h + padding) + padding,
                            columns * (w + padding) + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, columns)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def save_grid(images: torch.Tensor, path: Path, columns: int, min_side: int = 96) -> None:
    """Save float images in [0, 1] as one grid; small images are upscaled (nearest) to be seen."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=columns, padding=2,
                     pad_value=1.0)
    array = (grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    im = Image.fromarray(array)
    scale = max(1, -(-min_side // images.shape[-1]))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def dataset_samples(array: np.ndarray, path: Path, n: int, columns: int, seed: int) -> None:
    save_grid(to_float(array[seeded_rows(len(array), n, seed)]), path, columns)


@torch.inference_mode()
def reconstructions(model: LatentVAE, array: np.ndarray, path: Path, n: int, columns: int,
                    seed: int) -> None:
    """Rows of originals, each above the row of its reconstructions."""
    x = to_float(array[seeded_rows(len(array), n, seed)], model.log_scale.device)
    recon = model.reconstruct(x)
    rows = []
    for start in range(0, len(x), columns):
        rows += [x[start:start + columns], recon[start:start + columns]]
    save_grid(torch.cat(rows), path, columns)


@torch.inference_mode()
def noise_samples(model: LatentVAE, path: Path, n: int, columns: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # The prior's own samples by definition (the temperature figure adds the mixture's).
    save_grid(model.sample(n, generator=generator, sampler="prior"), path, columns)


LABELLED_MAX_SIDE = 128  # faces in labelled rows are shown at most this large


def labelled_rows(rows: list[torch.Tensor], labels: list[str], path: Path,
                  title: str | None = None) -> None:
    """Rows of images, each with its label on the left (matplotlib, nearest-neighbour).

    Images above ``LABELLED_MAX_SIDE`` px (128 or 256 px models) are shrunk to it by
    averaging, so a figure of many 256 px faces keeps a width at which its labels can
    still be read when a browser fits it to the page."""
    if rows[0].shape[-1] > LABELLED_MAX_SIDE:
        rows = [torch.nn.functional.interpolate(r.float(), size=LABELLED_MAX_SIDE, mode="area")
                for r in rows]
    size = rows[0].shape[-1]
    scale = max(1, 64 // size)  # small images are enlarged to be seen
    grids = [make_grid(r.detach().float().cpu().clamp(0, 1), nrow=len(r), padding=2,
                       pad_value=1.0).permute(1, 2, 0).numpy() for r in rows]
    width = max(g.shape[1] for g in grids) * scale / 100
    height = sum(g.shape[0] for g in grids) * scale / 100
    fig, axes = _subplots(len(grids), 1, figsize=(width + 1.4, height + (0.3 if title else 0)),
                             dpi=100, squeeze=False)
    for ax, grid, label in zip(axes[:, 0], grids, labels, strict=True):
        ax.imshow(grid, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=1.3 / (width + 1.4), right=0.995, top=0.93 if title else 0.995,
                        bottom=0.005, hspace=0.05)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_META)


def curves(curves_dir: Path, path: Path) -> None:
    """Training curves from dvclive's files: loss, reconstruction and KL per epoch."""
    base = Path(curves_dir) / "plots" / "metrics"
    fig, axes = _subplots(1, 3, figsize=(11, 3.2), dpi=100)
    for ax, key, title in zip(axes, ("loss", "recon", "kl"),
                              ("negative ELBO (nats/image)", "reconstruction term", "KL (nats)"),
                              strict=True):
        for split, color in (("train", "#3b6fb6"), ("val", "#e07b39")):
            tsv = base / split / f"{key}.tsv"
            if not tsv.is_file():
                continue
            rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
            epochs = [int(r[0]) + 1 for r in rows]
            ax.plot(epochs, [float(r[1]) for r in rows], "o-", color=color, label=split, ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].legend(frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_META)


def kl_per_dim(kl: list[float], active: int | None, path: Path) -> None:
    """The KL of each latent dimension, largest first: how much each one carries."""
    values = np.sort(np.asarray(kl, dtype=float))[::-1]
    fig, ax = _subplots(figsize=(8, 3.2), dpi=100)
    ax.bar(np.arange(len(values)), values, width=1.0, color=COLORS["latent"], edgecolor="none")
    ax.set_xlabel("latent dimension, sorted by KL")
    ax.set_ylabel("KL, nats per image")
    ax.set_xlim(-0.5, len(values) - 0.5)
    note = f"; {active} active units" if active is not None else ""
    ax.set_title(f"KL per latent dimension on the test set: total {values.sum():.1f} nats{note}",
                 fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_META, bbox_inches="tight")


COLORS = {"input": "#f5d76e", "encoder": "#b8b8b8", "latent": "#e07bb0",
          "decoder": "#9fd68b", "output": "#f5d76e"}


def architecture(model: LatentVAE, path: Path) -> None:
    """The network as boxes, one per block, with the tensor shape each one outputs."""
    rows = describe(model)
    size = model.cfg.image_size
    fig, ax = _subplots(figsize=(max(10, 0.75 * len(rows)), 4.6), dpi=100)
    x = 0.0
    centers = []
    for part, label, shape in rows:
        if len(shape) == 3:
            height = 0.8 + 2.2 * shape[1] / size
            width = 0.25 + 0.12 * np.log2(shape[0])
            text = f"{shape[0]}x{shape[1]}x{shape[2]}"
        else:
            height, width, text = 0.6 + 0.15 * np.log2(shape[0]), 0.35, str(shape[0])
        ax.add_patch(FancyBboxPatch((x, -height / 2), width, height,
                                    boxstyle="round,pad=0.02,rounding_size=0.05",
                                    fc=COLORS[part], ec="#333333", lw=0.8))
        ax.text(x + width / 2, height / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=7, rotation=90)
        ax.text(x + width / 2, -1.75, label, ha="center", va="top", fontsize=7, rotation=90)
        centers.append((x, x + width))
        x += width + 0.35
    for (_, right), (left, _) in zip(centers, centers[1:]):
        ax.annotate("", xy=(left, 0), xytext=(right, 0),
                    arrowprops={"arrowstyle": "->", "lw": 0.7, "color": "#333333"})
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    ax.set_title(f"{cfg.arch} VAE: {size}x{size} RGB -> latent {cfg.latent_dim} -> "
                 f"{size}x{size} RGB, {n_params:,} parameters, "
                 f"{archs.likelihood(cfg)} likelihood", fontsize=10)
    handles = [Rectangle((0, 0), 1, 1, fc=c, ec="#333333") for c in
               (COLORS["encoder"], COLORS["latent"], COLORS["decoder"])]
    ax.legend(handles, ["encoder q(z|x)", "latent z (mu, log sigma^2)", "decoder p(x|z)"],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False,
              ncol=3)
    ax.set_xlim(-0.3, x)
    ax.set_ylim(-4.6, 2.6)
    ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_META, bbox_inches="tight")


def _subplots(*grid, figsize, dpi=100, **kwargs):
    """pyplot.subplots without pyplot's global state: (figure, axes)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(*grid, **kwargs)
