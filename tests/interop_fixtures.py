"""A tiny untrained SalGAN run folder for the interop tests (benchmark uploads, pysaliency): no training needed,
its output layer scaled so that maps use the whole [0, 1] range."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides, config_hash, save_config
from salnet.train.build import build_generator
from salnet.train.checkpoint import CheckpointManager


def tiny_run(folder: Path, input_size=(32, 48), seed: int = 0) -> Path:
    """A run folder (config.yaml, best.pt) of a width-1/16 generator with seeded random weights."""
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.input_size=[{input_size[0]}, {input_size[1]}]"])
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G = build_generator(cfg)
    with torch.no_grad():  # rescale the last layer: logits of std 2 around 0 on a probe image (random weights
        out = G.decoder.output  # alone give a nearly constant map)
        probe = torch.rand(1, 3, input_size[0] // 8, input_size[1] // 8)
        probe = torch.nn.functional.interpolate(probe, size=tuple(input_size), mode="bilinear")
        z = G(probe).logits - out.bias
        k = 2.0 / float(z.std())
        out.weight.mul_(k)
        out.bias.fill_(-k * float(z.mean()))
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    CheckpointManager(folder).save({"G": G.state_dict(), "step": 0, "epoch": 0, "run_id": config_hash(cfg)}, 0,
                                   is_best=True)
    return folder


def write_images(folder: Path, names, sizes, seed: int = 0) -> list[Path]:
    """Smooth random RGB JPEGs ``folder/<name>`` of the given (H, W) sizes (cycled); returns their paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        h, w = sizes[i % len(sizes)]
        small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(folder / name, quality=95)
        out.append(folder / name)
    return out
