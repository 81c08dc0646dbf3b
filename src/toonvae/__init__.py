"""toonvae: variational autoencoders for anime and cartoon faces, as a DVC pipeline.

``toonvae.load("models/anime")`` returns a trained model ready to sample, encode,
reconstruct and interpolate (see ``toonvae.api``).
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: stage scripts import toonvae without paying for torch until they need it.
    if name == "load":
        from toonvae.api import load
        return load
    raise AttributeError(f"module 'toonvae' has no attribute {name!r}")
