"""The baselines every trained model must beat, as models: the centre bias (model-free) and the readout network.

- :func:`center_bias` / :class:`CenterBiasModel`: an anisotropic Gaussian on the image centre.
- :class:`ReadoutNet`: the frozen VGG-16 encoder's conv4_3 and conv5_3 features and a two-layer 1×1-conv head.
  Its training and the centre bias's files: :mod:`salnet.recipes.baselines`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.models.salgan import SaliencyOutput
from salnet.models.vgg import BLOCKS, VGG16Features

CENTER_SIGMA = 0.25  # σ as a fraction of each side; a blob that covers the usual central fixation spread


def center_bias(size: tuple[int, int], sigma: float = CENTER_SIGMA) -> np.ndarray:
    """An anisotropic Gaussian centred on the image, σ = ``sigma`` × (H, W), peak 1.

    Takes ``size`` = (H, W); returns float64 (H, W) in (0, 1]. Used as the default IG baseline and as the
    prediction of the demo's baseline model.
    """
    H, W = int(size[0]), int(size[1])
    if H < 1 or W < 1 or not sigma > 0:
        raise ValueError(f"center_bias needs a positive size and sigma, got size={size}, sigma={sigma}")
    y = (np.arange(H) + 0.5 - H / 2) / (sigma * H)
    x = (np.arange(W) + 0.5 - W / 2) / (sigma * W)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


class CenterBiasModel:
    """The centre bias as a saliency "network" (same call convention as the models: ``model(image)`` with
    image (B,3,H,W) → an object with ``logits`` and ``prob`` (B,1,H,W)), to validate it like a model."""

    training = False

    def __call__(self, image):
        p = torch.from_numpy(center_bias(tuple(image.shape[-2:]))).to(image.device, torch.float32)
        p = p.expand(image.shape[0], 1, *p.shape)
        return SaliencyOutput(torch.logit(p.clamp(1e-6, 1 - 1e-6)), p)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


READOUT_TAPS = ("conv4_3", "conv5_3")  # 512 channels each, at 1/8 and 1/16 of the input
READOUT_HIDDEN = 32


class ReadoutNet(nn.Module):
    """The readout baseline: frozen VGG-16 conv4_3 and conv5_3 (after ReLU; conv5_3 upsampled ×2, bilinear),
    concatenated (1024 channels at 1/8 of the input) → 1×1 conv to ``hidden`` + ReLU → 1×1 conv to one map →
    bilinear upsampling to the input size.

    ``forward(image)`` (B,3,H,W) RGB in [0,1], H and W multiples of 16 → ``SaliencyOutput`` (logits at the input
    size); ``features(image)`` → the (B,1024,H/8,W/8) encoder features; ``head(features)`` → logits at H/8.
    """

    def __init__(self, weights=None, hidden: int = READOUT_HIDDEN, input_convention: str = "torchvision",
                 width: float = 1.0) -> None:
        super().__init__()
        self.encoder = VGG16Features(width=width, weights=weights, freeze=BLOCKS, last="conv5_3",
                                     input_convention=input_convention).eval()
        channels = 2 * self.encoder.out_channels
        self.head = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def train(self, mode: bool = True) -> ReadoutNet:
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def features(self, image: Tensor) -> Tensor:
        taps = self.encoder.taps(image, READOUT_TAPS)
        fine = taps["conv4_3"]
        coarse = F.interpolate(taps["conv5_3"], size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def forward(self, image: Tensor):
        if image.shape[-2] % 16 or image.shape[-1] % 16:
            raise ValueError(f"ReadoutNet input {tuple(image.shape[-2:])} (H, W) must be multiples of 16")
        small = self.head(self.features(image))
        logits = F.interpolate(small, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return SaliencyOutput(logits, torch.sigmoid(logits))
