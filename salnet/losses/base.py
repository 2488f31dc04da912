"""Loss-term base class, parameter validation and the registry by name (``LOSSES``).

Every term is an ``nn.Module`` whose ``forward(pred, target)`` returns a 0-dim tensor: the batch mean of
a per-image value. ``pred`` is what the class's ``takes`` says: ``"logits"`` the network's logits (B,1,H,W)
(the term applies the sigmoid inside, stably), ``"prob"`` sigmoid(logits) in [0,1], ``"output"`` the network's
output as it is — sigmoid(logits) for a network ending in a sigmoid (SalGAN), the raw map for a linear one
(Bruckert et al. §3.2.2 put a sigmoid only for the distribution-based losses, ``family = "distribution"``,
which always take logits or prob). ``target`` is the dict of the data contract
({"map": (B,1,H,W) in [0,1], "fixations": (B,1,H,W) in {0,1}, "image": (B,3,H,W) in [0,1]}), of which
the term reads the keys in ``needs``. Terms return the raw value of their formula: similarity terms
(CC, NSS) are returned as similarities and enter a combination with a negative coefficient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

# MATLAB eps, where the MIT benchmark code puts an epsilon.
EPS = 2.220446049250313e-16
TARGET_KEYS = ("map", "fixations", "image")
TAKES = ("logits", "prob", "output")
FAMILIES = ("pixel", "distribution", "saliency", "perceptual", "regulariser")  # the loss study's §3.2.1–3.2.5


@dataclass(frozen=True)
class Param:
    """A loss parameter: default value, validity check and the words used in error messages."""

    default: float
    check: Callable[[float], bool]
    valid: str  # e.g. "in [0, 1]"


def in_unit_interval(v: float) -> bool:
    return 0.0 <= v <= 1.0


def positive(v: float) -> bool:
    return v > 0.0


def non_negative(v: float) -> bool:
    return v >= 0.0


class Term(nn.Module):
    """One loss of the papers. Subclasses set the class attributes and implement ``forward``."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ("map",)
    takes: ClassVar[str] = "output"
    family: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    context: ClassVar[tuple[str, ...]] = ()  # build() arguments it needs: "center_bias", "vgg"
    description: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        super().__init__()
        self.values = self.validate(values)

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> dict[str, float]:
        """Check parameter names and values; return all parameters with defaults filled in."""
        unknown = sorted(set(values) - set(cls.params))
        if unknown:
            valid = ", ".join(f"{k} ({p.valid}, default {p.default})" for k, p in cls.params.items())
            raise ValueError(
                f"loss {cls.name!r} has no parameter(s) {unknown}; valid: {valid or 'none (only weight)'}"
            )
        out: dict[str, float] = {}
        for key, p in cls.params.items():
            v = values.get(key, p.default)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not p.check(v):
                raise ValueError(f"loss {cls.name!r}: parameter {key!r} must be {p.valid}, got {v!r}")
            out[key] = float(v)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.values.items())

    def forward(self, pred: Tensor, target: Mapping[str, Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


LOSSES: dict[str, type[Term]] = {}


def register(cls: type[Term]) -> type[Term]:
    """Class decorator adding a term to ``LOSSES`` under ``cls.name``."""
    if cls.name in LOSSES:
        raise ValueError(f"loss name {cls.name!r} registered twice")
    if cls.takes not in TAKES:
        raise ValueError(f"loss {cls.name!r}: takes must be one of {TAKES}, got {cls.takes!r}")
    if getattr(cls, "family", None) not in FAMILIES:
        raise ValueError(f"loss {cls.name!r}: family must be one of {FAMILIES}, got {getattr(cls, 'family', None)!r}")
    if cls.family == "distribution" and cls.takes == "output":
        raise ValueError(f"loss {cls.name!r}: distribution-based losses take logits or prob (a sigmoid), not output")
    LOSSES[cls.name] = cls
    return cls


def per_image(x: Tensor) -> Tensor:
    """(B, ...) → (B,) sum over everything but the batch dimension."""
    return x.flatten(1).sum(1)


def mean_per_image(x: Tensor) -> Tensor:
    """(B, ...) → (B,) mean over everything but the batch dimension."""
    return x.flatten(1).mean(1)


def fixation_mean(values: Tensor, fixations: Tensor, loss: str) -> Tensor:
    """Mean of ``values`` (B,1,H,W) at fixations (B,1,H,W) {0,1}, per image, then over images.

    Images without any fixation are left out of the batch mean. A batch without any fixation is an error (the
    fixation maps are missing or empty) where reading that costs nothing: on CPU tensors, and on the first batch
    a process sees on an accelerator. Elsewhere the check would stop the step for a host synchronisation, so
    such a batch adds 0 to the loss (and no gradient) instead.
    """
    global _device_checked
    f = fixations.to(values.dtype)
    count = per_image(f)
    has = (count > 0).to(values.dtype)
    if values.device.type == "cpu" or not _device_checked:
        _device_checked = _device_checked or values.device.type != "cpu"
        if not bool(has.any()):
            raise ValueError(
                f"loss {loss!r} needs fixations but target['fixations'] has none in this batch; "
                "check that the data carries fixation points"
            )
    # masks instead of boolean indexing: indexing a CUDA tensor by a mask waits for the mask's count
    per = per_image(values * f) / count.clamp_min(1)
    return (per * has).sum() / has.sum().clamp_min(1)


_device_checked = False  # whether fixation_mean has checked a batch on an accelerator in this process
