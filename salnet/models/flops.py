"""FLOP counting from layer shapes: the benchmarks' achieved TFLOP/s, the dry run's GPU-hours (a training
step's count by stage: :func:`salnet.train.flops.training_flops`).

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
