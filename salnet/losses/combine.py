"""Weighted linear combinations of loss terms (``build``), the centre-bias map, SalGAN's adversarial terms.

A spec maps loss names (``LOSSES``) to a coefficient or to ``{"weight": w, <parameters>}``, e.g.
``{"kld": 10, "cc": -2, "nss": -1, "sig_mse": {"weight": 1, "lambda": 0.55}, "center_bias": 0.1}``
(LC2 + R of Bruckert et al. adds "df": 1, "gm": 1). Terms with coefficient 0 are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.imresize import imresize
from salnet.losses.base import LOSSES, Term
from salnet.losses.perceptual import VGGPools
from salnet.models.vgg import WeightsSpec

LossSpec = Mapping[str, float | Mapping[str, Any]] | str

# The loss study's combinations (docs/design.md, "The loss study"); "+ R" adds {"center_bias": 0.1}.
LC1 = {"kld": 10.0, "cc": -2.0, "nss": -1.0}
LC2 = {**LC1, "df": 1.0, "gm": 1.0, "sig_mse": {"weight": 1.0, "lambda": 0.55}}


class Loss(nn.Module):
    """A weighted sum of terms. ``loss(logits, target, output=None)`` → (total 0-dim tensor, {name: raw value}).

    ``logits``: (B,1,H,W) network output (any float dtype; half precision is computed in float32).
    ``output``: the network's output map as the non-distribution terms see it (``takes = "output"``): None for a
    network ending in a sigmoid (then it is sigmoid(logits)), the raw map for a linear one (equal to ``logits``).
    ``target``: dict with the keys the terms need — "map" (B,1,H,W) in [0,1], "fixations" (B,1,H,W)
    in {0,1}, "image" (B,3,H,W) in [0,1] — at the size of the logits: resizing targets to the output
    resolution is the caller's job (the pooled BCE variants pool both sides themselves).
    The total is Σ weight·term; the returned terms are the unweighted values, detached, for logging.
    """

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)
        self.needs = sorted({k for t in terms.values() for k in t.needs})

    def named_terms(self) -> dict[str, Term]:
        """The terms by name (``self.terms`` holds them as a ModuleDict, which moves them with the loss)."""
        return {n: t for n, t in self.terms.items() if isinstance(t, Term)}

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}·{n}" for n, w in self.weights.items())

    def _check(self, logits: Tensor, target: Mapping[str, Tensor]) -> None:
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"loss expects logits (B,1,H,W), got shape {tuple(logits.shape)}")
        for key in self.needs:
            if key not in target:
                users = [n for n, t in self.named_terms().items() if key in t.needs]
                raise ValueError(f"loss term(s) {users} need target[{key!r}]; got keys {sorted(target)}")
            want = (logits.shape[0], 3 if key == "image" else 1, *logits.shape[-2:])
            if tuple(target[key].shape) != want:
                raise ValueError(
                    f"target[{key!r}] has shape {tuple(target[key].shape)}, expected {want} (the logits' "
                    "size): resize targets to the output resolution (salnet.imresize) before the loss"
                )

    def forward(self, logits: Tensor, target: Mapping[str, Tensor],
                output: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        self._check(logits, target)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if output is not None and output.shape != logits.shape:
            raise ValueError(f"loss: output {tuple(output.shape)} and logits {tuple(logits.shape)} differ in shape")
        tgt = {k: target[k].to(logits.dtype) for k in self.needs}
        terms = self.named_terms()
        takes = {t.takes for t in terms.values()}
        prob = torch.sigmoid(logits) if "prob" in takes or ("output" in takes and output is None) else None
        seen = {"logits": logits, "prob": prob, "output": prob if output is None else output.to(logits.dtype)}
        total = logits.new_zeros(())
        values: dict[str, Tensor] = {}
        try:
            for name, term in terms.items():
                v = term(seen[term.takes], tgt)
                total = total + self.weights[name] * v
                values[name] = v.detach()
        finally:
            for m in self.modules():
                if isinstance(m, VGGPools):
                    m.clear()
        return total, values


def _parse(name: str, entry: Any) -> tuple[float, dict[str, Any]]:
    if isinstance(entry, Mapping):
        params = dict(entry)
        weight = params.pop("weight", 1.0)
    else:
        weight, params = entry, {}
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise ValueError(f"loss {name!r}: weight must be a finite number, got {weight!r}")
    return float(weight), params


def build(spec: LossSpec, *, center_bias: Tensor | None = None, vgg_weights: WeightsSpec = None) -> Loss:
    """Turn a spec (see module docstring; a bare name means weight 1) into a ``Loss``.

    ``center_bias``: (1,H,W) map B for the "center_bias" term (``center_bias_map``), at output size.
    ``vgg_weights``: weights of the frozen VGG-16 of "df"/"gm": "imagenet", a file or "random" (None is refused
    when the spec has either: a random VGG makes both meaningless unless asked for).
    Unknown names, bad parameters and non-numeric weights raise ValueError listing the valid choices.
    """
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"loss spec must be a non-empty mapping name → weight, got {spec!r}")
    unknown = sorted(set(spec) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}; valid: {', '.join(sorted(LOSSES))}")
    parsed = {name: _parse(name, entry) for name, entry in spec.items()}
    parsed = {n: wp for n, wp in parsed.items() if wp[0] != 0.0}
    if not parsed:
        raise ValueError(f"loss spec {dict(spec)} has only zero weights")
    vgg = VGGPools(vgg_weights) if any("vgg" in LOSSES[n].context for n in parsed) else None
    context = {"center_bias": center_bias, "vgg": vgg}
    terms = {}
    for name, (_, params) in parsed.items():
        cls = LOSSES[name]
        terms[name] = cls(**params, **{k: context[k] for k in cls.context})
    return Loss(terms, {n: w for n, (w, _) in parsed.items()})


def center_bias_map(maps: Iterable[Tensor], size: tuple[int, int]) -> Tensor:
    """Mean of ground-truth maps, each (1,H_i,W_i) in [0,1], resized to ``size`` (h, w) → (1,h,w) float32.

    Each map is resized on its own (sizes may differ) with MATLAB-imresize bicubic (antialiased when
    shrinking), clipped to [0,1] (bicubic overshoot), then averaged.
    """
    total, n = None, 0
    for m in maps:
        m = torch.as_tensor(m, dtype=torch.float32)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3 or m.shape[0] != 1:
            raise ValueError(f"center_bias_map takes maps (1,H,W), got shape {tuple(m.shape)}")
        r = imresize(m, (int(size[0]), int(size[1])), method="bicubic", antialias=True).clamp(0.0, 1.0)
        total = r if total is None else total + r
        n += 1
    if total is None:
        raise ValueError("center_bias_map got no maps: pass the training split's ground-truth maps")
    return total / n


def generator_adversarial_loss(d_fake_logits: Tensor) -> Tensor:
    """SalGAN's adversarial term for G: BCE(D(I, Ŝ), 1) = -mean log D, from D's logits (B,) → 0-dim.

    SalGAN's full generator loss is ``alpha * build("bce_pool4")(logits, target)[0] + this`` with
    alpha = 0.05 (docs/design.md, "SalGAN"); the training loop composes them.
    """
    return F.binary_cross_entropy_with_logits(d_fake_logits, torch.ones_like(d_fake_logits))


def discriminator_loss(d_real_logits: Tensor, d_fake_logits: Tensor) -> Tensor:
    """SalGAN's D loss as released: the mean BCE over the concatenated batch [D(I, S) → 1; D(I, Ŝ) → 0], from D's
    logits (B_real,) and (B_fake,) → 0-dim tensor (half the sum of the two BCEs when the batches are equal)."""
    logits = torch.cat([d_real_logits, d_fake_logits])
    labels = torch.cat([torch.ones_like(d_real_logits), torch.zeros_like(d_fake_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)
