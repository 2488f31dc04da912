"""The baselines every trained model must beat: the centre bias (model-free) and a readout of the encoder.

- :func:`center_bias` / :class:`CenterBiasModel`: an anisotropic Gaussian on the image centre.
- :class:`ReadoutNet` / :func:`fit_readout`: the frozen VGG-16 encoder's conv4_3 and conv5_3 features and a
  two-layer 1×1-conv head trained with BCE (features computed once). A deep model that loses to a linear-ish
  readout of its own encoder is not trained well yet.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.logs import get_logger

log = get_logger(__name__)

CENTER_SIGMA = 0.25  # σ as a fraction of each side; a blob that covers the usual central fixation spread


def center_bias(size: tuple[int, int], sigma: float = CENTER_SIGMA) -> np.ndarray:
    """An anisotropic Gaussian centred on the image, σ = ``sigma`` × (H, W), peak 1.

    Takes ``size`` = (H, W); returns float64 (H, W) in (0, 1]. Used as the default IG baseline and as the
    prediction of the demo's baseline model.
    """
    H, W = int(size[0]), int(size[1])
    if H < 1 or W < 1 or not sigma > 0:
        raise ValueError(f"center_bias needs a positive size and sigma, got size={size}, sigma={sigma}")
    y = (np.arange(H) + 0.5 - H / 2) / (sigma * H)
    x = (np.arange(W) + 0.5 - W / 2) / (sigma * W)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def write_center_bias(sizes: dict[str, tuple[int, int]], out_dir) -> list:
    """Save the centre-bias prediction for each image ``stem → (H, W)`` as ``out_dir/stem.npy``;
    returns the paths written."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, size in sorted(sizes.items()):
        p = out / f"{stem}.npy"
        np.save(p, center_bias(size))
        paths.append(p)
    return paths


class CenterBiasModel:
    """The centre bias as a saliency "network" (same call convention as the models: ``model(image)`` with
    image (B,3,H,W) → an object with ``logits`` and ``prob`` (B,1,H,W)), to validate it like a model."""

    training = False

    def __call__(self, image):
        from salnet.models.salgan import SaliencyOutput

        p = torch.from_numpy(center_bias(tuple(image.shape[-2:]))).to(image.device, torch.float32)
        p = p.expand(image.shape[0], 1, *p.shape)
        return SaliencyOutput(torch.logit(p.clamp(1e-6, 1 - 1e-6)), p)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


READOUT_TAPS = ("conv4_3", "conv5_3")  # 512 channels each, at 1/8 and 1/16 of the input
READOUT_HIDDEN = 32


class ReadoutNet(nn.Module):
    """The readout baseline: frozen VGG-16 conv4_3 and conv5_3 (after ReLU; conv5_3 upsampled ×2, bilinear),
    concatenated (1024 channels at 1/8 of the input) → 1×1 conv to ``hidden`` + ReLU → 1×1 conv to one map →
    bilinear upsampling to the input size.

    ``forward(image)`` (B,3,H,W) RGB in [0,1], H and W multiples of 16 → ``SaliencyOutput`` (logits at the input
    size); ``features(image)`` → the (B,1024,H/8,W/8) encoder features; ``head(features)`` → logits at H/8.
    """

    def __init__(self, weights=None, hidden: int = READOUT_HIDDEN, input_convention: str = "torchvision",
                 width: float = 1.0) -> None:
        super().__init__()
        from salnet.models.vgg import BLOCKS, VGG16Features

        self.encoder = VGG16Features(width=width, weights=weights, freeze=BLOCKS, last="conv5_3",
                                     input_convention=input_convention).eval()
        channels = 2 * self.encoder.out_channels
        self.head = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def train(self, mode: bool = True) -> ReadoutNet:
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def features(self, image: Tensor) -> Tensor:
        taps = self.encoder.taps(image, READOUT_TAPS)
        fine = taps["conv4_3"]
        coarse = F.interpolate(taps["conv5_3"], size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def forward(self, image: Tensor):
        from salnet.models.salgan import SaliencyOutput

        if image.shape[-2] % 16 or image.shape[-1] % 16:
            raise ValueError(f"ReadoutNet input {tuple(image.shape[-2:])} (H, W) must be multiples of 16")
        small = self.head(self.features(image))
        logits = F.interpolate(small, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return SaliencyOutput(logits, torch.sigmoid(logits))


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
    :func:`salnet.evaluate.evaluate_run` and :func:`salnet.predict.load_model` read (config.yaml with
    ``model.arch=readout`` and a checkpoint). The encoder's features of every image are computed once; the head
    then trains ``epochs`` passes over them with Adam (``lr``, ``batch_size``) against the ground-truth maps
    area-resized to the feature size (1/8). Returns ``run_dir``. Progress goes to the ``salnet.baselines`` logger
    (:func:`salnet.logs.captured` collects it).
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
