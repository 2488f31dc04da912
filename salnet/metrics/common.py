"""Shared pieces of the metrics: input checks, resizing to the ground truth, per-map statistics, the packing
of fixated pixels, seeds. The statistics cache that the metrics of one batch share is
:class:`salnet.metrics.prepared.PreparedMaps`; the functions here compute, they do not cache.

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

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from salnet import native
from salnet.imresize import imresize

EPS = 2.220446049250313e-16  # MATLAB eps, as in the MIT code
VARIANTS = ("mit", "pysaliency")


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown metric variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def as_batch(x: torch.Tensor, name: str, dtype: torch.dtype, check: bool = True) -> torch.Tensor:
    """(B,H,W) or (B,1,H,W) → (B,H,W) in ``dtype``; rejects other shapes, and non-finite values when
    ``check`` (``score_batch`` checks its inputs itself, once, from sums it shares with the metrics)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    x = x.to(dtype)
    if check:
        check_finite(x, name, x.sum())
    return x


def check_finite(x: torch.Tensor, name: str, total: torch.Tensor) -> None:
    """Raise naming ``name`` and the batch items if ``x`` (B,...) holds NaN/inf. ``total``: any sum of
    all of ``x`` (a tensor of sums): finite iff no element is NaN/inf, barring an overflow, which the
    elementwise check then tells apart; one reduction instead of a mask over every pixel."""
    if not torch.isfinite(total).all() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"{name} contains NaN or inf values (batch items {bad}); fix the maps before scoring")


def resize_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic MATLAB-style resize of (B,h,w) to (B,H,W); identity when the size already matches."""
    return imresize(pred, size, "bicubic")


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


@dataclass(frozen=True)
class MapStats:
    """Per-image reductions of a (B, N) map, each (B,): ``min``, ``max``, ``sum`` and ``sum_sq`` (sum of
    squares) over its ``n`` pixels."""

    min: torch.Tensor
    max: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n: int

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    @property
    def constant(self) -> torch.Tensor:
        return constant_maps(self.min, self.max)


def map_stats(x: torch.Tensor) -> MapStats:
    """:class:`MapStats` of ``x`` (B,N): one pass of :func:`salnet.native.row_stats` for contiguous float64
    CPU maps when the C kernels are available, else separate amin/amax/sum/norm reductions (each one
    vectorised pass, where ``aminmax`` and ``std_mean`` run an order of magnitude slower on CPU)."""
    fused = native.row_stats(x)
    if fused is not None:
        return MapStats(*fused, x.shape[1])
    sum_sq = torch.linalg.vector_norm(x, dim=1).square()
    return MapStats(x.amin(1), x.amax(1), x.sum(1), sum_sq, x.shape[1])


def map_pair_stats(x: torch.Tensor, y: torch.Tensor) -> tuple[MapStats, MapStats, torch.Tensor] | None:
    """(:class:`MapStats` of ``x``, of ``y``, the rows' dot products (B,)) of two (B,N) maps in one pass over
    both (:func:`salnet.native.pair_stats`); None where the C kernels cannot take them (the caller then
    reduces each map apart, :func:`map_stats` and :func:`row_dot`)."""
    fused = native.pair_stats(x, y)
    if fused is None:
        return None
    x_min, x_max, x_sum, x_sum_sq, y_min, y_max, y_sum, y_sum_sq, dot = fused  # the kernel's 9 rows
    n = x.shape[1]
    return MapStats(x_min, x_max, x_sum, x_sum_sq, n), MapStats(y_min, y_max, y_sum, y_sum_sq, n), dot


CANCELLATION = 1e4  # Σx²/(N·var) above this: Σx² − N·mean² would lose > ~1e-9 of var; use two passes


def one_pass_unreliable(stats: MapStats, var: torch.Tensor) -> torch.Tensor:
    """(B,) the maps whose one-pass variance ``var`` (from ``stats``) is not trustworthy: spread tiny
    against the mean, so Σx² − N·mean² cancels."""
    return var * stats.n * CANCELLATION < stats.sum_sq


def map_std(x: torch.Tensor, stats: MapStats, ddof: int) -> torch.Tensor:
    """Per-image std of ``x`` (B,N) with ``ddof``, from its ``stats``; NaN for a constant map (it divides
    NSS/CC by 0)."""
    # one pass: var = (Σx² − Σx·mean)/(N − ddof), clamped at 0 against rounding
    var = (stats.sum_sq - stats.sum * stats.mean).clamp_min(0) / (stats.n - ddof)
    # where that cancels, torch's two-pass variance of those maps instead
    unreliable = one_pass_unreliable(stats, var)
    if unreliable.any():
        var = torch.where(unreliable, x.var(1, correction=ddof), var)
    return nan_where(var.sqrt(), stats.constant)


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) dot products of the rows of ``a`` and ``b`` (B,N): one BLAS dot per row, no temporary
    (batched ``einsum``/``bmm`` with a 1-wide side are many times slower on CPU)."""
    return torch.stack([torch.dot(u, v) for u, v in zip(a, b)])


_WORKSPACE = threading.local()


def workspace(name: str, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reusable (n,) buffer per thread, name, dtype and device. The per-pixel passes of KLD, SIM and
    AUC-Judd run image by image in such buffers: a fresh multi-MB tensor per call costs more in page
    faults (the allocator hands large blocks back to the OS) than the arithmetic done in it."""
    bufs = _WORKSPACE.__dict__.setdefault("bufs", {})
    key = (name, dtype, torch.device(device))
    buf = bufs.get(key)
    if buf is None or buf.numel() < n:
        buf = bufs[key] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n]


def log_(x: torch.Tensor) -> torch.Tensor:
    """In-place natural log of a contiguous tensor; numpy's on CPU (its SIMD log is ~1.5× faster
    single-threaded than torch's on two threads, and the log dominates KLD)."""
    if x.device.type == "cpu" and x.is_contiguous() and x.dtype in (torch.float32, torch.float64):
        arr = x.numpy()
        np.log(arr, out=arr)
        return x
    return x.log_()


@dataclass(frozen=True)
class FixationLayout:
    """The fixated pixels of a (B, N) fixation count map, packed into a (B, F) table: row b lists image b's
    fixated pixels in ascending order, from column 0 (F = the most fixated pixels of any image, at least 1).

    For each of the P fixated pixels of the batch, in row-major order: ``image`` (P,) its image, ``pixel``
    (P,) its flat index in the image, ``slot`` (P,) its column in the table. Per image: ``n_fixated`` (B,)
    its fixated pixels. Per table entry: ``valid`` (B, F) bool, whether it holds a pixel; ``counts`` (B, F)
    the fixation count there (0 where not valid)."""

    image: torch.Tensor
    pixel: torch.Tensor
    slot: torch.Tensor
    n_fixated: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor

    def pixel_table(self) -> torch.Tensor:
        """(B, F) int64: the flat pixel index of each table entry (0 where not ``valid``)."""
        table = torch.zeros(self.valid.shape, dtype=torch.int64, device=self.valid.device)
        table[self.image, self.slot] = self.pixel
        return table

    def pack(self, m: torch.Tensor) -> torch.Tensor:
        """(B, F): the values of the (B, N) map ``m`` at the fixated pixels (0 where not ``valid``)."""
        table = torch.zeros(self.valid.shape, dtype=m.dtype, device=m.device)
        table[self.image, self.slot] = m[self.image, self.pixel]
        return table


NONZERO_BLOCK = 64


def flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Flat int64 indices of the true entries of a bool tensor (numpy's scan on CPU: ~3× torch's)."""
    if mask.device.type == "cpu" and mask.is_contiguous():
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().view(-1)


def sparse_nonzero(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.nonzero(as_tuple=True)`` of a sparse (B,N) map, row-major. A full ``nonzero`` scan costs
    ~10 reductions; fixation maps are nearly all zero, so blocks with a nonzero entry (Σx² > 0) are
    found by one block reduction and only those blocks are scanned. NaN counts as nonzero, as in
    ``nonzero``. An entry below 1e-154 in magnitude (its square underflows) is found only when its
    block holds a larger one: no fixation count is that small."""
    B, N = x.shape
    if x.device.type != "cpu":
        rows, cols = x.nonzero(as_tuple=True)
        return rows, cols
    flat_index = native.flat_nonzero(x)  # the same block skipping in one C pass, for float64 maps
    if flat_index is not None:
        return flat_index // N, flat_index % N
    flat = x.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    cut = flat.numel() - flat.numel() % NONZERO_BLOCK  # whole blocks before, the tail after
    blocks = flat[:cut].view(-1, NONZERO_BLOCK)
    # which blocks hold a nonzero entry: one reduction per block
    if flat.dtype == torch.uint8 and flat.storage_offset() % 8 == 0:
        hit = blocks.view(torch.int64).amax(1) != 0  # a block of 64 flags as 8 words: 0 iff all are 0
    elif flat.dtype.is_floating_point:  # Σx² of a block: one pass, no cancellation, NaN/inf propagate
        hit = torch.linalg.vector_norm(blocks, dim=1) != 0
    else:
        hit = (blocks.amax(1) > 0) | (blocks.amin(1) < 0)
    hit_blocks = flatnonzero(hit)
    # scan only those blocks, then the tail; ascending: blocks in order, entries in order within a block
    block, offset = blocks.index_select(0, hit_blocks).nonzero(as_tuple=True)
    flat_index = torch.cat([hit_blocks[block] * NONZERO_BLOCK + offset, flat[cut:].nonzero().flatten() + cut])
    return flat_index // N, flat_index % N


def left_pack(row_of_entry: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Packing of entries, given the row of each (``row_of_entry``, ascending), to the left of a table of
    ``n_rows`` rows: (entries per row (n_rows,), each entry's column, the table's width = the most entries
    in a row, at least 1)."""
    per_row = torch.bincount(row_of_entry, minlength=n_rows)
    width = max(int(per_row.max()), 1) if row_of_entry.numel() else 1
    first_of_row = per_row.cumsum(0) - per_row  # index of each row's first entry
    column = torch.arange(row_of_entry.numel(), device=row_of_entry.device) - first_of_row[row_of_entry]
    return per_row, column, width


def fixation_layout(fix: torch.Tensor) -> FixationLayout:
    """:class:`FixationLayout` of the count map ``fix`` (B,N); counts are ≥ 0, so nonzero = fixated."""
    image, pixel = sparse_nonzero(fix)
    n_fixated, slot, width = left_pack(image, fix.shape[0])
    valid = torch.arange(width, device=fix.device)[None, :] < n_fixated[:, None]
    without_counts = FixationLayout(image, pixel, slot, n_fixated, valid, torch.zeros(0))
    return FixationLayout(image, pixel, slot, n_fixated, valid, without_counts.pack(fix))


def mean_at_fixations(values: torch.Tensor, layout: FixationLayout, variant: str) -> torch.Tensor:
    """Per image mean over fixations of ``values`` (B, F) packed by ``layout``: each fixated pixel once
    (``mit``) or weighted by its fixation count (``pysaliency``). NaN where there is no fixation or a value
    is NaN."""
    valid = layout.valid
    weight = valid.to(values.dtype) if variant == "mit" else layout.counts.to(values.dtype) * valid
    mean = (values.nan_to_num(nan=0.0) * weight).sum(1) / weight.sum(1)
    undefined = (layout.n_fixated == 0) | (values.isnan() & valid).any(1)
    return torch.where(undefined, torch.full_like(mean, float("nan")), mean)


def image_seeds(seed: int, fixations: torch.Tensor, keys: Sequence[str | int] | None,
                layout: FixationLayout | None = None) -> list[int]:
    """One 63-bit seed per image from (seed, key). Without keys, the key is the image's fixation
    pattern in ``fixations`` (B, H, W) (``layout``: its :class:`FixationLayout`, when known), so an image
    gets the same random draws whatever batch or position it is scored in."""
    if keys is None:
        layout = fixation_layout(fixations.flatten(1)) if layout is None else layout
        image, pixel = layout.image.cpu().numpy(), layout.pixel.cpu().numpy()
        bounds = np.searchsorted(image, np.arange(fixations.shape[0] + 1))  # each image's run of pixels
        size = tuple(fixations.shape[1:])
        keys = [f"{size}:{pixel[lo:hi].tobytes().hex()}" for lo, hi in zip(bounds, bounds[1:])]
    seeds = []
    for key in keys:
        h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8)
        seeds.append(int.from_bytes(h.digest(), "little") >> 1)
    return seeds


def generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
