"""Shared pieces of the metrics: input checks, resizing to the ground truth, normalisations, seeds.

Every metric works on a batch of B images of one ground-truth size (H, W):
- ``pred``: (B, h, w) or (B, 1, h, w) prediction, any real values, any size; resized to (H, W) with
  MATLAB ``imresize`` bicubic semantics as the MIT benchmark does.
- ``fixations``: (B, H, W) fixation *count* map (binary maps are counts of 0/1). The MIT conventions use
  ``fixations > 0`` (each fixated pixel once); pysaliency's variants weight by the count (one term per
  fixation, duplicates included).
- ``gt_map``: (B, H, W) continuous ground-truth map.
Values are returned per image as a (B,) tensor in the computation dtype (float64 by default); an
undefined value (no fixations, a constant map where the formula divides by its spread) is NaN there and
is reported as undefined, never averaged, by :mod:`salnet.metrics.score`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from salnet.imresize import imresize

EPS = 2.220446049250313e-16  # MATLAB eps, as in the MIT code
VARIANTS = ("mit", "pysaliency")


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown metric variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


_VALIDATED: contextvars.ContextVar[bool] = contextvars.ContextVar("salnet_metrics_validated", default=False)


@contextlib.contextmanager
def validated_inputs():
    """Inside, :func:`as_batch` skips the NaN/inf scan: ``score_batch`` checks every input once and then
    calls the nine metrics on the same tensors."""
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def as_batch(x: torch.Tensor, name: str, dtype: torch.dtype) -> torch.Tensor:
    """(B,H,W) or (B,1,H,W) → (B,H,W) in ``dtype``; rejects other shapes and non-finite values."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    x = x.to(dtype)
    # a sum is finite iff no element is NaN/inf (barring overflow, which the full check then reports);
    # one reduction instead of an elementwise mask over every pixel
    if not _VALIDATED.get() and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"{name} contains NaN or inf values (batch items {bad}); fix the maps before scoring")
    return x


def resize_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic MATLAB-style resize of (B,h,w) to (B,H,W); identity when the size already matches."""
    return imresize(pred, tuple(size), "bicubic")


CONSTANT_RTOL = 1e-12  # spread below this fraction of the magnitude = a constant map (resize rounding noise)


def constant_maps(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the maps whose values (min ``lo``, max ``hi``) are constant. A constant map resized
    bicubically is constant only up to rounding (~1e-17); dividing by that noise would turn it into an
    arbitrary map, so such spreads count as zero."""
    return (hi - lo) <= CONSTANT_RTOL * torch.maximum(lo.abs(), hi.abs())


def nan_where(x: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``x`` (B, ...) with NaN where ``bad`` (B,) is true."""
    bad = bad.reshape(-1, *[1] * (x.ndim - 1))
    return torch.where(bad, torch.full_like(x, float("nan")), x)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per image (x - min) / (max - min); a constant image becomes NaN (0/0), as in MATLAB."""
    lo, hi = x.flatten(1).aminmax(dim=1)
    spread = nan_where(hi - lo, constant_maps(lo, hi))
    return (x - lo.view(-1, 1, 1)) / spread.view(-1, 1, 1)


def sum_normalise(x: torch.Tensor) -> torch.Tensor:
    """Per image x / sum(x), skipped for an all-zero image (MATLAB's ``if any(map(:))``)."""
    s = x.flatten(1).sum(1)[:, None, None]
    nonzero = (x != 0).flatten(1).any(1)[:, None, None]
    return torch.where(nonzero, x / torch.where(s == 0, torch.ones_like(s), s), x)


def standardise(x: torch.Tensor, ddof: int) -> torch.Tensor:
    """Per image (x - mean) / std with ``ddof`` (MATLAB std: 1; numpy/pysaliency: 0); constant → NaN."""
    flat = x.flatten(1)
    std, mean = torch.std_mean(flat, dim=1, correction=ddof)
    std = nan_where(std, constant_maps(*flat.aminmax(dim=1)))
    return (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)


def to_density(x: torch.Tensor) -> torch.Tensor:
    """pysaliency's ``convert_saliency_map_to_density``: shift negative maps to min 0, divide by the sum
    (a zero map becomes uniform)."""
    lo = x.flatten(1).min(1).values[:, None, None]
    x = torch.where(lo < 0, x - lo, x)
    s = x.flatten(1).sum(1)[:, None, None]
    uniform = torch.full_like(x, 1.0 / x[0].numel())
    return torch.where(s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), uniform)


def fixation_index(fix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the fixated pixels of a count map (B, N); counts are ≥ 0, so ``!= 0`` is ``> 0``
    and ``nonzero`` needs no mask tensor."""
    return fix.nonzero(as_tuple=True)


def pack_at_fixations(fix: torch.Tensor, *maps: torch.Tensor):
    """Gather at the fixated pixels of the count map ``fix`` (B,N), left-packed to (B, Fmax).

    Returns ``valid`` (B,F) bool, ``nf`` (B,) fixated pixels per image, ``counts`` (B,F) the fixation
    counts there, and a list with each of ``maps`` (B,N) gathered likewise. One nonzero scan serves all:
    this is on the hot path of every fixation-based metric.
    """
    rows, cols = fixation_index(fix)
    B = fix.shape[0]
    nf = torch.bincount(rows, minlength=B)
    fmax = max(int(nf.max()), 1) if rows.numel() else 1
    pos = torch.arange(rows.numel(), device=fix.device) - (nf.cumsum(0) - nf)[rows]
    valid = torch.arange(fmax, device=fix.device)[None, :] < nf[:, None]
    packed = []
    for m in (fix, *maps):
        v = torch.zeros((B, fmax), dtype=m.dtype, device=m.device)
        v[rows, pos] = m[rows, cols]
        packed.append(v)
    return valid, nf, packed[0], packed[1:]


def mean_at_fixations(values: torch.Tensor, counts: torch.Tensor, valid: torch.Tensor, nf: torch.Tensor,
                      variant: str) -> torch.Tensor:
    """Per image mean over fixations of packed ``values`` (B,F) (see :func:`pack_at_fixations`): each
    fixated pixel once (``mit``) or weighted by its count (``pysaliency``). NaN where there is no fixation
    or a value is NaN."""
    w = valid.to(values.dtype) if variant == "mit" else counts.to(values.dtype) * valid
    out = (values.nan_to_num(nan=0.0) * w).sum(1) / w.sum(1)
    bad = (nf == 0) | (values.isnan() & valid).any(1)
    return torch.where(bad, torch.full_like(out, float("nan")), out)


def image_seeds(seed: int, fixations: torch.Tensor, keys: Sequence[str | int] | None) -> list[int]:
    """One 63-bit seed per image from (seed, key). Without keys, the key is the image's fixation
    pattern, so an image gets the same random draws whatever batch or position it is scored in."""
    if keys is None:
        rows, cols = fixation_index(fixations.flatten(1))
        rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
        bounds = np.searchsorted(rows, np.arange(fixations.shape[0] + 1))
        keys = [f"{tuple(fixations.shape[1:])}:{cols[lo:hi].tobytes().hex()}" for lo, hi in zip(bounds, bounds[1:])]
    seeds = []
    for key in keys:
        h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8)
        seeds.append(int.from_bytes(h.digest(), "little") >> 1)
    return seeds


def generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
