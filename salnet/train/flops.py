"""The FLOPs of a training step of a config, by stage, counted from layer shapes (:mod:`salnet.models.flops`): the
launcher's GPU-hour estimate (:mod:`salnet.run.plan`)."""

from __future__ import annotations

import dataclasses
from typing import cast

import torch

from salnet.models.aspp import TAPS
from salnet.models.flops import LayerFlops
from salnet.models.vgg import VGG16Features
from salnet.train.build import build_discriminator, build_generator


def training_flops(cfg, cached: bool = False) -> dict[str, float]:
    """FLOPs per image of a training step of ``cfg`` (a :class:`salnet.config.Config`) by stage, counted on
    shape-only (meta) tensors: ``{"bootstrap"|"content": G forward + backward, "adversarial": the mean of a D step
    (G forward, D forward + backward on the real and the generated map) and a G step (G and D forward + backward),
    "validate": G forward}``. The perceptual losses' VGG (DF, GM) is not counted. ``cached``: the loss-study
    network reads its encoder's taps from a feature cache (:mod:`salnet.data.features`): its head alone."""
    bare = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights="random"),
                               train=dataclasses.replace(cfg.train, init_from=None))
    with torch.device("meta"):
        G = build_generator(bare)
        D = build_discriminator(bare) if cfg.train.procedure == "salgan" else None
        image = torch.zeros(1, 3, *cfg.data.input_size)
        # the loss-study network's taps, computed outside the count (the cache holds them)
        x = cast(VGG16Features, G.get_submodule("encoder")).taps(image, TAPS) if cached else image

    def count(fn) -> int:
        with LayerFlops(*[m for m in (G, D) if m is not None]) as fl:
            fn()
        return fl.total

    def g_forward(grad: bool):
        with torch.set_grad_enabled(grad):
            return G(x).prob

    out = {"validate": float(count(lambda: g_forward(False)))}
    g_step = float(count(lambda: g_forward(True)))
    if D is None:
        out["content"] = g_step
        return out
    out["bootstrap"] = g_step

    def d_step():
        fake = g_forward(False)
        D(torch.cat([fake, fake]), torch.cat([image, image]))

    def g_step_adv():
        D(g_forward(True), image)

    out["adversarial"] = (count(d_step) + count(g_step_adv)) / 2
    return out
