"""Models, optimisers and losses of a run, built from its :class:`salnet.config.Config`.

The two papers' procedures (docs/design.md):
- ``salgan``: the Generator trained on BCE/4 for ``bootstrap_epochs`` with the released code's optimiser
  (Nesterov momentum 0.5, lr 1e-3), then G and D alternate every batch with Lasagne's AdaGrad (lr 3e-4 both);
  G loss = α·BCE/4 + BCE(D(I, Ŝ), 1), D loss = mean BCE over the batch [D(I, S) → 1; D(I, Ŝ) → 0].
  ``train.adversarial=false`` keeps the bootstrap stage to the end (the paper's BCE/4 control).
- ``content``: one network (ASPPNet for the loss study, or the Generator) on any loss spec.

``train.recipe`` chooses what an unset ``train.weight_decay`` means: ``released`` none (the released
``+ 1e-4*regularize…`` lines are separate statements, so no penalty reaches the loss), ``paper`` λ = 1e-4 on
Σw² of G and D (torch weight_decay 2e-4, weights only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from salnet import losses
from salnet.config import ARCHS, OUTPUTS, PROCEDURES, RECIPE_WEIGHT_DECAY, Config
from salnet.models.salgan import Discriminator, Generator
from salnet.train.optim import make_optimizer


def output_activation(cfg: Config) -> str:
    """``model.output`` resolved: "sigmoid" or "linear". "auto": SalGAN's generator ends in a sigmoid (released
    code); the loss-study network gets one only when its loss has a distribution-based term (§3.2.2)."""
    m = cfg.model
    if m.output not in OUTPUTS:
        raise ValueError(f"unknown model.output {m.output!r}; choose one of {', '.join(OUTPUTS)}")
    if m.output != "auto":
        return m.output
    if m.arch != "aspp":
        return "sigmoid"  # SalGAN's generator and the readout baseline end in a sigmoid
    spec = cfg.train.loss if isinstance(cfg.train.loss, dict) else {cfg.train.loss: 1.0}
    return "sigmoid" if any(losses.LOSSES[n].family == "distribution" for n in spec if n in losses.LOSSES) \
        else "linear"


def encoder_weights(cfg: Config) -> str | None:
    """The VGG-16 weights the network is built with: ``model.weights``, or "random" when ``train.init_from`` will
    replace every weight of the network (the encoder file is then never read)."""
    return "random" if cfg.train.init_from else cfg.model.weights


def with_init_from_convention(cfg: Config) -> Config:
    """``cfg`` with the input convention of the run that ``train.init_from`` names (e.g. ``caffe_bgr`` for the
    released SalGAN weights converted by jobs/convert.py): a network keeps the normalisation it was trained with.
    Unchanged without ``init_from`` or when the two agree; a missing run is left to the trainer's error."""
    if not cfg.train.init_from:
        return cfg
    from salnet.config import load_config
    from salnet.train.checkpoint import resolve_checkpoint

    try:
        source = load_config(resolve_checkpoint(Path(cfg.train.init_from))[1])
    except FileNotFoundError:
        return cfg
    convention = source.model.input_convention
    if convention == cfg.model.input_convention:
        return cfg
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_convention=convention))


def build_generator(cfg: Config) -> nn.Module:
    """The saliency network: ``Generator`` (arch salgan) or ``ASPPNet`` (arch aspp)."""
    m = cfg.model
    weights = encoder_weights(cfg)
    output = output_activation(cfg)
    if m.arch == "salgan":
        if output != "sigmoid":
            raise ValueError("model.arch=salgan ends in a sigmoid (released code): model.output must be auto or "
                             "sigmoid")
        return Generator(width=m.width, weights=weights, freeze=m.freeze, input_convention=m.input_convention,
                         decoder_init=m.decoder_init)
    if m.arch == "aspp":
        from salnet.models.aspp import ASPPNet

        return ASPPNet(width=m.width, weights=weights, output=output)
    if m.arch == "readout":  # the baseline of salnet.recipes.baselines.fit_readout
        from salnet.models.baselines import ReadoutNet

        return ReadoutNet(weights=weights, input_convention=m.input_convention, width=m.width)
    raise ValueError(f"unknown model.arch {m.arch!r}; choose one of {', '.join(ARCHS)}")


def build_discriminator(cfg: Config) -> nn.Module | None:
    """SalGAN's discriminator for the ``salgan`` procedure, else None."""
    if cfg.train.procedure not in PROCEDURES:
        raise ValueError(f"unknown train.procedure {cfg.train.procedure!r}; choose one of {', '.join(PROCEDURES)}")
    if cfg.train.procedure != "salgan":
        return None
    if cfg.model.arch != "salgan":
        raise ValueError("train.procedure=salgan needs model.arch=salgan (the discriminator sees 192×256 maps)")
    return Discriminator(width=cfg.model.width, input_size=cfg.data.input_size)


def weight_decay(cfg: Config) -> float:
    """``train.weight_decay``, or the recipe's when unset (released 0, paper 2e-4)."""
    t = cfg.train
    if t.recipe not in RECIPE_WEIGHT_DECAY:
        raise ValueError(f"unknown train.recipe {t.recipe!r}; choose one of {', '.join(RECIPE_WEIGHT_DECAY)}")
    return RECIPE_WEIGHT_DECAY[t.recipe] if t.weight_decay is None else t.weight_decay


def build_optimizers(cfg: Config, G: nn.Module, D: nn.Module | None) -> dict[str, torch.optim.Optimizer]:
    """``{"g": ..., "d": ..., "boot": ...}`` as the procedure needs (boot: SalGAN's bootstrap stage)."""
    t = cfg.train
    wd = weight_decay(cfg)
    opts = {"g": make_optimizer(t.optimizer, G.parameters(), t.lr, wd, t.momentum)}
    if D is not None:
        opts["d"] = make_optimizer(t.optimizer, D.parameters(), t.lr_d, wd, t.momentum)
        if t.bootstrap_epochs > 0 or not t.adversarial:
            opts["boot"] = make_optimizer(t.bootstrap_optimizer, G.parameters(), t.bootstrap_lr, wd, t.momentum)
    return opts


def build_content_loss(cfg: Config, center_bias: torch.Tensor | None = None) -> losses.Loss:
    """The content loss of ``cfg.train.loss`` (e.g. ``{"bce_pool4": 1}`` for SalGAN)."""
    return losses.build(cfg.train.loss, center_bias=center_bias, vgg_weights=cfg.model.weights)
