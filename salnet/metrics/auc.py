"""The three ROC metrics of the MIT benchmark: AUC-Judd, AUC-Borji and shuffled AUC (sAUC).

Inputs and outputs follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w), ``fixations`` (B,H,W) counts,
one value per image (B,) with NaN where undefined (no fixations, constant prediction). The random
parts (Judd's jitter, Borji's uniform negatives, sAUC's draws from other images' fixations) use one
generator per image seeded from (``seed``, key), so a value does not depend on the batch it is in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from salnet import native
from salnet.metrics.common import (
    FixationLayout,
    as_batch,
    check_variant,
    constant_maps,
    fixation_layout,
    flatnonzero,
    generator,
    image_seeds,
    left_pack,
    map_stats,
    memoised,
    nan_where,
    resize_to,
    workspace,
)

JUDD_JITTER = 1e-7  # MIT AUC_Judd: saliencyMap + rand(size)/10000000


def _trapz(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule along the last axis (MATLAB ``trapz(x, y)``)."""
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1])).sum(-1) / 2


def matlab_thresholds(step: float, dtype: torch.dtype) -> torch.Tensor:
    """MATLAB's ``0:step:1`` (first half k*step, second half 1-(n-k)*step, endpoint included).

    MIT's AUC-Borji/sAUC sweep ``0:step:max`` with max ≤ 1 after min-max normalisation; thresholds
    above the split's max yield the point (0, 0) again and add no area, so the full grid to 1 gives
    identical values while letting every split share one grid.
    """
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    n = int(math.floor(1 / step + 1e-10))
    k = torch.arange(n + 1, dtype=dtype)
    first = k * step
    end = 1.0 if abs(n * step - 1) < 1e-10 else n * step
    second = end - (n - k) * step
    return torch.where(k <= n / 2, first, second)


def _prepare(pred, fixations, dtype):
    """Flat resized prediction S (B,N) and fixation counts (B,H,W)."""
    fix = as_batch(fixations, "fixations", dtype)
    return resize_to(as_batch(pred, "pred", dtype), fix.shape[-2:]).flatten(1), fix


def _range(S):
    """min (B,) and max − min (B,), NaN for a constant map. MIT min–max normalises S; AUCs only need the
    normalised values at the sampled pixels, so callers normalise small gathered arrays, not the map."""
    st = map_stats(S)
    return st.lo, nan_where(st.hi - st.lo, st.constant)


JUDD_BINS = 1 << 15  # value bins per image for AUC-Judd's counting pass
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def judd_jitter(seed, index) -> np.ndarray:
    """MIT's jitter U(0,1)·1e-7 for the pixels ``index`` (flat, int ≥ 0) of the images seeded ``seed``
    (an int or an array broadcasting with ``index``); float64, the shape of the broadcast.

    A counter-based generator (splitmix64 of seed + index): any pixel's jitter can be drawn alone, so
    AUC-Judd draws it only for the pixels whose comparisons it can change. The full map
    ``judd_jitter(s, np.arange(H * W))`` gives the identical jitter to another implementation.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) * _GOLDEN + np.asarray(seed, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (JUDD_JITTER / 2.0**53)


def _count_at_or_above_fixated(S: torch.Tensor, layout: FixationLayout,
                               seeds: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """#(S + J ≥ θ) over all N pixels for every threshold θ = S + J at the fixated pixels of each image.

    S (B,N) raw values; ``layout`` the fixations' :class:`FixationLayout`; J the jitter of
    :func:`judd_jitter` with ``seeds[b]`` for image b, or 0 when ``seeds`` is None. Returns ``th`` (B,F)
    the thresholds ascending (+inf pads after the nf valid ones) and ``above`` (B,F) int64 their counts.

    Each pixel falls in one of ``JUDD_BINS`` equal bins of its raw value; the bin index is monotone in
    the value. A pixel two bins or more above the bin of θ's largest possible value (raw + 1e-7) is
    above θ whatever its jitter; one two bins or more below the bin of raw − 2e-7 is below it; the rest
    ("close" pixels, the fixated ones among them) get their jitter and are compared with the thresholds
    exactly. One histogram pass instead of a binary search per pixel, and jitter for a few pixels, not N.
    The per-pixel pass (bin, histogram, close-bin lookup) is one C loop where :mod:`salnet.native` is
    available, else :func:`_judd_pass`; everything after it is batched over the close pixels.
    """
    B, N = S.shape
    K, dev = JUDD_BINS, S.device
    R = K + 3  # bins per image: pixels land in 1..K+1, the thresholds' margins reach 0..K+2
    st = map_stats(S)
    spread = st.hi - st.lo
    ok = spread > 0
    scale = torch.where(ok, K / torch.where(ok, spread, torch.ones_like(spread)), torch.zeros_like(spread))
    # bin = trunc((S − lo)·scale + 1.5). Folding lo into the shift (one pass) is exact to far below a
    # bin unless |lo| dwarfs the spread; then lo is subtracted first (two more passes).
    subtract = bool((st.lo.abs() * scale > 2.0**30).any())
    shift = 1.5 - (torch.zeros_like(scale) if subtract else st.lo * scale)
    valid = layout.valid
    raw = layout.pack(S)
    th = raw
    if seeds is not None:  # plain adds: a fixated pixel gets the same value as threshold and as close pixel
        sd = np.asarray(seeds, dtype=np.uint64)
        th = raw + torch.from_numpy(judd_jitter(sd[:, None], layout.pack_index().cpu().numpy())).to(raw)

    def bin_of(v):  # the bin of a few values, computed apart from the pixels' and so possibly one bin off
        # in rounding (the ±1 margins allow for it), clamped to the pixels' range
        v = v - st.lo[:, None] if subtract else v
        return torch.addcmul(shift[:, None], v, scale[:, None]).floor().clamp(1, K + 1).to(torch.int64)

    hi_bin = bin_of(raw + (0.0 if seeds is None else JUDD_JITTER)) + 1
    lo_bin = bin_of(raw - (0.0 if seeds is None else 2 * JUDD_JITTER)) - 1
    # bins lo_bin..hi_bin of every threshold are marked: +1/−1 at the ends, then a running sum
    edges = torch.zeros((B, R + 1), dtype=torch.int64, device=dev)
    edges.scatter_add_(1, lo_bin, valid.long()).scatter_add_(1, hi_bin + 1, -valid.long())
    marked = edges.cumsum(1)[:, :R] > 0
    hist_buf = workspace("judd_hist", B * R, torch.int64, dev).view(B, R)
    fused = native.judd_pass(S, st.lo, scale, shift, subtract, marked, K + 1, hist_buf,  # one pass in C
                             workspace("judd_close", B * N, torch.int64, dev))  # if available
    if fused is not None:
        hist, close = fused
    else:
        hist, close = _judd_pass(S, st.lo.tolist(), scale.tolist(), shift.tolist(), subtract, marked)
    rows = close // N
    cum = hist.cumsum(1)
    far = cum[:, -1:] - cum.gather(1, hi_bin)  # (B,F) far pixels above θ's marked range, in layout order
    cols = close - rows * N
    vals = S.view(-1).index_select(0, close)
    if seeds is not None:
        vals = vals + torch.from_numpy(judd_jitter(sd[rows.cpu().numpy()], cols.cpu().numpy())).to(vals)
    th, order = torch.where(valid, th, torch.full_like(th, math.inf)).sort(1)
    # each close value's rank among its image's thresholds, (B, most close pixels) padded with −inf (rank 0)
    _, pos, width = left_pack(rows, B)
    padded = torch.full((B, width), -math.inf, dtype=S.dtype, device=dev)
    padded[rows, pos] = vals
    F = th.shape[1]
    rank = torch.searchsorted(th, padded, right=True)  # thresholds ≤ each close value, 0..F
    rank += torch.arange(B, device=dev)[:, None] * (F + 1)
    near = torch.bincount(rank.view(-1), minlength=B * (F + 1)).view(B, F + 1)
    near = near.flip(1).cumsum(1).flip(1)[:, 1:]  # (B,F) #(close ≥ th[k]); the pads' rank-0 bucket dropped
    return th, torch.gather(far, 1, order) + near


def _judd_pass(S: torch.Tensor, lo: list[float], scale: list[float], shift: list[float], subtract: bool,
               marked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch path of :func:`salnet.native.judd_pass`: the histogram (B, R) of the pixels whose bin is not
    ``marked`` (B, R) and the flat indices of those whose bin is. The per-pixel passes run image by image,
    so that one image's buffers stay in cache between them."""
    B, N = S.shape
    R, dev = marked.shape[1], S.device
    scratch = workspace("judd", N, S.dtype, dev)
    bins = workspace("judd_bins", B * N, torch.int32, dev)
    is_close = workspace("judd_close", B * N, torch.bool, dev)
    hist = torch.zeros((B, R), dtype=torch.int64, device=dev)
    for b in range(B):
        if subtract:
            torch.sub(S[b], lo[b], out=scratch).mul_(scale[b]).add_(shift[b])
        else:
            torch.add(shift[b], S[b], alpha=scale[b], out=scratch)
        image_bins = bins[b * N:(b + 1) * N]
        image_bins.copy_(scratch)  # truncation (all values ≥ 1)
        hist[b] = torch.bincount(image_bins, minlength=R)
        torch.index_select(marked[b], 0, image_bins, out=is_close[b * N:(b + 1) * N])
    close = flatnonzero(is_close)
    gbins = bins.index_select(0, close) + (close // N) * R
    hist.view(-1).index_add_(0, gbins, torch.full_like(close, -1))  # the close pixels are counted apart
    return hist, close


@memoised
def auc_judd(
    pred: torch.Tensor,
    fixations: torch.Tensor,
    *,
    jitter: bool = True,
    seed: int = 0,
    keys: Sequence[str | int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """AUC-Judd (MIT ``AUC_Judd.m``): thresholds at the fixated values; tp = i/Nfix,
    fp = (#(S ≥ θ_i) − i)/(Npix − Nfix); trapz with (0,0) and (1,1). Returns (B,) in [0, 1].

    The jitter U(0,1)·1e-7 (:func:`judd_jitter`, one seed per image) is added to the raw map before
    normalising, as in MATLAB; the min–max normalisation itself cannot change the ranking, so it is not
    applied (only its 0/0 check).
    """
    S, fix = _prepare(pred, fixations, dtype)
    B, N = S.shape
    layout = fixation_layout(fix.flatten(1))
    valid, nf = layout.valid, layout.nf
    st = map_stats(S)
    # MATLAB normalises the jittered map: only a spread below the jitter's counts as constant
    constant = constant_maps(st.lo, st.hi + JUDD_JITTER) if jitter else st.constant
    th, above_asc = _count_at_or_above_fixated(S, layout, image_seeds(seed, fix, keys) if jitter else None)
    F = th.shape[1]
    i = torch.arange(1, F + 1, device=S.device)[None, :]
    k = (nf[:, None] - i).clamp_min(0)  # the i-th largest valid threshold sits at ascending index nf - i
    above = torch.gather(above_asc, 1, k).to(dtype)
    nfd, idd = nf.to(dtype)[:, None], i.to(dtype)
    tp = torch.where(valid, idd / nfd, torch.ones_like(above))
    fp = torch.where(valid, (above - idd) / (N - nfd), torch.ones_like(above))
    zero, one = torch.zeros_like(tp[:, :1]), torch.ones_like(tp[:, :1])
    auc = _trapz(torch.cat([zero, fp, one], 1), torch.cat([zero, tp, one], 1))
    return nan_where(auc, (nf == 0) | constant)


def _threshold_counts(S: torch.Tensor, idx: torch.Tensor, use: torch.Tensor, lo: torch.Tensor, spread: torch.Tensor,
                      T: torch.Tensor) -> torch.Tensor:
    """(B, len(T)+1) int64: per image b, the values S[b, idx[b, s, j]] (``idx`` (B, splits, width) pixel
    indices) of every split s, only j < ``use[b]``, min–max normalised with ``lo``, ``spread`` (B,), counted
    by how many of the ascending thresholds ``T`` are at or below them. One C pass over the sampled pixels
    (:func:`salnet.native.threshold_counts`) where available, else gather, bucketize and one bincount."""
    fused = native.threshold_counts(S, idx, use, lo, spread, T)
    if fused is not None:
        return fused
    B, splits, width = idx.shape
    nb = len(T) + 2  # counts 0..len(T), and one bucket for the unused entries, dropped
    v = torch.gather(S, 1, idx.to(S.device).flatten(1)).view(B, splits, width)
    b = torch.bucketize((v - lo[:, None, None]) / spread[:, None, None], T, right=True)
    unused = torch.arange(width, device=S.device)[None, None, :] >= use.to(S.device)[:, None, None]
    b = b.masked_fill(unused, nb - 1) + torch.arange(B, device=S.device)[:, None, None] * nb
    return torch.bincount(b.flatten(), minlength=B * nb).view(B, nb)[:, :-1]


def _stepped_auc(pos: torch.Tensor, npos: torch.Tensor, neg: torch.Tensor, nneg: torch.Tensor, splits: int,
                 T: torch.Tensor) -> torch.Tensor:
    """Mean over splits of the stepped-threshold AUC, from the :func:`_threshold_counts` of the positives
    ``pos`` and of all ``splits`` splits' negatives ``neg`` (B, len(T)+1), ``npos`` positives and ``nneg``
    negatives per split (B,). Every split of an image has ``nneg`` negatives and the same tp, and the trapezoid
    rule is linear in fp, so the mean of the splits' AUCs is the AUC of their mean fp. → (B,)"""
    def at_or_above(c):  # (B, len(T)): entries ≥ T[t] = with at least t+1 thresholds at or below them
        return c.flip(1).cumsum(1).flip(1)[:, 1:].to(T.dtype)

    tp = (at_or_above(pos) / npos[:, None].to(T.dtype)).flip(-1)  # thresholds descending
    fp = (at_or_above(neg) / (nneg * splits)[:, None].to(T.dtype)).flip(-1)
    zero, one = torch.zeros_like(fp[:, :1]), torch.ones_like(fp[:, :1])
    return _trapz(torch.cat([zero, fp, one], -1), torch.cat([zero, tp, one], -1))


@memoised
def auc_borji(
    pred: torch.Tensor,
    fixations: torch.Tensor,
    *,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
    keys: Sequence[str | int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """AUC-Borji (MIT ``AUC_Borji.m``): per split, Nfix negatives drawn uniformly with replacement from
    all pixels; thresholds ``0:step:max``; mean over ``n_splits``. Returns (B,) in [0, 1]."""
    S, fix = _prepare(pred, fixations, dtype)
    lo, spread = _range(S)
    layout = fixation_layout(fix.flatten(1))
    nf = layout.nf
    B, N = S.shape
    F = layout.valid.shape[1]
    T = matlab_thresholds(step, S.dtype).to(S.device)
    idx = torch.zeros((B, n_splits, F), dtype=torch.long)
    for b, (s, k) in enumerate(zip(image_seeds(seed, fix, keys), nf.tolist())):
        # MATLAB draws r = randi(Npix, [Nfix, Nsplits]); one generator per image
        idx[b, :, :k] = torch.randint(0, N, (k, n_splits), generator=generator(s)).T
    pos = _threshold_counts(S, layout.pack_index()[:, None, :], nf, lo, spread, T)
    neg = _threshold_counts(S, idx, nf, lo, spread, T)
    auc = _stepped_auc(pos, nf, neg, nf, n_splits, T)
    return nan_where(auc, (nf == 0) | spread.isnan())


def _exact_auc(pos: torch.Tensor, wpos: torch.Tensor, neg: torch.Tensor, wneg: torch.Tensor) -> torch.Tensor:
    """Area under the full ROC (all thresholds) = P(neg < pos) + ½ P(neg = pos), weighted; 0-dim."""
    q, order = neg.sort()
    cw = torch.cat([torch.zeros(1, dtype=wneg.dtype, device=wneg.device), wneg[order].cumsum(0)])
    lt = cw[torch.searchsorted(q, pos, side="left")]
    le = cw[torch.searchsorted(q, pos, side="right")]
    return ((lt + le) / 2 * wpos).sum() / (wpos.sum() * wneg.sum())


def _smallest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (rows, k) of each row's k smallest ``keys`` (rows, m): the set ``argsort[:, :k]`` takes,
    in another order (the caller only counts them). A partial selection, of the m − k largest when k is
    most of m (sAUC's usual case), instead of a full sort."""
    m = keys.shape[1]
    if k <= m // 2:
        return keys.topk(k, dim=1, largest=False, sorted=False).indices
    keep = torch.ones(keys.shape, dtype=torch.bool)
    keep.scatter_(1, keys.topk(m - k, dim=1, largest=True, sorted=False).indices, False)
    return keep.nonzero()[:, 1].view(-1, k)


@memoised
def sauc(
    pred: torch.Tensor,
    fixations: torch.Tensor,
    other: torch.Tensor,
    *,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
    keys: Sequence[str | int] | None = None,
    variant: str = "mit",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Shuffled AUC. ``other`` (B,H,W) counts the fixations of other images at this image's size
    (:func:`salnet.metrics.shuffled.other_fixations` builds it).

    - ``mit`` (``AUC_shuffled.m``): negatives = min(Nfix, #locations) distinct locations drawn without
      replacement from ``other > 0`` per split; stepped thresholds; mean over ``n_splits``.
    - ``pysaliency``: exact AUC over all thresholds, positives = every fixation, negatives = every
      fixation of the other images (counts as weights), no sampling.
    Returns (B,) in [0, 1]; NaN where the image or the other images have no fixations.
    """
    check_variant(variant)
    S, fix = _prepare(pred, fixations, dtype)
    lo, spread = _range(S)
    oth = as_batch(other, "other", dtype)
    if oth.shape != fix.shape:
        raise ValueError(f"other {tuple(oth.shape)} must have the fixations' shape {tuple(fix.shape)}")
    fixf, othf = fix.flatten(1), oth.flatten(1)
    B = S.shape[0]
    if variant == "pysaliency":
        out = torch.full((B,), float("nan"), dtype=dtype, device=S.device)
        fl, ol = fixation_layout(fixf), fixation_layout(othf)
        pos, neg = fl.pack(S), ol.pack(S)
        fn, on, bad = fl.nf.tolist(), ol.nf.tolist(), spread.isnan().tolist()
        for b in range(B):
            if fn[b] and on[b] and not bad[b]:
                out[b] = _exact_auc(pos[b, :fn[b]], fl.counts[b, :fn[b]], neg[b, :on[b]], ol.counts[b, :on[b]])
        return out
    layout, others = fixation_layout(fixf), fixation_layout(othf)
    nf, nloc = layout.nf, others.nf
    use = torch.minimum(nf, nloc)
    K = max(int(use.max()), 1)
    negloc = others.pack_index().cpu()  # the other images' fixated locations
    idx = torch.zeros((B, n_splits, K), dtype=torch.long)
    for b, (s, k, m) in enumerate(zip(image_seeds(seed, fix, keys), use.tolist(), nloc.tolist())):
        if k == 0:
            continue
        if k == m:  # the first m of a permutation of all m locations: all of them, in any order
            idx[b, :, :k] = negloc[b, :m]
        else:  # randperm per split = argsort of uniform keys; take the first Nfixations_oth
            idx[b, :, :k] = negloc[b, :m][_smallest(torch.rand((n_splits, m), generator=generator(s),
                                                                dtype=torch.float64), k)]
    T = matlab_thresholds(step, S.dtype).to(S.device)
    pos = _threshold_counts(S, layout.pack_index()[:, None, :], nf, lo, spread, T)
    neg = _threshold_counts(S, idx, use, lo, spread, T)
    auc = _stepped_auc(pos, nf, neg, use, n_splits, T)
    return nan_where(auc, (nf == 0) | (nloc == 0) | spread.isnan())
