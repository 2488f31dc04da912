"""FLOP counting from layer shapes: the benchmarks' achieved TFLOP/s, the dry run's GPU-hours.

``LayerFlops`` hooks every Conv2d and Linear of the given modules and, for each forward call, counts
2·MACs from the layer's shapes: conv 2·B·C_out·H_out·W_out·(C_in/groups)·k_h·k_w, linear 2·rows·in·out.
The backward of that call costs the same once for the input gradient (if the input requires grad) and
once for the weight gradient (if the weight requires grad); calls made with grad disabled have none.
Element-wise layers (ReLU, pooling, upsampling, biases) are ignored: they are < 1 % of the work here
and their cost is memory traffic, not FLOPs. This matches torch.utils.flop_counter (tests check it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn


@dataclass
class LayerCall:
    layer: str
    forward: int
    backward: int


class LayerFlops:
    """Context manager recording the FLOPs of the Conv2d/Linear calls of ``modules`` (``calls``)."""

    def __init__(self, *modules: nn.Module) -> None:
        self.modules = modules
        self.calls: list[LayerCall] = []
        self._handles: list = []

    def __enter__(self) -> LayerFlops:
        for root in self.modules:
            for name, m in root.named_modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    self._handles.append(m.register_forward_hook(self._hook(f"{type(root).__name__}.{name}")))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(m: nn.Conv2d | nn.Linear, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            x = inputs[0]
            if isinstance(m, nn.Conv2d):
                k = (m.in_channels // m.groups) * math.prod(m.kernel_size)
                fwd = 2 * out.numel() * k
            else:
                fwd = 2 * out.numel() * m.in_features
            bwd = 0
            if torch.is_grad_enabled():
                bwd = fwd * (int(x.requires_grad) + int(m.weight.requires_grad))
            self.calls.append(LayerCall(name, fwd, bwd))

        return hook

    @property
    def forward_flops(self) -> int:
        return sum(c.forward for c in self.calls)

    @property
    def backward_flops(self) -> int:
        return sum(c.backward for c in self.calls)

    @property
    def total(self) -> int:
        """Forward + backward FLOPs, assuming every grad-enabled call is back-propagated."""
        return self.forward_flops + self.backward_flops


def training_flops(cfg, cached: bool = False) -> dict[str, float]:
    """FLOPs per image of a training step of ``cfg`` (a :class:`salnet.config.Config`) by stage, counted on
    shape-only (meta) tensors: ``{"bootstrap"|"content": G forward + backward, "adversarial": the mean of a D step
    (G forward, D forward + backward on the real and the generated map) and a G step (G and D forward + backward),
    "validate": G forward}``. The perceptual losses' VGG (DF, GM) is not counted. ``cached``: the loss-study
    network reads its encoder's taps from a feature cache (:mod:`salnet.data.features`): its head alone."""
    import dataclasses

    from salnet.models.aspp import TAPS
    from salnet.models.vgg import VGG16Features
    from salnet.train.build import build_discriminator, build_generator

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
