"""Every loss of SalGAN (Pan et al. 2017) and of the loss study (Bruckert et al. 2019), by name.

``build(spec)`` turns ``{"kld": 10, "cc": -2, "nss": -1, "sig_mse": {"weight": 1, "lambda": 0.55}}``
into one callable ``loss(logits, target) -> (total, terms)``; ``LOSSES`` is the registry (name → class
with ``needs``, ``takes``, ``params``). Names: see ``sorted(LOSSES)`` or ``describe()``.
"""

from salnet.losses import distribution, perceptual, pixel, saliency  # noqa: F401  (registers the terms)
from salnet.losses.base import EPS, LOSSES, Param, Term
from salnet.losses.combine import (
    LC1,
    LC2,
    Loss,
    build,
    center_bias_map,
    discriminator_loss,
    generator_adversarial_loss,
)
from salnet.losses.perceptual import VGGPools


def describe() -> str:
    """One line per registered loss: name, family, what it needs/takes, parameters, formula."""
    lines = []
    for name in sorted(LOSSES):
        c = LOSSES[name]
        params = ", ".join(f"{k}={p.default:g} ({p.valid})" for k, p in c.params.items())
        lines.append(f"{name:12s} {c.family:12s} needs={','.join(c.needs)} takes={c.takes} {params}  {c.description}")
    return "\n".join(lines)


__all__ = [
    "EPS",
    "LC1",
    "LC2",
    "LOSSES",
    "Loss",
    "Param",
    "Term",
    "VGGPools",
    "build",
    "center_bias_map",
    "describe",
    "discriminator_loss",
    "generator_adversarial_loss",
]
