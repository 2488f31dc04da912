"""Fixation points <-> maps: the Gaussian-blurred continuous map, binary maps and their points."""

from __future__ import annotations

import numpy as np

from salnet.data.sample import NO_OBSERVER


def one_based_to_index(values: np.ndarray) -> np.ndarray:
    """1-based pixel coordinates (integer or sub-pixel float) -> 0-based int64 pixel indices.

    Pixel k (1-based) covers [k - 0.5, k + 0.5), so the index is floor(v + 0.5) - 1 (no banker's
    rounding: 2.5 -> pixel 3 -> index 2).
    """
    return coords_to_index(values, 1)


def coords_to_index(values: np.ndarray, base: int, n: int | None = None) -> np.ndarray:
    """Pixel coordinates counted from ``base`` (0 or 1) -> 0-based int64 indices, floor(v - base + 0.5).

    With the axis length n, a sub-pixel value on the image's outer edge (v - base = n - 0.5) belongs to
    the last pixel; anything further out stays out of range (make_points drops and counts it).
    """
    t = np.asarray(values, dtype=np.float64) - base
    idx = np.floor(t + 0.5).astype(np.int64)
    if n is not None:
        idx = np.where((t >= -0.5) & (t <= n - 0.5), np.clip(idx, 0, n - 1), idx)
    return idx


def make_points(y: np.ndarray, x: np.ndarray, observer, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Assemble 0-based (y, x) indices into int32 (N, 3) (y, x, observer) rows inside the image.

    observer: an int for all rows or an array of N ints. Points outside (height, width) cannot be
    rasterised or scored, so they are dropped; returns (points, number dropped) so the caller records it.
    """
    y = np.asarray(y, dtype=np.int64).ravel()
    x = np.asarray(x, dtype=np.int64).ravel()
    obs = np.broadcast_to(np.asarray(observer, dtype=np.int64), y.shape)
    inside = (y >= 0) & (y < size[0]) & (x >= 0) & (x < size[1])
    pts = np.stack([y[inside], x[inside], obs[inside]], axis=1).astype(np.int32)
    return pts.reshape(-1, 3), int((~inside).sum())


def points_from_binary(binary: np.ndarray, minimum: float) -> np.ndarray:
    """A binary fixation map (H, W) -> int32 (N, 3) (y, x, -1) in row-major order.

    minimum: the smallest value that counts as a fixation (1 for 0/1 .mat maps, 128 for JPEG-saved
    0/255 maps, whose compression ringing must not become fixations).
    """
    arr = np.asarray(binary)
    ys, xs = np.nonzero(arr.astype(np.float64) >= minimum)
    return np.stack([ys, xs, np.full_like(ys, NO_OBSERVER)], axis=1).astype(np.int32).reshape(-1, 3)


def blur_fixations(points: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """Continuous map from fixations, the SALICON-API way: ones at fixated pixels (repeats count
    once), scipy Gaussian blur (reflect border, truncate 4 sigma), min-max normalised.

    points: (N, >=2) int (y, x) 0-based inside size; returns float64 (H, W) in [0, 1]
    (all zeros when there are no fixations).
    """
    fixmap = np.zeros(size, dtype=np.float64)
    if len(points):
        fixmap[points[:, 0], points[:, 1]] = 1.0
    from scipy.ndimage import gaussian_filter  # here: scipy.ndimage costs every importing process 0.4 s of CPU

    sal = gaussian_filter(fixmap, sigma)
    sal -= sal.min()
    top = sal.max()
    return sal / top if top > 0 else sal


def quantize16(m: np.ndarray) -> np.ndarray:
    """float map in [0, 1] -> uint16 (round to nearest of 65535 levels)."""
    return np.round(np.clip(m, 0.0, 1.0) * 65535.0).astype(np.uint16)


def fixation_map(points: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int],
                 flip: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Binary fixation map at another resolution: float32 (h, w) in {0, 1}, columns mirrored when ``flip``;
    written into ``out`` (float32 (h, w), e.g. a slot of a batch) when given.

    points: (N, >=2) (y, x) 0-based in an image of in_size; pixel (y, x) maps to
    (floor(y * h / H), floor(x * w / W)), i.e. the output pixel whose footprint contains it.
    """
    h, w = out_size
    if out is None:
        out = np.zeros((h, w), dtype=np.float32)
    else:
        out.fill(0)
    if len(points):
        ys = np.minimum(points[:, 0].astype(np.int64) * h // in_size[0], h - 1)
        xs = np.minimum(points[:, 1].astype(np.int64) * w // in_size[1], w - 1)
        out[ys, w - 1 - xs if flip else xs] = 1.0
    return out
