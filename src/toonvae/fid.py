"""FID, only when the Inception weights are already on this machine and are the right ones.

torchmetrics computes FID with torch-fidelity's port of the TF Inception network
(the numbers papers report). Its weights file is fetched from GitHub on first use; an
offline pipeline cannot do that, and a wrong file would give a made-up number. So the
file named in params is used only when it exists and matches its published sha256;
otherwise ``fid`` is null and the log says why.
"""

from __future__ import annotations

from pathlib import Path

import torch

from toonvae.files import sha256_of

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity v0.2.0
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def weights_problem(path: str | None, sha256: str = INCEPTION_SHA256) -> str | None:
    """Why the weights at ``path`` cannot be used, or None when they can."""
    if not path:
        return "evaluate.fid_weights is null"
    p = Path(path).expanduser()
    if not p.is_file():
        return (f"no Inception weights at {p} (torch-fidelity's {INCEPTION_FILE}); "
                "put the file there to get FID")
    digest = sha256_of(p)
    if digest != sha256:
        return f"{p} has sha256 {digest[:12]}..., not {sha256[:12]}...; not the FID weights"
    return None


@torch.inference_mode()
def frechet_distance(real: torch.Tensor, fake: torch.Tensor, batch_size: int,
                     feature=None, weights_path: str | None = None) -> float:
    """FID between two sets of float images in [0, 1] (N x 3 x H x W), via torchmetrics.

    ``feature`` is torchmetrics' choice: 2048 (Inception pool features, the standard FID,
    which needs ``weights_path``) or any module mapping images to feature vectors.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature is None:  # the standard FID network takes uint8 images
        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(
            Path(weights_path).expanduser()))
        real, fake = (x.mul(255).round().byte() for x in (real, fake))
    else:
        fid = FrechetInceptionDistance(feature=feature, normalize=True)
    for images, real_flag in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            fid.update(images[i:i + batch_size], real=real_flag)
    return float(fid.compute())
