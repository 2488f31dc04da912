"""Networks of both papers: the VGG-16 encoder, SalGAN's generator and discriminator, the ASPP net."""

from salnet.models.aspp import ASPP_INPUT_SIZE, ASPPNet
from salnet.models.salgan import (
    SALGAN_INPUT_SIZE,
    Discriminator,
    DiscriminatorOutput,
    Generator,
    SaliencyOutput,
)
from salnet.models.vgg import VGG16Features, load_vgg16_state_dict

__all__ = [
    "ASPP_INPUT_SIZE",
    "ASPPNet",
    "Discriminator",
    "DiscriminatorOutput",
    "Generator",
    "SALGAN_INPUT_SIZE",
    "SaliencyOutput",
    "VGG16Features",
    "load_vgg16_state_dict",
]
