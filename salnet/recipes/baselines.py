"""The baselines' runs and files: the readout of the encoder trained and saved as a run folder, the centre bias
written as prediction files (the networks themselves: :mod:`salnet.models.baselines`).

- :func:`fit_readout` / :func:`readout_config`: :class:`~salnet.models.baselines.ReadoutNet`'s head trained with BCE
  on the frozen encoder's features (computed once). A deep model that loses to a linear-ish readout of its own
  encoder is not trained well yet.
- :func:`write_center_bias`: :func:`~salnet.models.baselines.center_bias` saved per image as ``.npy``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from salnet.logs import get_logger
from salnet.models.baselines import ReadoutNet, center_bias

log = get_logger(__name__)


def write_center_bias(sizes: dict[str, tuple[int, int]], out_dir) -> list:
    """Save the centre-bias prediction for each image ``stem → (H, W)`` as ``out_dir/stem.npy``;
    returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, size in sorted(sizes.items()):
        p = out / f"{stem}.npy"
        np.save(p, center_bias(size))
        paths.append(p)
    return paths


def readout_config(shards: str | Path, *, weights=None, input_size: tuple[int, int] = (192, 256),
                   split: str = "train", epochs: int = 40, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                   input_convention: str = "torchvision", width: float = 1.0):
    """The :class:`~salnet.config.Config` that :func:`fit_readout` saves for these arguments (same names and
    defaults); its :func:`~salnet.config.config_hash` tells whether a saved readout was made with them."""
    from salnet.config import Config, DataConfig, ModelConfig, TrainConfig

    size = (int(input_size[0]), int(input_size[1]))
    return Config(name="readout", data=DataConfig(shards=str(shards), input_size=size,
                                                  batch_size=batch_size, train_split=split),
                  model=ModelConfig(arch="readout", weights=None if weights is None else str(weights),
                                    input_convention=input_convention, width=width, freeze=()),
                  train=TrainConfig(procedure="content", epochs=epochs, bootstrap_epochs=0, optimizer="adam", lr=lr,
                                    loss={"bce": 1.0}, seed=seed))


def fit_readout(shards: str | Path, run_dir: str | Path, *, weights=None, input_size: tuple[int, int] = (192, 256),
                split: str = "train", epochs: int = 40, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                device: str | torch.device = "cpu", input_convention: str = "torchvision",
                width: float = 1.0) -> Path:
    """Train the readout head with BCE on ``split`` of packed ``shards`` and save it as a run folder that
    :func:`salnet.inference.evaluate.evaluate_run` and :func:`salnet.inference.predict.load_model` read (config.yaml
    with
    ``model.arch=readout`` and a checkpoint). The encoder's features of every image are computed once; the head
    then trains ``epochs`` passes over them with Adam (``lr``, ``batch_size``) against the ground-truth maps
    area-resized to the feature size (1/8). Returns ``run_dir``. Progress goes to the ``salnet.recipes.baselines``
    logger (:func:`salnet.logs.captured` collects it).
    """
    from salnet.config import config_hash, save_config
    from salnet.data.loader import LoaderConfig, ValLoader
    from salnet.imresize import imresize, spatial_size
    from salnet.train.checkpoint import CheckpointManager

    torch.manual_seed(seed)
    device = torch.device(device)
    cfg = readout_config(shards, weights=weights, input_size=input_size, split=split, epochs=epochs, lr=lr,
                         batch_size=batch_size, seed=seed, input_convention=input_convention, width=width)
    net = ReadoutNet(weights=weights, input_convention=input_convention, width=width).to(device)
    loader = ValLoader(shards, split, LoaderConfig(size=input_size, batch_size=batch_size, workers=0,
                                                   flip=False), rank=0, world_size=1)
    feats, maps = [], []
    for batch in loader:
        f = net.features(batch["image"].to(device))
        feats.append(f.to(torch.bfloat16).cpu())  # 1024 × H/8 × W/8 per image; bf16 halves the memory
        maps.append(imresize(batch["map"].float(), spatial_size(f), "area").clamp(0, 1))
    if not feats:
        raise ValueError(f"{shards}: split {split!r} has no readable sample to train the readout on")
    x, y = torch.cat(feats), torch.cat(maps)
    log.info(f"readout: features of {len(x)} images computed once ({tuple(x.shape[1:])} each)")
    opt = torch.optim.Adam(net.head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps = 0
    for epoch in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            logits = net.head(x[idx].to(device, torch.float32))
            loss = F.binary_cross_entropy_with_logits(logits, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            steps += 1
        if not math.isfinite(total):
            raise FloatingPointError(f"readout: non-finite BCE in epoch {epoch}; lower lr (now {lr})")
        if epoch % 10 == 0 or epoch == epochs - 1:
            log.info(f"readout: epoch {epoch + 1}/{epochs} BCE {total / len(x):.5f}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml", extra={"seed": seed, "baseline": "readout"})
    state = {"G": net.state_dict(), "run_id": config_hash(cfg), "step": steps, "epoch": epochs}
    CheckpointManager(run_dir, keep_last=1).save(state, steps, is_best=True)
    return run_dir
