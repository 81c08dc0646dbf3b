"""The Python API for trained models; the ``toonvae`` command is built on it.

    vae = toonvae.load("models/anime")
    faces = vae.sample(16)                 # float images N x 3 x S x S in [0, 1]
    recon = vae.reconstruct(["a.png"])     # image files, preprocessed like the training data
    z = vae.encode(images)                 # posterior means
    strip = vae.interpolate("a.png", "b.png", steps=8)

Images can be given as file paths, a uint8 array N x 3 x S x S, or a float tensor in [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from toonvae.archs import choose_sampler
from toonvae.errors import ToonvaeError
from toonvae.model import load_model
from toonvae.prepare import load_image
from toonvae.sampler import slerp


class TrainedVAE:
    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu"):
        self.dir = Path(model_dir)
        self.device = torch.device(device)
        self.model, self.meta = load_model(self.dir, self.device)
        self.image_size = self.model.cfg.image_size
        self.preprocess = self._preprocess_settings()

    def _preprocess_settings(self) -> dict:
        """How the training images were cropped: from the prepared data's manifest when it
        is at its DVC place (data/prepared/<name>), else a centre crop."""
        manifest = self.dir.parent.parent / "data" / "prepared" / self.dir.name / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            return {"crop": m.get("crop", "center"), "box": m.get("crop_box"),
                    "source": str(manifest)}
        return {"crop": "center", "box": None, "source": "default centre crop"}

    @property
    def default_sampler(self) -> str:
        """What ``sample`` draws from unless told: ``sampler.kind: auto``'s choice, the one
        the evaluate stage scores by default (``toonvae.sampler.choose``)."""
        return choose_sampler("auto", self.model)

    def load_images(self, paths) -> np.ndarray:
        """Image files as uint8 N x 3 x S x S, cropped and resized like the training data."""
        out = []
        for path in paths:
            if not Path(path).is_file():
                raise ToonvaeError(f"{path}: no such image file")
            array, why = load_image(Path(path), self.image_size, self.preprocess["crop"],
                                    self.preprocess["box"], min_side=1)
            if array is None:
                raise ToonvaeError(f"{path}: cannot use this image ({why})")
            out.append(array)
        return np.stack(out)

    def _as_tensor(self, images) -> torch.Tensor:
        if isinstance(images, (str, Path)):
            images = [images]
        if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, Path)):
            images = self.load_images(images)
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8:
                raise ToonvaeError("numpy images must be uint8 N x 3 x S x S")
            images = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or \
                images.shape[1:] != (3, self.image_size, self.image_size):
            raise ToonvaeError(f"images must be N x 3 x {self.image_size} x {self.image_size}")
        return images.float().to(self.device)

    @torch.inference_mode()
    def encode(self, images) -> torch.Tensor:
        """Posterior means mu(x), N x latent_dim."""
        return self.model.encode(self._as_tensor(images))[0].float().cpu()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(torch.as_tensor(z).float().to(self.device)).float().cpu()

    def reconstruct(self, images) -> torch.Tensor:
        return self.decode(self.encode(images))

    def sample(self, n: int, temperature: float = 1.0, seed: int = 0,
               sampler: str | None = None) -> torch.Tensor:
        """``n`` new faces; the sampler defaults to ``default_sampler``."""
        if n < 1 or temperature <= 0:
            raise ToonvaeError("n must be >= 1 and temperature > 0")
        z = self.model.sample_latents(n, torch.Generator().manual_seed(seed), temperature,
                                      sampler or self.default_sampler)
        return self.decode(z)

    def interpolate(self, a, b, steps: int = 8, spherical: bool = False) -> torch.Tensor:
        """Decoded faces along the line (or great circle) between the codes of a and b."""
        if steps < 2:
            raise ToonvaeError("steps must be >= 2")
        za, zb = self.encode(a)[:1], self.encode(b)[:1]
        t = torch.linspace(0, 1, steps)[:, None]
        return self.decode(slerp(za, zb, t) if spherical else (1 - t) * za + t * zb)


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> TrainedVAE:
    """A trained model directory (e.g. models/anime) ready for sampling and reconstruction."""
    return TrainedVAE(model_dir, device)
