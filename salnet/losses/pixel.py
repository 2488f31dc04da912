"""Pixel-based losses (Bruckert et al. §3.2.1) and the centre-bias regulariser (§3.2.5).

All take ``pred`` = the network's output (``takes = "output"``: sigmoid(logits) in [0,1] for SalGAN, the raw
map for the loss-study network, §3.2.2) and the ground-truth map S (B,1,H,W) in [0,1]; each returns the batch
mean of the per-image mean over pixels (0-dim tensor).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from salnet.losses.base import EPS, Param, Term, in_unit_interval, mean_per_image, positive, register


@register
class MSE(Term):
    name = "mse"
    family = "pixel"
    description = "mean (S - Ŝ)²"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        return mean_per_image((target["map"] - pred) ** 2).mean()


@register
class EAD(Term):
    name = "ead"
    family = "pixel"
    description = "exponential absolute difference: mean exp|S - Ŝ| - 1"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        return mean_per_image(torch.expm1((target["map"] - pred).abs())).mean()


@register
class AE(Term):
    name = "ae"
    family = "pixel"
    description = "absolute error: mean |S - Ŝ|"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        return mean_per_image((target["map"] - pred).abs()).mean()


@register
class MLNetMSE(Term):
    name = "mlnet_mse"
    family = "pixel"
    description = "ML-Net weighted MSE: mean (Ŝ/max|Ŝ| - S)² / (alpha - S), max per image"
    params = {"alpha": Param(1.1, lambda v: v > 1.0, "> 1 (S reaches 1)")}

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s = target["map"]
        # ML-Net's maps are non-negative (max|Ŝ| = max Ŝ); a linear output may be negative everywhere, where
        # dividing by max Ŝ would flip or blow up the map
        peak = pred.abs().flatten(1).amax(1).clamp_min(EPS).view(-1, 1, 1, 1)
        return mean_per_image((pred / peak - s) ** 2 / (self.values["alpha"] - s)).mean()


@register
class SigMSE(Term):
    name = "sig_mse"
    family = "pixel"
    description = "sigmoid-weighted MSE: mean w (S - Ŝ)², w = k / (1 + exp(-k (S - lambda)))"
    params = {
        "lambda": Param(0.55, in_unit_interval, "in [0, 1]"),
        "k": Param(10.0, positive, "> 0"),
    }

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, k = target["map"], self.values["k"]
        w = k * torch.sigmoid(k * (s - self.values["lambda"]))
        return mean_per_image(w * (s - pred) ** 2).mean()


@register
class CenterBias(Term):
    """R = mean (Ŝ - B)²; its coefficient is the paper's α (0.1). B comes from ``build(center_bias=…)``."""

    name = "center_bias"
    family = "regulariser"
    description = "centre-bias regulariser: mean (Ŝ - B)², B = mean training map"
    needs = ()
    context = ("center_bias",)
    bias_map: Tensor  # buffer (1,1,H,W): B

    def __init__(self, *, center_bias: Tensor | None = None, **values: float) -> None:
        super().__init__(**values)
        if center_bias is None:
            raise ValueError(
                "loss 'center_bias' needs the centre-bias map: build(spec, center_bias=center_bias_map(...))"
            )
        b = torch.as_tensor(center_bias)
        b = b if b.is_floating_point() else b.float()
        if b.ndim == 2:
            b = b[None]
        if b.ndim != 3 or b.shape[0] != 1:
            raise ValueError(f"center_bias map must be (1,H,W) or (H,W), got shape {tuple(b.shape)}")
        self.register_buffer("bias_map", b[None])  # (1,1,H,W)

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        if pred.shape[-2:] != self.bias_map.shape[-2:]:
            raise ValueError(
                f"center_bias map is {tuple(self.bias_map.shape[-2:])} but predictions are "
                f"{tuple(pred.shape[-2:])}: compute it with center_bias_map(maps, size=<output size>)"
            )
        return mean_per_image((pred - self.bias_map.to(pred.dtype)) ** 2).mean()
