"""Saliency maps for arbitrary images from a trained run, with SalGAN's released post-processing.

    model, cfg = load_model("runs/salgan-1a2b3c4d5e6f")          # best.pt, else latest.pt
    maps = predict_maps(model, [rgb_uint8, ...], cfg.data.input_size)
    Path("a.png").write_bytes(map_png(maps[0]))

Post-processing as released (imatge-upc/salgan ``utils.predict``; docs/design.md, "SalGAN"): the image is resized
to the network input with INTER_AREA, the prediction is resized back to the image size bicubically,
blurred with ``cv2.GaussianBlur(m, (5, 5), 0)`` and clipped. Two deliberate differences: the resize back
is MATLAB ``imresize`` bicubic (the metrics' convention, :mod:`salnet.imresize`) rather than OpenCV's
INTER_CUBIC, and the map stays float until it is written (the released code rounds to uint8 first). The
post-processing itself, with OpenCV's exact blur kernel: :mod:`salnet.models.postprocess`.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from salnet.config import Config, ConfigError, config_hash, load_config, shorter_run
from salnet.imresize import imresize, spatial_size
from salnet.models.postprocess import postprocess
from salnet.models.vgg import VGG16Features
from salnet.train.checkpoint import load_checkpoint, resolve_checkpoint

# ---------------------------------------------------------------- loading


def load_model(path: str | Path, which: str = "best",
               device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The trained generator of a run folder (best.pt, else latest.pt) or of a checkpoint file, with its
    config.

    The encoder is built without its pretrained VGG file (the checkpoint holds every weight), so a run
    trained on a cluster loads where that file is absent. Returns (model in eval mode on ``device``,
    the run's Config). A checkpoint that does not fit the config raises ValueError naming both files.
    """
    from salnet.train.build import build_generator

    ckpt, config = resolve_checkpoint(path, which)
    try:
        cfg = load_config(config)
    except ConfigError as exn:
        raise ValueError(f"{config}: {exn}") from exn
    state = load_checkpoint(ckpt, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get("G"), dict):
        raise ValueError(f"{ckpt}: not a salnet training checkpoint (no generator state 'G')")
    # a checkpoint of the same run before it was continued to more epochs (shorter_run) is that run's own
    if state.get("run_id") not in (None, config_hash(cfg)) and shorter_run(cfg, state["run_id"]) is None:
        warnings.warn(f"{ckpt}: saved by run {state['run_id']}, but {config} hashes to {config_hash(cfg)} "
                      "(config edited after training?); loading anyway", UserWarning, stacklevel=2)
    bare = copy.deepcopy(cfg)
    bare.model.weights = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VGG-16 has RANDOM weights")
        model = build_generator(bare)
    convention = cfg.model.input_convention
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, VGG16Features) and encoder.input_convention != convention:
        encoder.set_input_convention(convention)  # build_generator may not pass it on
    try:
        model.load_state_dict(state["G"], strict=True)
    except RuntimeError as exn:
        lines = str(exn).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise ValueError(f"{ckpt}: its generator does not match {config} (model.arch={cfg.model.arch}, "
                         f"model.width={cfg.model.width}): {detail}; use the config.yaml of the run that "
                         "saved it") from exn
    return model.to(device).eval(), cfg


def as_image_tensor(image: np.ndarray, name: str = "image", device=None) -> Tensor:
    """uint8 RGB (H, W, 3) → float (3, H, W) in [0, 1] on ``device`` (moved as bytes); anything else is a
    ValueError naming ``name``."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise ValueError(f"{name}: expected a uint8 RGB array (H, W, 3), got {a.dtype} {a.shape}; "
                         "convert with PIL Image.convert('RGB') and np.asarray")
    a = np.ascontiguousarray(a) if a.flags.writeable else a.copy()  # torch warns on read-only arrays
    return torch.from_numpy(a).to(device).permute(2, 0, 1).float() / 255.0


@torch.no_grad()
def predict_maps(model: nn.Module, images: Sequence[np.ndarray], input_size: tuple[int, int],
                 device: str | torch.device | None = None, batch_size: int = 8) -> list[Tensor]:
    """Saliency maps of ``images`` at each image's own size.

    images: uint8 RGB arrays (H, W, 3) of any (mixed) sizes. Each is resized to ``input_size`` (H, W)
    with INTER_AREA from [0, 1] floats (as the training loader does), run through ``model`` in batches
    of ``batch_size`` on ``device`` (default: the model's device; resizing and blurring run there too),
    then post-processed (:func:`salnet.models.postprocess.postprocess`). Returns one float32 CPU tensor
    (1, H, W) in [0, 1] per image, in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = torch.device(device)
    size = (int(input_size[0]), int(input_size[1]))
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = [as_image_tensor(im, f"images[{start + i}]", device)
                     for i, im in enumerate(images[start:start + batch_size])]
            x = torch.stack([imresize(t, size, "area").clamp_(0, 1) for t in chunk])
            prob = model(x).prediction().float()
            for t, p in zip(chunk, prob):
                out.append(postprocess(p, spatial_size(t)).cpu())
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------- PNG output


def map_to_uint8(m: Tensor) -> np.ndarray:
    """Map (1, H, W) or (H, W) in [0, 1] → uint8 (H, W), rounded to nearest (what the PNG stores)."""
    a = m.detach().reshape(m.shape[-2:]).double().clamp(0, 1).cpu().numpy()
    return np.rint(a * 255.0).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def map_png(m: Tensor) -> bytes:
    """The 8-bit grayscale PNG file of a map (1, H, W) or (H, W) in [0, 1]."""
    return _png(map_to_uint8(m))


def overlay_rgb(image: np.ndarray, m: Tensor, alpha: float = 0.5) -> np.ndarray:
    """Heat map of ``m`` (1, H, W) blended over ``image`` uint8 (H, W, 3) → uint8 (H, W, 3) (the same
    colour ramp as the TensorBoard panels, :func:`salnet.train.tensorboard.overlay`)."""
    from salnet.train.tensorboard import overlay

    img = as_image_tensor(image)
    rgb = overlay(img, m.detach().reshape(1, *m.shape[-2:]).cpu().float(), alpha).clamp(0, 1)
    return np.rint(rgb.permute(1, 2, 0).double().numpy() * 255.0).astype(np.uint8)


def overlay_png(image: np.ndarray, m: Tensor, alpha: float = 0.5) -> bytes:
    """The RGB PNG file of :func:`overlay_rgb`."""
    return _png(overlay_rgb(image, m, alpha))
