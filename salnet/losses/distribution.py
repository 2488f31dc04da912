"""Distribution-based losses (Bruckert et al. §3.2.2) and SalGAN's pooled BCE.

The BCE family works on logits: log Ŝ = logsigmoid(x) and log(1 - Ŝ) = logsigmoid(-x) are exact and
never produce log 0. KLD and Bhattacharyya take Ŝ = sigmoid(x) and normalise both maps to sum 1 per
image (MIT benchmark form); NLL treats the prediction as a probability distribution over the pixels.
Each returns the batch mean of a per-image value (0-dim tensor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from salnet.losses.base import (
    EPS,
    Param,
    Term,
    fixation_mean,
    in_unit_interval,
    mean_per_image,
    non_negative,
    per_image,
    register,
)


def _sum_normalise(x: Tensor) -> Tensor:
    # clamp only guards an all-zero map; for any other map this is exactly x / sum(x) as in the MIT code.
    return x / per_image(x).clamp_min(EPS).view(-1, 1, 1, 1)


@register
class BCE(Term):
    name = "bce"
    family = "distribution"
    takes = "logits"
    description = "binary cross-entropy -mean(S log Ŝ + (1 - S) log(1 - Ŝ)), from logits"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(pred, target["map"], reduction="none")
        return mean_per_image(bce).mean()


def _log_avg_pool_exp(log_x: Tensor, k: int) -> Tensor:
    """log(avg_pool_k(exp(log_x))) over non-overlapping k×k windows, computed stably (logsumexp)."""
    b, c, h, w = log_x.shape
    h, w = h // k * k, w // k * k  # drop the remainder rows/columns, as avg_pool2d does
    win = log_x[..., :h, :w].reshape(b, c, h // k, k, w // k, k)
    return torch.logsumexp(win, dim=(3, 5)) - math.log(k * k)


class _PooledBCE(Term):
    """BCE between prediction and ground truth both average-pooled k×k (SalGAN's content loss, k=4).

    The pooled prediction mean(Ŝ) and 1 - mean(Ŝ) = mean(sigmoid(-x)) are taken in log space from the
    logits, so the loss is exact and finite for any logits. Maps smaller than k×k are an error.
    """

    family = "distribution"
    takes = "logits"
    pool: int = 1

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        k = self.pool
        if min(pred.shape[-2:]) < k:
            raise ValueError(f"loss {self.name!r} pools {k}×{k}; maps {tuple(pred.shape[-2:])} are too small")
        s = F.avg_pool2d(target["map"], k)
        log_p = _log_avg_pool_exp(F.logsigmoid(pred), k)
        log_q = _log_avg_pool_exp(F.logsigmoid(-pred), k)
        return -mean_per_image(s * log_p + (1 - s) * log_q).mean()


for _k in (2, 4, 8):
    register(
        type(
            f"BCEPool{_k}",
            (_PooledBCE,),
            {"name": f"bce_pool{_k}", "pool": _k, "description": f"BCE on maps average-pooled {_k}×{_k}"},
        )
    )


@register
class WeightedBCE(Term):
    name = "wbce"
    family = "distribution"
    takes = "logits"
    description = "weighted BCE -mean(w S log Ŝ + (1 - w)(1 - S) log(1 - Ŝ))"
    params = {"w": Param(0.5, in_unit_interval, "in [0, 1]")}

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, w = target["map"], self.values["w"]
        ll = w * s * F.logsigmoid(pred) + (1 - w) * (1 - s) * F.logsigmoid(-pred)
        return -mean_per_image(ll).mean()


@register
class Focal(Term):
    name = "focal"
    family = "distribution"
    takes = "logits"
    description = "focal loss -mean((1 - Ŝ)^γ S log Ŝ + Ŝ^γ (1 - S) log(1 - Ŝ)) (Lin et al.)"
    params = {"gamma": Param(2.0, non_negative, ">= 0")}

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, g = target["map"], self.values["gamma"]
        p, q = torch.sigmoid(pred), torch.sigmoid(-pred)  # q = 1 - p without cancellation
        ll = q**g * s * F.logsigmoid(pred) + p**g * (1 - s) * F.logsigmoid(-pred)
        return -mean_per_image(ll).mean()


@register
class KLD(Term):
    name = "kld"
    family = "distribution"
    takes = "prob"
    description = "KL(S‖Ŝ) = Σ S log(eps + S / (Ŝ + eps)) on sum-normalised maps (MIT form)"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, p = _sum_normalise(target["map"]), _sum_normalise(pred)
        return per_image(s * torch.log(EPS + s / (p + EPS))).mean()


@register
class Bhattacharyya(Term):
    name = "bhat"
    family = "distribution"
    takes = "prob"
    description = "Bhattacharyya distance -log Σ sqrt(S Ŝ) on sum-normalised maps"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, p = _sum_normalise(target["map"]), _sum_normalise(pred)
        # + eps² keeps the gradient of sqrt finite where S Ŝ = 0 (changes the value by < N·eps).
        return -torch.log(per_image(torch.sqrt(s * p + EPS**2))).mean()


@register
class NLL(Term):
    """-mean over fixations of log P, P = Ŝ / Σ Ŝ the prediction as a distribution over pixels.

    log P = logsigmoid(x) - logsumexp(logsigmoid(x)) is computed from the logits, exactly.
    """

    name = "nll"
    family = "distribution"
    needs = ("fixations",)
    takes = "logits"
    description = "negative log-likelihood of the fixations under Ŝ / ΣŜ"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        log_s = F.logsigmoid(pred)
        log_p = log_s - torch.logsumexp(log_s.flatten(1), dim=1).view(-1, 1, 1, 1)
        return -fixation_mean(log_p, target["fixations"], self.name)
