"""The sample every reader yields and every shard stores, and its image/map decoding helpers."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTS = ("jpg", "jpeg", "png")
NO_OBSERVER = -1


@dataclass
class Sample:
    """One raw-release image with its targets, as packed into a shard.

    image: the file bytes exactly as released; image_ext: "jpg" | "jpeg" | "png" (the release's).
    height, width: image size in pixels.
    map: continuous saliency map (height, width), uint8 (release maps) or uint16 (built from
        fixations, or synthetic); None where the release has no map (test splits).
    fixations: int32 (N, 3) rows (y, x, observer), 0-based, observer -1 where the release has none.
    meta: extra JSON-serialisable facts (map source, sigma, dropped fixations, ...).
    """

    dataset: str
    split: str
    id: str
    image: bytes
    image_ext: str
    height: int
    width: int
    map: np.ndarray | None = None
    fixations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.image_ext not in IMAGE_EXTS:
            raise ValueError(f"{self.dataset}/{self.id}: image extension {self.image_ext!r} not in {IMAGE_EXTS}")
        fix = np.asarray(self.fixations)
        if fix.ndim != 2 or fix.shape[1] != 3:
            raise ValueError(f"{self.dataset}/{self.id}: fixations must be (N, 3) (y, x, observer), got {fix.shape}")
        self.fixations = fix.astype(np.int32, copy=False)
        if self.map is not None and self.map.shape != (self.height, self.width):
            raise ValueError(
                f"{self.dataset}/{self.id}: map shape {self.map.shape} differs from the image size "
                f"{(self.height, self.width)}"
            )


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``; a clear FileNotFoundError/ValueError when missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: file is empty (truncated download?)")
    return data


def image_size(data: bytes, where: str = "image") -> tuple[int, int]:
    """(height, width) of encoded image bytes, reading the header only; ValueError if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.height, im.width
    except Exception as exn:  # PIL raises several types for garbage input
        raise ValueError(f"{where}: not a readable image ({exn})") from exn


def decode_rgb(data: bytes, draft: tuple[int, int] | None = None) -> np.ndarray:
    """Encoded image bytes -> uint8 (H, W, 3) RGB (grey and CMYK releases are converted).

    draft=(h, w): for JPEG, let libjpeg decode at the smallest 1/2^k scale still >= (h, w) (faster).
    """
    with Image.open(io.BytesIO(data)) as im:
        if draft is not None:
            im.draft("RGB", (draft[1], draft[0]))
        im.load()
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.array(im)  # writable, so torch.from_numpy can share it


def decode_gray(data: bytes, where: str = "map") -> np.ndarray:
    """Encoded single-channel map -> uint8 or uint16 (H, W) array as stored.

    RGB maps (some releases save grey maps as 3 identical channels) are reduced to one channel;
    ValueError if the channels differ.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im)
    except Exception as exn:
        raise ValueError(f"{where}: not a readable image ({exn})") from exn
    if arr.ndim == 3:
        arr = arr[..., :3]
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            # a colour-coded map: luminance as PIL defines it
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert("L"))
        else:
            arr = arr[..., 0]
    if arr.dtype == np.int32:  # PIL mode "I" for 16-bit files on some versions
        arr = arr.astype(np.uint16)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr)


def encode_png(arr: np.ndarray) -> bytes:
    """uint8/uint16 (H, W) -> PNG bytes; fixed zlib level and no metadata, so byte-deterministic.

    Level 1: 5x faster to pack than 6 for 7% more bytes on smooth 16-bit maps; decoding costs the same.
    """
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim != 2:
        raise ValueError(f"encode_png takes a uint8/uint16 (H, W) array, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue()


def map_to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 map -> float32 in [0, 1], divided by the dtype's maximum in one pass (no float32
    temporary: the loader calls this for every sample)."""
    scale = np.float32(65535.0 if arr.dtype == np.uint16 else 255.0)
    return np.divide(arr, scale, dtype=np.float32)
