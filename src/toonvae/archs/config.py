"""What a model is made of, without torch: its config (``ModelConfig``, params.yaml's
``model`` section and the sizes) and the names that params.yaml's checks need."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CHANNELS = (16, 32, 64, 128)  # model.channels: encoder widths, one per stride-2 stage
SAMPLERS = ("prior", "gmm", "flow")  # where samples come from (toonvae.sampler draws them)


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    image_size: int
    latent_dim: int
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    likelihood: str = "auto"
    upsample: str = "resize-rgb"

    def to_dict(self) -> dict:
        return {"arch": self.arch, "image_size": self.image_size,
                "latent_dim": self.latent_dim, "channels": list(self.channels),
                "likelihood": self.likelihood, "upsample": self.upsample}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(arch=d["arch"], image_size=int(d["image_size"]),
                   latent_dim=int(d["latent_dim"]), channels=tuple(d["channels"]),
                   likelihood=d["likelihood"],
                   # Model files written before the setting existed have tconv decoders.
                   upsample=d.get("upsample", "tconv"))

    @classmethod
    def from_params(cls, p) -> "ModelConfig":
        """The config that params.yaml (a ``toonvae.params.Params``) describes."""
        return cls(arch=p.model.arch, image_size=p.image_size, latent_dim=p.latent_dim,
                   channels=tuple(p.model.channels), likelihood=p.model.likelihood,
                   upsample=p.model.upsample)
