"""toonvae: variational autoencoders for anime and cartoon faces, as a DVC pipeline."""

__version__ = "0.1.0"
