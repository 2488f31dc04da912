"""Models, optimisers and losses of a run, built from its :class:`salnet.config.Config`.

The two papers' procedures (DESIGN.md §2–3):
- ``salgan``: Generator trained on BCE/4 for ``bootstrap_epochs`` with the released code's optimiser
  (Nesterov momentum 0.5, lr 1e-3), then G and D alternate every batch with AdaGrad (lr 3e-4 both);
  G loss = α·BCE/4 + BCE(D(I, Ŝ), 1), D loss = BCE(D(I, S), 1) + BCE(D(I, Ŝ), 0).
- ``content``: one network (ASPPNet for the loss study, or the Generator) on any loss spec, SGD lr 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn

from salnet import losses
from salnet.config import Config
from salnet.models.salgan import Discriminator, Generator

ARCHS = ("salgan", "aspp")
PROCEDURES = ("salgan", "content")
OPTIMIZERS = ("adagrad", "sgd", "nesterov", "adam")


def build_generator(cfg: Config) -> nn.Module:
    """The saliency network: ``Generator`` (arch salgan) or ``ASPPNet`` (arch aspp)."""
    m = cfg.model
    if m.arch == "salgan":
        return Generator(width=m.width, weights=m.weights, freeze=m.freeze)
    if m.arch == "aspp":
        from salnet.models.aspp import ASPPNet

        return ASPPNet(width=m.width, weights=m.weights)
    raise ValueError(f"unknown model.arch {m.arch!r}; choose one of {', '.join(ARCHS)}")


def build_discriminator(cfg: Config) -> nn.Module | None:
    """SalGAN's discriminator for the ``salgan`` procedure, else None."""
    if cfg.train.procedure not in PROCEDURES:
        raise ValueError(f"unknown train.procedure {cfg.train.procedure!r}; choose one of {', '.join(PROCEDURES)}")
    if cfg.train.procedure != "salgan":
        return None
    if cfg.model.arch != "salgan":
        raise ValueError("train.procedure=salgan needs model.arch=salgan (the discriminator sees 192×256 maps)")
    return Discriminator(width=cfg.model.width, input_size=tuple(cfg.data.input_size))


def make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_optimizers(cfg: Config, G: nn.Module, D: nn.Module | None) -> dict[str, torch.optim.Optimizer]:
    """``{"g": ..., "d": ..., "boot": ...}`` as the procedure needs (boot: SalGAN's bootstrap stage)."""
    t = cfg.train
    opts = {"g": make_optimizer(t.optimizer, G.parameters(), t.lr, t.weight_decay, t.momentum)}
    if D is not None:
        opts["d"] = make_optimizer(t.optimizer, D.parameters(), t.lr_d, t.weight_decay, t.momentum)
        if t.bootstrap_epochs > 0:
            opts["boot"] = make_optimizer(t.bootstrap_optimizer, G.parameters(), t.bootstrap_lr, t.weight_decay,
                                          t.momentum)
    return opts


def build_content_loss(cfg: Config, center_bias: torch.Tensor | None = None) -> losses.Loss:
    """The content loss of ``cfg.train.loss`` (e.g. ``{"bce_pool4": 1}`` for SalGAN)."""
    return losses.build(cfg.train.loss, center_bias=center_bias, vgg_weights=cfg.model.weights)
