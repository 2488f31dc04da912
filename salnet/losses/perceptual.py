"""Perceptual losses (Bruckert et al. §3.2.4): Deep Features (DF) and Gram matrices (GM).

A frozen VGG-16 reads the maps S and Ŝ (B,1,H,W) in [0,1] repeated to 3 channels (through the
encoder's own ImageNet normalisation) and both losses compare its five pool outputs φ_j (C_j,H_j,W_j):
DF = Σ_j ‖φ_j(S) - φ_j(Ŝ)‖² / (C_j H_j W_j),  GM = Σ_j ‖G_j(S) - G_j(Ŝ)‖²_F with G = ψψᵀ / (C_j H_j W_j),
ψ the (C_j, H_j W_j) reshape of φ_j; per image, then averaged over the batch. Maps smaller than 32 px on a side
(the paper's are 37×50) are stretched bilinearly to 32 first, so that the fifth pool has an output.

Both run in float32 even inside a bf16 autocast region: the Gram products square the features, and in bf16 a
1 % change of the features moved GM by more than 50 %.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.losses.base import Term, register
from salnet.models.vgg import BLOCKS, VGG16Features, WeightsSpec

POOLS = ("pool1", "pool2", "pool3", "pool4", "pool5")
MIN_SIDE = 32  # 2^5: the fifth pool's output is at least 1×1


def float32(x: Tensor):
    """A region where autocast is off on ``x``'s device (operations run in the dtype of their inputs)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class VGGPools(nn.Module):
    """Frozen VGG-16 giving the five pool outputs of a map; shared by DF and GM within one ``build``.

    ``pair(pred, target)`` returns (features of pred, features of target), each a list of 5 tensors
    (B,C_j,H_j,W_j); the last pair is memoised by tensor identity so DF and GM run VGG once per step
    (``clear()`` drops it; the combined loss calls it after every evaluation).
    """

    def __init__(self, weights: WeightsSpec = None, width: float = 1.0) -> None:
        super().__init__()
        if weights is None:  # a random VGG makes DF and GM meaningless: only an explicit "random" gets one
            raise ValueError("the DF and GM losses need VGG-16 weights: pass 'imagenet' (model.weights=imagenet), a "
                             "torchvision-format file, or 'random' to compare maps through a random VGG (tests only)")
        self.vgg = VGG16Features(width=width, weights=weights, freeze=BLOCKS, last="pool5").eval()
        self._memo: tuple[Tensor, Tensor, tuple[list[Tensor], list[Tensor]]] | None = None

    def train(self, mode: bool = True) -> VGGPools:
        return super().train(False)  # frozen feature extractor: always eval

    def features(self, maps: Tensor) -> list[Tensor]:
        if maps.ndim != 4 or maps.shape[1] != 1:
            raise ValueError(f"perceptual losses take maps (B,1,H,W), got {tuple(maps.shape)}")
        with float32(maps):
            if min(maps.shape[-2:]) < MIN_SIDE:  # VGG's five pools need 32 px: smaller maps are stretched to 32
                scale = MIN_SIDE / min(maps.shape[-2:])
                size = (max(MIN_SIDE, round(maps.shape[-2] * scale)), max(MIN_SIDE, round(maps.shape[-1] * scale)))
                maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
            # the VGG's own dtype (float32), whatever autocast would pick
            taps = self.vgg.taps(maps.to(next(self.vgg.parameters()).dtype).expand(-1, 3, -1, -1), POOLS)
        return [taps[n] for n in POOLS]

    def pair(self, pred: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        memo = self._memo
        if memo is not None and memo[0] is pred and memo[1] is target:
            return memo[2]
        with torch.no_grad():
            ft = self.features(target)
        fp = self.features(pred)
        self._memo = (pred, target, (fp, ft))
        return fp, ft

    def clear(self) -> None:
        self._memo = None


class _Perceptual(Term):
    context = ("vgg",)
    family = "perceptual"

    def __init__(self, *, vgg: VGGPools | None = None, **values: float) -> None:
        super().__init__(**values)
        self.pools = vgg if vgg is not None else VGGPools("imagenet")


@register
class DeepFeatures(_Perceptual):
    name = "df"
    description = "Deep-Features loss over the 5 VGG-16 pool outputs"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        fp, ft = self.pools.pair(pred, target["map"])
        with float32(pred):
            total = sum((((a - b) ** 2).flatten(1).mean(1) for a, b in zip(fp, ft)), torch.zeros(()))
        return total.mean()


def gram(f: Tensor) -> Tensor:
    """(B,C,H,W) → (B,C,C) Gram matrix ψψᵀ / (C H W)."""
    b, c, h, w = f.shape
    psi = f.reshape(b, c, h * w)
    return psi @ psi.transpose(1, 2) / (c * h * w)


@register
class GramMatrices(_Perceptual):
    name = "gm"
    description = "Gram-matrix loss over the 5 VGG-16 pool outputs"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        fp, ft = self.pools.pair(pred, target["map"])
        with float32(pred):
            total = sum((((gram(a) - gram(b)) ** 2).flatten(1).sum(1) for a, b in zip(fp, ft)), torch.zeros(()))
        return total.mean()
