"""Model-free saliency baselines: the centre bias every model must beat."""

from __future__ import annotations

import numpy as np

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
        import torch

        from salnet.models.salgan import SaliencyOutput

        p = torch.from_numpy(center_bias(tuple(image.shape[-2:]))).to(image.device, torch.float32)
        p = p.expand(image.shape[0], 1, *p.shape)
        return SaliencyOutput(torch.logit(p.clamp(1e-6, 1 - 1e-6)), p)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self
