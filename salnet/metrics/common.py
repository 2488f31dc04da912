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
import functools
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


_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("salnet_metrics_cache", default=None)
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("salnet_metrics_checked", default=False)


@contextlib.contextmanager
def shared_inputs():
    """Inside, :func:`as_batch` skips the NaN/inf scan and per-map statistics and fixation packings are
    computed once: ``score_batch`` checks every input once and then calls the nine metrics on the same
    tensors, which would otherwise each recompute min, max, sums and the fixated pixels."""
    cache, checked = _CACHE.set({}), _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(checked)
        _CACHE.reset(cache)


def memoised(fn):
    """Decorator for a metric: its statistics and packings are computed once per call (or once per
    :func:`shared_inputs` block when called inside one), its inputs still checked."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _CACHE.get() is not None:
            return fn(*args, **kwargs)
        token = _CACHE.set({})
        try:
            return fn(*args, **kwargs)
        finally:
            _CACHE.reset(token)

    return wrapper


def _memo(op: str, tensors: Sequence[torch.Tensor], compute):
    """``compute()`` once per (op, tensors) inside a :func:`memoised` call or :func:`shared_inputs`, else
    every time. Tensors are identified by storage address, layout and version counter; the cache keeps
    them alive so an address cannot be reused by another tensor while it is cached."""
    cache = _CACHE.get()
    if cache is None:
        return compute()
    key = (op, *((t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device, t._version) for t in tensors))
    if key not in cache:
        cache[key] = (tuple(tensors), compute())
    return cache[key][1]


def as_batch(x: torch.Tensor, name: str, dtype: torch.dtype) -> torch.Tensor:
    """(B,H,W) or (B,1,H,W) → (B,H,W) in ``dtype``; rejects other shapes and non-finite values."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    x = x.to(dtype)
    if not _CHECKED.get():
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


@dataclass(frozen=True)
class MapStats:
    """Per-image reductions of a (B,N) map, each (B,): min, max, sum and sum of squares over N pixels."""

    lo: torch.Tensor
    hi: torch.Tensor
    total: torch.Tensor
    sumsq: torch.Tensor
    n: int

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.n

    @property
    def constant(self) -> torch.Tensor:
        return constant_maps(self.lo, self.hi)


def map_stats(x: torch.Tensor) -> MapStats:
    """:class:`MapStats` of ``x`` (B,N): one pass of :func:`salnet.native.row_stats` for contiguous float64
    CPU maps when the C kernels are available, else separate amin/amax/sum/norm reductions (each one
    vectorised pass, where ``aminmax`` and ``std_mean`` run an order of magnitude slower on CPU)."""

    def compute():
        fused = native.row_stats(x)  # one pass in C where available
        if fused is not None:
            return MapStats(*fused, x.shape[1])
        sumsq = torch.linalg.vector_norm(x, dim=1).square()
        return MapStats(x.amin(1), x.amax(1), x.sum(1), sumsq, x.shape[1])

    return _memo("stats", [x], compute)


def map_pair_stats(x: torch.Tensor, y: torch.Tensor) -> tuple[MapStats, MapStats, torch.Tensor]:
    """(:class:`MapStats` of ``x``, of ``y``, the rows' dot products (B,)) of two (B,N) maps. With the C
    kernels one pass over both (:func:`salnet.native.pair_stats`), whose statistics are then cached for
    :func:`map_stats` too; else the separate reductions and one BLAS dot per row."""

    def compute():
        fused = native.pair_stats(x, y)
        if fused is None:
            return map_stats(x), map_stats(y), row_dot(x, y)
        n = x.shape[1]
        sx, sy = MapStats(*fused[:4], n), MapStats(*fused[4:8], n)
        # cached for the later map_stats calls where not cached yet (else the cached ones are returned)
        return _memo("stats", [x], lambda: sx), _memo("stats", [y], lambda: sy), fused[8]

    return _memo("pair", [x, y], compute)


CANCELLATION = 1e4  # Σx²/(N·var) above this: Σx² − N·mean² would lose > ~1e-9 of var; use two passes


def _shaky(x: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """(B,) rows whose one-pass variance is not trustworthy (spread tiny against the mean)."""
    st = map_stats(x)
    return var * st.n * CANCELLATION < st.sumsq


def map_std(x: torch.Tensor, ddof: int) -> torch.Tensor:
    """Per-image std of ``x`` (B,N) with ``ddof``; NaN for a constant map (it divides NSS/CC by 0)."""

    def compute():
        st = map_stats(x)
        var = (st.sumsq - st.total * st.mean).clamp_min(0) / (st.n - ddof)
        shaky = _shaky(x, var)
        if shaky.any():
            var = torch.where(shaky, x.var(1, correction=ddof), var)
        return nan_where(var.sqrt(), st.constant)

    return _memo(f"std{ddof}", [x], compute)


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
    """The fixated pixels of a (B,N) count map, left-packed to (B,F): ``rows``/``cols`` of the nonzero
    entries (row-major), ``pos`` their packed column, ``nf`` (B,) fixated pixels per image, ``valid``
    (B,F) bool, ``counts`` (B,F) the fixation counts."""

    rows: torch.Tensor
    cols: torch.Tensor
    pos: torch.Tensor
    nf: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor

    def pack_index(self) -> torch.Tensor:
        """(B,F) int64 the flat pixel index of each packed fixation (0 where not ``valid``)."""
        v = torch.zeros(self.valid.shape, dtype=torch.int64, device=self.valid.device)
        v[self.rows, self.pos] = self.cols
        return v

    def pack(self, m: torch.Tensor) -> torch.Tensor:
        """(B,N) map → (B,F) values at the fixated pixels (0 where not ``valid``)."""
        v = torch.zeros(self.valid.shape, dtype=m.dtype, device=m.device)
        v[self.rows, self.pos] = m[self.rows, self.cols]
        return v


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
        return x.nonzero(as_tuple=True)
    idx = native.flat_nonzero(x)  # the same block skipping in one C pass, for float64 maps
    if idx is not None:
        return idx // N, idx % N
    flat = x.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    cut = flat.numel() - flat.numel() % NONZERO_BLOCK
    blocks = flat[:cut].view(-1, NONZERO_BLOCK)
    if flat.dtype == torch.uint8 and flat.storage_offset() % 8 == 0:
        hit = blocks.view(torch.int64).amax(1) != 0  # a block of 64 flags as 8 words: 0 iff all are 0
    elif flat.dtype.is_floating_point:  # Σx² of a block: one pass, no cancellation, NaN/inf propagate
        hit = torch.linalg.vector_norm(blocks, dim=1) != 0
    else:
        hit = (blocks.amax(1) > 0) | (blocks.amin(1) < 0)
    hit = flatnonzero(hit)
    r, c = blocks.index_select(0, hit).nonzero(as_tuple=True)
    per = NONZERO_BLOCK
    # ascending: blocks in order, entries in order within a block, then the tail
    idx = torch.cat([hit[r] * per + c, flat[cut:].nonzero().flatten() + cut])
    return idx // N, idx % N


def left_pack(rows: torch.Tensor, B: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-packing of entries whose batch rows ``rows`` (ascending) are given: ``per`` (B,) entries per
    row, ``pos`` each entry's column in its row, and the width (the most entries in a row, at least 1)."""
    per = torch.bincount(rows, minlength=B)
    width = max(int(per.max()), 1) if rows.numel() else 1
    pos = torch.arange(rows.numel(), device=rows.device) - (per.cumsum(0) - per)[rows]
    return per, pos, width


def fixation_layout(fix: torch.Tensor) -> FixationLayout:
    """:class:`FixationLayout` of the count map ``fix`` (B,N); counts are ≥ 0, so nonzero = fixated."""

    def compute():
        rows, cols = sparse_nonzero(fix)
        nf, pos, fmax = left_pack(rows, fix.shape[0])
        valid = torch.arange(fmax, device=fix.device)[None, :] < nf[:, None]
        layout = FixationLayout(rows, cols, pos, nf, valid, torch.zeros(0))
        return FixationLayout(rows, cols, pos, nf, valid, layout.pack(fix))

    return _memo("layout", [fix], compute)


def pack_at_fixations(fix: torch.Tensor, *maps: torch.Tensor):
    """Gather at the fixated pixels of the count map ``fix`` (B,N), left-packed to (B, Fmax).

    Returns ``valid`` (B,F) bool, ``nf`` (B,) fixated pixels per image, ``counts`` (B,F) the fixation
    counts there, and a list with each of ``maps`` (B,N) gathered likewise.
    """
    layout = fixation_layout(fix)
    packed = [_memo("pack", [fix, m], lambda m=m: layout.pack(m)) for m in maps]
    return layout.valid, layout.nf, layout.counts, packed


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
        layout = fixation_layout(fixations.flatten(1))
        rows, cols = layout.rows, layout.cols
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
