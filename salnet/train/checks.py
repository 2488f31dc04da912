"""The allowed values of a config's keys, checked before anything is written or submitted.

    check_config(cfg)   # ConfigError naming the first key out of range, its value and what is allowed

The types are checked when a config is built (:mod:`salnet.config`); this module checks what the types allow but
no run can do: a batch of 0, negative epochs, a learning rate of 0, an input smaller than the network's
downsampling, a name no builder knows. Each message is one line: ``data.batch_size=0: must be an integer ≥ 1``.
"""

from __future__ import annotations

import math
from typing import Any

from salnet.config import (
    ARCHS,
    INPUT_CONVENTIONS,
    OPTIMIZERS,
    OUTPUTS,
    POSTPROCESS,
    PROCEDURES,
    RECIPE_WEIGHT_DECAY,
    Config,
    ConfigError,
)
from salnet.metric_names import METRIC_NAMES

# (dotted key, low, high, low inclusive): numbers; None = unbounded on that side
RANGES: tuple[tuple[str, float | None, float | None, bool], ...] = (
    ("data.batch_size", 1, None, True), ("data.workers", 0, None, True), ("data.val_subset", 1, None, True),
    ("data.train_passes", 1, 100, True), ("data.max_bad_fraction", 0, 1, True),
    ("model.width", 0, None, False),
    ("train.epochs", 1, None, True), ("train.bootstrap_epochs", 0, None, True), ("train.alpha", 0, None, True),
    ("train.lr", 0, None, False), ("train.lr_d", 0, None, False), ("train.bootstrap_lr", 0, None, False),
    ("train.momentum", 0, 1, True), ("train.weight_decay", 0, None, True), ("train.patience", 1, None, True),
    ("train.seed", 0, 2**32 - 1, True), ("train.keep_last", 1, None, True), ("train.max_steps", 1, None, True),
    ("train.log_every", 1, None, True),
)
MIN_SIDE = {"salgan": 32, "aspp": 32, "readout": 32}  # VGG-16's pools need at least 32 px per side
MULTIPLE = {"salgan": 16, "readout": 16}  # the decoder/upsampling gives back the input size only for multiples


def _get(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _range_text(low, high, low_inclusive: bool) -> str:
    if high is None:
        return f"{'≥' if low_inclusive else '>'} {low}"
    return f"in [{low}, {high}]" if low_inclusive else f"in ({low}, {high}]"


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r}: must be {allowed}", key=key)


def check_config(cfg: Config) -> Config:
    """``cfg`` unchanged when every key holds a value a run can use; else a :class:`ConfigError` naming the key,
    its value and the allowed range or choices (one line)."""
    for key, low, high, inclusive in RANGES:
        value = _get(cfg, key)
        if value is None:  # optional keys (weight_decay, patience, max_steps): None means "off"
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(key, value, "a finite number " + _range_text(low, high, inclusive))
        if (low is not None and (value < low if inclusive else value <= low)) or (high is not None and value > high):
            kind = "an integer " if isinstance(value, int) else "a number "
            raise _fail(key, value, kind + _range_text(low, high, inclusive))
    _check_choices(cfg)
    h, w = cfg.data.input_size
    arch = cfg.model.arch
    side = MIN_SIDE.get(arch, 32)
    if min(h, w) < side:
        raise _fail("data.input_size", [h, w], f"at least {side}×{side} for model.arch={arch} (VGG-16's pools)")
    step = MULTIPLE.get(arch)
    if step and (h % step or w % step):
        raise _fail("data.input_size", [h, w], f"multiples of {step} for model.arch={arch}, e.g. [192, 256]")
    return cfg


def _check_choices(cfg: Config) -> None:
    choices: dict[str, tuple[str, ...]] = {
        "model.arch": ARCHS, "model.output": OUTPUTS, "model.postprocess": POSTPROCESS,
        "model.input_convention": INPUT_CONVENTIONS, "model.decoder_init": ("glorot", "he"),
        "train.procedure": PROCEDURES, "train.recipe": tuple(RECIPE_WEIGHT_DECAY), "train.optimizer": OPTIMIZERS,
        "train.bootstrap_optimizer": OPTIMIZERS, "train.best_metric": METRIC_NAMES,
    }
    for key, allowed in choices.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise _fail(key, value, f"one of {', '.join(allowed)}")


def uses_vgg_weights(cfg: Config) -> bool:
    """Whether a run of ``cfg`` reads ``model.weights``: its encoder (unless ``train.init_from`` replaces every weight
    of the network) or a perceptual loss (DF, GM) of its loss spec."""
    spec = cfg.train.loss if isinstance(cfg.train.loss, dict) else {cfg.train.loss: 1.0}
    perceptual = any(name in ("df", "gm") for name in spec)
    return perceptual or not cfg.train.init_from


def check_weights(cfg: Config):
    """The VGG-16 file a run of ``cfg`` will load (None: random, or not read at all), resolved as
    :func:`salnet.models.weights.resolve_weights` does (which may fetch torchvision's ImageNet file into its cache);
    :class:`~salnet.models.weights.WeightsError` naming the file looked for and the ways to provide it."""
    from salnet.models.weights import is_random, resolve_weights

    if not uses_vgg_weights(cfg):
        return None
    if not is_random(cfg.model.weights) and cfg.model.width != 1.0:
        raise _fail("model.weights", cfg.model.weights, f"'random' for a narrow network (model.width="
                                                         f"{cfg.model.width}); pretrained VGG-16 weights need width 1")
    return resolve_weights(cfg.model.weights)
