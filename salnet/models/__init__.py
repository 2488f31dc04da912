"""Networks of both papers: the VGG-16 encoder, SalGAN's generator and discriminator, the ASPP net.

The names below load their module on first use, so ``salnet.models.weights`` (where a run's VGG-16 weights come
from) imports without torch: launchers and sweep drivers check a plan's weights without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from salnet.models.aspp import ASPP_INPUT_SIZE, ASPPNet
    from salnet.models.salgan import (
        SALGAN_INPUT_SIZE,
        Discriminator,
        DiscriminatorOutput,
        Generator,
        SaliencyOutput,
    )
    from salnet.models.vgg import VGG16Features, load_vgg16_state_dict

_HOMES = {"ASPP_INPUT_SIZE": "aspp", "ASPPNet": "aspp", "SALGAN_INPUT_SIZE": "salgan", "Discriminator": "salgan",
          "DiscriminatorOutput": "salgan", "Generator": "salgan", "SaliencyOutput": "salgan",
          "VGG16Features": "vgg", "load_vgg16_state_dict": "vgg"}

__all__ = ["ASPP_INPUT_SIZE", "ASPPNet", "Discriminator", "DiscriminatorOutput", "Generator", "SALGAN_INPUT_SIZE",
           "SaliencyOutput", "VGG16Features", "load_vgg16_state_dict"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'salnet.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"salnet.models.{_HOMES[name]}"), name)
