"""The exact resize of an image and its map to the model input, shared by the loader (full-size shards) and
the packer (model-size shards), so that both produce the same float32 values bit for bit.

Flips are applied after resizing, to the image, map and fixation map alike (a flipped point grid would not
align): :func:`salnet.imresize.area_resize_int` and :func:`salnet.data.maps.fixation_map` write their
outputs mirrored, the band paths flip a copy.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from salnet.data.sample import map_to_float
from salnet.imresize import area_resize_int, band_resize


def resize_image(rgb: torch.Tensor, size: tuple[int, int], method: str, flip: bool, out: torch.Tensor) -> None:
    """uint8 (H, W, 3) -> ``out`` float32 (3, h, w) in [0, 1]: INTER_AREA in exact integer sums where the
    resize has a short repeated block, else the banded weights of :func:`salnet.imresize.imresize`."""
    if method == "area" and area_resize_int(rgb, size, flip, out=out) is not None:
        return  # exact integer sums
    # uint8 HWC in: the first pass gathers bytes and its weights make floats (no full-size float copy)
    image = band_resize(rgb, size, method, channels_last=True)
    image = image.float() if image.dtype == torch.uint8 else image  # same size: no resize happened
    # divided straight into (3, H, W): one pass instead of divide, clamp and a transposing copy
    torch.div(image.permute(2, 0, 1), 255.0, out=out).clamp_(0, 1)
    if flip:
        out.copy_(out.flip(-1))


def resize_map(gray: np.ndarray, size: tuple[int, int], method: str, flip: bool, out: torch.Tensor,
               keep_original: bool) -> torch.Tensor | None:
    """uint8/uint16 (H, W) -> ``out`` float32 (1, h, w) in [0, 1]; returns the full-size float map (1, H, W)
    when ``keep_original`` (else None)."""
    with warnings.catch_warnings():  # PIL's array is read-only; it is only read here
        warnings.simplefilter("ignore", UserWarning)
        gray_t = torch.from_numpy(gray)
    done = method == "area" and area_resize_int(gray_t[..., None], size, flip, out=out) is not None
    smap = torch.from_numpy(map_to_float(gray))[None] if not done or keep_original else None
    if smap is not None and not done:  # not done: smap is the full-size map
        small = band_resize(smap, size, method)
        out.copy_((small.flip(-1) if flip else small).clamp(0, 1))
    return smap
