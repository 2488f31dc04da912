"""Saliency-inspired losses (Bruckert et al. §3.2.3): CC and NSS, as similarities.

Both return the metric itself (higher = better), batch-averaged; a combination minimises them with a
negative coefficient (LC1 = 10·KLD - 2·CC - 1·NSS). An eps in the denominators keeps a constant
prediction (std 0) finite (value 0) instead of NaN; for any other map it changes nothing measurable.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from salnet.losses.base import EPS, Term, fixation_mean, register


def _centre(x: Tensor) -> Tensor:
    flat = x.flatten(1)
    return (flat - flat.mean(1, keepdim=True)).view_as(x)


@register
class CC(Term):
    name = "cc"
    family = "saliency"
    description = "Pearson correlation of S and Ŝ per image (a similarity: use a negative weight)"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        s, p = _centre(target["map"]).flatten(1), _centre(pred).flatten(1)
        cov = (s * p).sum(1)
        return (cov / (torch.sqrt((s * s).sum(1) * (p * p).sum(1)) + EPS)).mean()


@register
class NSS(Term):
    name = "nss"
    family = "saliency"
    needs = ("fixations",)
    description = "mean of Ŝ standardised (std with N-1, MIT) at fixations (a similarity: negative weight)"

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        flat = pred.flatten(1)
        z = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, correction=1, keepdim=True) + EPS)
        return fixation_mean(z.view_as(pred), target["fixations"], self.name)
