"""The optimisers of both papers, built by name, with weight decay on weights only.

- ``lasagne_adagrad``: :class:`LasagneAdagrad`, the released SalGAN code's ``lasagne.updates.adagrad``
  (step = lr·g/√(Σg² + ε), ε = 1e-6 **inside** the root). torch's Adagrad adds its ε (1e-10) after the root;
  with SalGAN's gradients (~1e-6–1e-5) the two steps differ by orders of magnitude for thousands of steps.
- ``nesterov``: torch's SGD with ``nesterov=True``, which equals ``lasagne.updates.nesterov_momentum`` at a
  constant learning rate (v ← μv − lr·g; p ← p + μv − lr·g, with torch's buffer b = −v/lr).
- ``sgd``, ``adam``, ``adagrad``: torch's.

Weight decay is the gradient of an L2 penalty on the weights (tensors of 2 or more dimensions), never on biases:
the paper's λ·Σw² (Lasagne's ``regularize_network_params(…, l2)``) is torch's ``weight_decay`` = 2λ.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from salnet.config import OPTIMIZERS


class LasagneAdagrad(torch.optim.Optimizer):
    """``lasagne.updates.adagrad``: accu ← accu + g²; p ← p − lr·g / √(accu + ε).

    Args: params (tensors or param groups), lr, eps (1e-6 as Lasagne), weight_decay (added to the gradient as
    the gradient of an L2 penalty, before it is accumulated — as a penalty term in the loss would be).
    The state per parameter is ``sum`` (the accumulated squared gradients), as torch's Adagrad names it.
    """

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        if not lr > 0 or not eps > 0 or weight_decay < 0:
            raise ValueError(f"LasagneAdagrad: lr and eps must be > 0 and weight_decay ≥ 0, got {lr}, {eps}, "
                             f"{weight_decay}")
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params if p.grad is not None]
            if group["weight_decay"]:
                grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            sums = []
            for p in params:
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                sums.append(state["sum"])
            torch._foreach_addcmul_(sums, grads, grads)
            denom = torch._foreach_add(sums, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])
        return loss


def decay_groups(params: Iterable[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """Trainable ``params`` as param groups: weights (ndim ≥ 2) with ``weight_decay``, biases and other 1-d
    parameters without. Empty groups are left out."""
    params = [p for p in params if p.requires_grad]
    weights = [p for p in params if p.ndim >= 2]
    others = [p for p in params if p.ndim < 2]
    groups = [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.0) -> torch.optim.Optimizer:
    """The optimiser ``name`` (one of :data:`OPTIMIZERS`) over the trainable ``params``, weight decay on weights
    only; ``momentum`` is used by sgd and nesterov. Unknown names raise ValueError listing the valid ones."""
    groups = decay_groups(params, weight_decay)
    if name == "lasagne_adagrad":
        return LasagneAdagrad(groups, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "nesterov":
        if not momentum > 0:
            raise ValueError(f"optimizer nesterov needs momentum > 0, got {momentum}")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
