"""The loss-study network of Bruckert et al. 2019 (docs/design.md, "The loss study").

Frozen VGG-16 features pool3 (256 ch, 1/8), pool4 (512 ch, 1/16) and conv5_3 (512 ch, 1/16, after
ReLU) are brought to the pool3 resolution (bilinear upsampling of the two 1/16 maps) and concatenated
(1280 ch) → dropout 0.25 → 3×3 conv 1280→128 + ReLU → ASPP: four 3×3 convs, 32 ch, dilation 1/3/6/12,
+ ReLU, concatenated (128 ch) → 1×1 conv → 1 map → fixed 5×5 Gaussian (σ = 1) → logits.

Choices the paper leaves open, made here and documented:
- The channel-reduction conv is 3×3: this is what gives the paper's "≈1.62 M trainable parameters"
  (1,474,688 + ASPP 147,584 + 129 = 1,622,401; a 1×1 reduction would give 311,681).
- The dropout "on top" sits on the concatenated encoder features, the input of the trained head.
- The final 1×1 conv has no ReLU; the Gaussian smooths its output, with replicated borders. That map is the
  network's output (``output="linear"``), or the logits of a final sigmoid (``output="sigmoid"``), the layer
  §3.2.2 adds for the distribution-based losses.

Output size for input (H, W): (⌊H/8⌋, ⌊W/8⌋), i.e. 37×50 at the paper's 300×400 (H×W) input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.models.salgan import SaliencyOutput
from salnet.models.vgg import VGG16Features, WeightsSpec, scaled

ASPP_INPUT_SIZE = (300, 400)  # (H, W)
ASPP_DILATIONS = (1, 3, 6, 12)
TAPS = ("pool3", "pool4", "conv5_3")


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> Tensor:
    """Normalised 2-D Gaussian, float32 (1,1,size,size), sum 1 (MATLAB fspecial('gaussian'))."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float().view(1, 1, size, size)


def output_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Logit map size (h, w) of ``ASPPNet`` for an input of size (H, W)."""
    return input_size[0] // 8, input_size[1] // 8


class ASPPNet(nn.Module):
    """Loss-study saliency network.

    Args:
        width: channel multiplier of encoder and head (1.0 = the paper's network).
        weights: VGG-16 weights: None (random, warns), a torchvision-format file, or "torchvision".
        dropout: dropout rate on the encoder features (paper: 0.25).
        output: "sigmoid" (a final sigmoid: the distribution-based losses) or "linear" (the raw map).

    ``forward(image)``: image float (B,3,H,W) RGB in [0,1], H, W ≥ 32 (paper 300×400) →
    ``SaliencyOutput`` with logits (B,1,⌊H/8⌋,⌊W/8⌋) (and ``output`` = the same map when linear). The VGG
    encoder is frozen and kept in eval mode.
    """

    gaussian: Tensor  # buffer (1,1,5,5): the fixed smoothing of the output

    def __init__(self, width: float = 1.0, weights: WeightsSpec = None, dropout: float = 0.25,
                 output: str = "sigmoid") -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPPNet dropout must be in [0, 1), got {dropout}")
        if output not in ("sigmoid", "linear"):
            raise ValueError(f"ASPPNet output must be 'sigmoid' or 'linear', got {output!r}")
        self.linear = output == "linear"
        self.encoder = VGG16Features(
            width=width, weights=weights, freeze=("conv1", "conv2", "conv3", "conv4", "conv5"), last="conv5_3"
        )
        feat = scaled(256, width) + 2 * scaled(512, width)  # 1280 at width 1
        red, branch = scaled(128, width), scaled(32, width)
        self.dropout = nn.Dropout(dropout)
        self.reduce = nn.Conv2d(feat, red, kernel_size=3, padding=1)
        self.aspp = nn.ModuleList(
            nn.Conv2d(red, branch, kernel_size=3, padding=d, dilation=d) for d in ASPP_DILATIONS
        )
        self.output = nn.Conv2d(branch * len(ASPP_DILATIONS), 1, kernel_size=1)
        self.register_buffer("gaussian", gaussian_kernel(5, 1.0), persistent=False)
        for m in [self.reduce, *self.aspp, self.output]:
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))  # PyTorch's default, explicit
            nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> ASPPNet:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout/BN inside, but keep it explicit for future encoders
        return self

    def forward(self, x: Tensor | dict[str, Tensor]) -> SaliencyOutput:
        """``x``: images (B,3,H,W) in [0,1], or the encoder's taps {layer: (B,C,h,w)} of :data:`TAPS` as
        :meth:`VGG16Features.taps` gives them (a feature cache, :mod:`salnet.data.features`): the head alone."""
        if isinstance(x, dict):
            missing = [n for n in TAPS if n not in x]
            if missing:
                raise ValueError(f"ASPPNet's head needs the taps {', '.join(TAPS)}; missing {', '.join(missing)}")
            return self.head(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ASPPNet expects images (B,3,H,W) in [0,1], got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"ASPPNet input {tuple(x.shape[-2:])} (H, W) must be at least 32×32")
        return self.head(self.encoder.taps(x, TAPS))

    def head(self, taps: dict[str, Tensor]) -> SaliencyOutput:
        """The trained part from the encoder's taps {layer: (B,C,h,w)}: the deep taps resized to pool3's size,
        concatenated, dropout, the ASPP head and the fixed blur → ``SaliencyOutput``."""
        size = taps["pool3"].shape[-2:]
        deep = [F.interpolate(taps[n], size=size, mode="bilinear", align_corners=False) for n in TAPS[1:]]
        x = self.dropout(torch.cat([taps["pool3"], *deep], dim=1))
        x = F.relu(self.reduce(x))
        x = torch.cat([F.relu(conv(x)) for conv in self.aspp], dim=1)
        x = self.output(x)
        # Replicate padding: zero padding would pull the border logits towards 0 (probability 0.5).
        logits = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.gaussian.to(x.dtype))
        return SaliencyOutput(logits, torch.sigmoid(logits), logits if self.linear else None)
