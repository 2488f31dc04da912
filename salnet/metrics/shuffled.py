"""Negatives for the shuffled AUC: fixations of *other* images mapped onto this image's grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from salnet.metrics.common import check_variant, generator, image_seeds

N_OTHER = 10  # Borji et al. / MIT AUC_shuffled: union of the fixations of M = 10 other images


def scale_points(points: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """(N,2) int (y, x) points of an image of size ``src`` → the grid of size ``dst`` (truncating, as
    pysaliency's FullShuffledNonfixationProvider does)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    y = np.clip((pts[:, 0] * dst[0] / src[0]).astype(np.int64), 0, dst[0] - 1)
    x = np.clip((pts[:, 1] * dst[1] / src[1]).astype(np.int64), 0, dst[1] - 1)
    return np.stack([y, x], 1)


def other_fixations(
    points: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    index: int,
    *,
    n_other: int = N_OTHER,
    variant: str = "mit",
    seed: int = 0,
    key: str | int | None = None,
) -> torch.Tensor:
    """The ``other`` map of :func:`salnet.metrics.sauc` for image ``index`` of a dataset.

    ``points[i]``: (N_i, 2) int (y, x) fixations of image i (duplicates allowed); ``sizes[i]``: (H_i, W_i).
    ``mit``: the fixations of ``n_other`` other images drawn at random (seeded by ``seed`` and ``key``,
    default the index) — ``pysaliency``: of every other image. Returns (H, W) float64 counts at the
    size of image ``index``.
    """
    check_variant(variant)
    n = len(points)
    if len(sizes) != n:
        raise ValueError(f"{len(points)} point arrays but {len(sizes)} sizes")
    others = [i for i in range(n) if i != index]
    if variant == "mit" and len(others) > n_other:
        probe = torch.zeros((1, 1, 1))
        (s,) = image_seeds(seed, probe, [index if key is None else key])
        pick = torch.randperm(len(others), generator=generator(s))[:n_other].tolist()
        others = [others[i] for i in sorted(pick)]
    H, W = sizes[index]
    out = np.zeros((H, W), dtype=np.float64)
    for i in others:
        if len(points[i]):
            yx = scale_points(points[i], sizes[i], (H, W))
            np.add.at(out, (yx[:, 0], yx[:, 1]), 1.0)
    return torch.from_numpy(out)
