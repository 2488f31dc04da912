"""The three ROC metrics of the MIT benchmark: AUC-Judd, AUC-Borji and shuffled AUC (sAUC).

Inputs and outputs follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w), ``fixations`` (B,H,W) counts,
one value per image (B,) with NaN where undefined (no fixations, constant prediction). The random
parts (Judd's jitter, Borji's uniform negatives, sAUC's draws from other images' fixations) use one
generator per image seeded from (``seed``, key), so a value does not depend on the batch it is in.
Each metric is a function on tensors and, as ``<name>_of``, on a
:class:`~salnet.metrics.prepared.PreparedMaps` whose statistics it shares (what ``score_batch`` calls).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from salnet import native
from salnet.metrics.common import (
    FixationLayout,
    MapStats,
    check_variant,
    constant_maps,
    flatnonzero,
    generator,
    left_pack,
    nan_where,
    workspace,
)
from salnet.metrics.prepared import PreparedMaps, prepare

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


def _min_and_spread(st: MapStats) -> tuple[torch.Tensor, torch.Tensor]:
    """min (B,) and max − min (B,) of a map with statistics ``st``, NaN spread for a constant map. MIT
    min–max normalises the map; AUCs only need the normalised values at the sampled pixels, so callers
    normalise small gathered arrays, not the map."""
    return st.min, nan_where(st.max - st.min, st.constant)


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


def _count_at_or_above_fixated(S: torch.Tensor, st: MapStats, layout: FixationLayout, fixated: torch.Tensor,
                               seeds: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """#(S + J ≥ θ) over all N pixels for every threshold θ = S + J at the fixated pixels of each image.

    S (B,N) raw values with statistics ``st``; ``layout`` the fixations' :class:`FixationLayout` and
    ``fixated`` (B,F) the values of S it packs; J the jitter of :func:`judd_jitter` with ``seeds[b]`` for
    image b, or 0 when ``seeds`` is None. Returns the thresholds (B,F) ascending (+inf pads after each
    image's valid ones) and (B,F) int64 the number of pixels at or above each.

    Each pixel falls in one of ``JUDD_BINS`` equal bins of its raw value; the bin index is monotone in
    the value. A pixel two bins or more above the bin of θ's largest possible value (raw + 1e-7) is
    above θ whatever its jitter; one two bins or more below the bin of raw − 2e-7 is below it; the rest
    ("close" pixels, the fixated ones among them) get their jitter and are compared with the thresholds
    exactly. One histogram pass instead of a binary search per pixel, and jitter for a few pixels, not N.
    The per-pixel pass (bin, histogram, close-bin lookup) is one C loop where :mod:`salnet.native` is
    available, else :func:`_judd_pass`; everything after it is batched over the close pixels.
    """
    B, N = S.shape
    device = S.device
    bins_per_image = JUDD_BINS + 3  # pixels land in bins 1..JUDD_BINS+1, the thresholds' margins reach 0..+2
    # 1. The binning: bin = trunc((S − min)·bins_per_unit + 1.5). Folding min into the offset (one pass)
    #    is exact to far below a bin unless |min| dwarfs the spread; then min is subtracted first (two more passes).
    spread = st.max - st.min
    has_spread = spread > 0
    bins_per_unit = torch.where(has_spread, JUDD_BINS / torch.where(has_spread, spread, torch.ones_like(spread)),
                                torch.zeros_like(spread))
    subtract_min = bool((st.min.abs() * bins_per_unit > 2.0**30).any())
    bin_offset = 1.5 - (torch.zeros_like(bins_per_unit) if subtract_min else st.min * bins_per_unit)
    valid = layout.valid

    def bin_of(v):  # the bin of a few values, computed apart from the pixels' and so possibly one bin off
        # in rounding (the ±1 margins allow for it), clamped to the pixels' range
        v = v - st.min[:, None] if subtract_min else v
        return torch.addcmul(bin_offset[:, None], v, bins_per_unit[:, None]).floor().clamp(1, JUDD_BINS + 1).to(
            torch.int64)

    # 2. The thresholds: the fixated values plus their jitter (plain adds, so that a fixated pixel gets the
    #    same value as threshold and as close pixel)
    thresholds = fixated
    if seeds is not None:
        seed_of_image = np.asarray(seeds, dtype=np.uint64)
        jitter = judd_jitter(seed_of_image[:, None], layout.pixel_table().cpu().numpy())
        thresholds = fixated + torch.from_numpy(jitter).to(fixated)
    # 3. The bins a pixel on either side of a threshold may fall in, from the bin of the threshold's lowest
    #    possible raw value to that of its highest, one bin wider on each side; marked for every threshold
    #    by +1/−1 at the ends and a running sum
    top_bin = bin_of(fixated + (0.0 if seeds is None else JUDD_JITTER)) + 1
    bottom_bin = bin_of(fixated - (0.0 if seeds is None else 2 * JUDD_JITTER)) - 1
    edges = torch.zeros((B, bins_per_image + 1), dtype=torch.int64, device=device)
    edges.scatter_add_(1, bottom_bin, valid.long()).scatter_add_(1, top_bin + 1, -valid.long())
    near_threshold = edges.cumsum(1)[:, :bins_per_image] > 0
    # 4. The per-pixel pass: a histogram of the far pixels (bin not marked), the flat indices of the close ones
    far_hist = workspace("judd_hist", B * bins_per_image, torch.int64, device).view(B, bins_per_image)
    fused = native.judd_pass(S, st.min, bins_per_unit, bin_offset, subtract_min, near_threshold, JUDD_BINS + 1,
                             far_hist, workspace("judd_close", B * N, torch.int64, device))  # one pass in C
    if fused is not None:
        far_hist, close = fused
    else:
        far_hist, close = _judd_pass(S, st.min.tolist(), bins_per_unit.tolist(), bin_offset.tolist(), subtract_min,
                                     near_threshold)
    # 5. Far pixels at or above a threshold: those in the bins above its marked ones (in layout order)
    far_cumulative = far_hist.cumsum(1)
    far_above = far_cumulative[:, -1:] - far_cumulative.gather(1, top_bin)
    # 6. Close pixels: their values with their jitter, ranked among their image's sorted thresholds
    close_image = close // N
    close_pixel = close - close_image * N
    close_values = S.view(-1).index_select(0, close)
    if seeds is not None:
        close_jitter = judd_jitter(seed_of_image[close_image.cpu().numpy()], close_pixel.cpu().numpy())
        close_values = close_values + torch.from_numpy(close_jitter).to(close_values)
    thresholds, order = torch.where(valid, thresholds, torch.full_like(thresholds, math.inf)).sort(1)
    _, slot, width = left_pack(close_image, B)  # a (B, most close pixels) table, padded with −inf (rank 0)
    close_table = torch.full((B, width), -math.inf, dtype=S.dtype, device=device)
    close_table[close_image, slot] = close_values
    F = thresholds.shape[1]
    rank = torch.searchsorted(thresholds, close_table, right=True)  # thresholds ≤ each close value, 0..F
    rank += torch.arange(B, device=device)[:, None] * (F + 1)  # one bincount for all images
    per_rank = torch.bincount(rank.view(-1), minlength=B * (F + 1)).view(B, F + 1)
    close_above = per_rank.flip(1).cumsum(1).flip(1)[:, 1:]  # #(close ≥ thresholds[k]); the pads' rank 0 dropped
    # 7. Both counts, the far ones reordered from layout order to the thresholds' ascending order
    return thresholds, torch.gather(far_above, 1, order) + close_above


def _judd_pass(S: torch.Tensor, lo: list[float], bins_per_unit: list[float], bin_offset: list[float],
               subtract_min: bool, near_threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch path of :func:`salnet.native.judd_pass`: the histogram (B, R) of the pixels whose bin is not
    marked in ``near_threshold`` (B, R) and the flat indices of those whose bin is. The per-pixel passes run
    image by image, so that one image's buffers stay in cache between them."""
    B, N = S.shape
    R, device = near_threshold.shape[1], S.device
    scratch = workspace("judd", N, S.dtype, device)
    bins = workspace("judd_bins", B * N, torch.int32, device)
    is_close = workspace("judd_close", B * N, torch.bool, device)
    hist = torch.zeros((B, R), dtype=torch.int64, device=device)
    for b in range(B):
        # each pixel's bin: (S − lo)·bins_per_unit + offset, or S·bins_per_unit + offset with lo folded in
        if subtract_min:
            torch.sub(S[b], lo[b], out=scratch).mul_(bins_per_unit[b]).add_(bin_offset[b])
        else:
            torch.add(bin_offset[b], S[b], alpha=bins_per_unit[b], out=scratch)
        image_bins = bins[b * N:(b + 1) * N]
        image_bins.copy_(scratch)  # truncation (all values ≥ 1)
        hist[b] = torch.bincount(image_bins, minlength=R)
        torch.index_select(near_threshold[b], 0, image_bins, out=is_close[b * N:(b + 1) * N])
    close = flatnonzero(is_close)
    close_bins = bins.index_select(0, close) + (close // N) * R
    hist.view(-1).index_add_(0, close_bins, torch.full_like(close, -1))  # the close pixels are counted apart
    return hist, close


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
    return auc_judd_of(prepare(pred, dtype, fixations=fixations), jitter=jitter, seed=seed, keys=keys)


def auc_judd_of(maps: PreparedMaps, *, jitter: bool = True, seed: int = 0,
                keys: Sequence[str | int] | None = None) -> torch.Tensor:
    """:func:`auc_judd` of prepared maps (``pred``, ``fixations``)."""
    S = maps.flat("pred")
    N = S.shape[1]
    layout = maps.layout()
    valid, n_fixated = layout.valid, layout.n_fixated
    st = maps.stats("pred")
    # MATLAB normalises the jittered map: only a spread below the jitter's counts as constant
    constant = constant_maps(st.min, st.max + JUDD_JITTER) if jitter else st.constant
    seeds = maps.image_seeds(seed, keys) if jitter else None
    thresholds, at_or_above = _count_at_or_above_fixated(S, st, layout, maps.at_fixations("pred"), seeds)
    # the ROC's points, thresholds descending: at the i-th largest, i of the fixated pixels and
    # #(S ≥ θ_i) − i of the others are at or above it
    F = thresholds.shape[1]
    i = torch.arange(1, F + 1, device=S.device)[None, :]
    ascending = (n_fixated[:, None] - i).clamp_min(0)  # the i-th largest valid threshold's ascending index
    above = torch.gather(at_or_above, 1, ascending).to(S.dtype)
    nf, rank = n_fixated.to(S.dtype)[:, None], i.to(S.dtype)
    tp = torch.where(valid, rank / nf, torch.ones_like(above))
    fp = torch.where(valid, (above - rank) / (N - nf), torch.ones_like(above))
    # the area under them, from (0, 0) to (1, 1)
    zero, one = torch.zeros_like(tp[:, :1]), torch.ones_like(tp[:, :1])
    auc = _trapz(torch.cat([zero, fp, one], 1), torch.cat([zero, tp, one], 1))
    return nan_where(auc, (n_fixated == 0) | constant)


def _threshold_counts(S: torch.Tensor, pixels: torch.Tensor, n_used: torch.Tensor, lo: torch.Tensor,
                      spread: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B, len(thresholds)+1) int64: per image b, the values S[b, pixels[b, s, j]] (``pixels`` (B, splits,
    width) pixel indices) of every split s, only j < ``n_used[b]``, min–max normalised with ``lo``,
    ``spread`` (B,), counted by how many of the ascending ``thresholds`` are at or below them. One C pass
    over the sampled pixels (:func:`salnet.native.threshold_counts`) where available, else gather,
    bucketize and one bincount."""
    fused = native.threshold_counts(S, pixels, n_used, lo, spread, thresholds)
    if fused is not None:
        return fused
    B, splits, width = pixels.shape
    buckets = len(thresholds) + 2  # counts 0..len(thresholds), and one bucket for the unused entries, dropped
    values = torch.gather(S, 1, pixels.to(S.device).flatten(1)).view(B, splits, width)
    bucket = torch.bucketize((values - lo[:, None, None]) / spread[:, None, None], thresholds, right=True)
    unused = torch.arange(width, device=S.device)[None, None, :] >= n_used.to(S.device)[:, None, None]
    bucket = bucket.masked_fill(unused, buckets - 1) + torch.arange(B, device=S.device)[:, None, None] * buckets
    return torch.bincount(bucket.flatten(), minlength=B * buckets).view(B, buckets)[:, :-1]


def _stepped_auc(positive_counts: torch.Tensor, n_positives: torch.Tensor, negative_counts: torch.Tensor,
                 n_negatives: torch.Tensor, splits: int, thresholds: torch.Tensor) -> torch.Tensor:
    """Mean over splits of the stepped-threshold AUC, from the :func:`_threshold_counts` of the positives
    and of all ``splits`` splits' negatives (B, len(thresholds)+1), with ``n_positives`` positives and
    ``n_negatives`` negatives per split (B,). Every split of an image has as many negatives and the same
    tp, and the trapezoid rule is linear in fp, so the mean of the splits' AUCs is the AUC of their mean
    fp. → (B,)"""
    dtype = thresholds.dtype

    def at_or_above(counts):  # (B, len(T)): entries ≥ T[t] = with at least t+1 thresholds at or below them
        return counts.flip(1).cumsum(1).flip(1)[:, 1:].to(dtype)

    # the ROC's points, thresholds descending
    tp = (at_or_above(positive_counts) / n_positives[:, None].to(dtype)).flip(-1)
    fp = (at_or_above(negative_counts) / (n_negatives * splits)[:, None].to(dtype)).flip(-1)
    zero, one = torch.zeros_like(fp[:, :1]), torch.ones_like(fp[:, :1])
    return _trapz(torch.cat([zero, fp, one], -1), torch.cat([zero, tp, one], -1))


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
    maps = prepare(pred, dtype, fixations=fixations)
    return auc_borji_of(maps, n_splits=n_splits, step=step, seed=seed, keys=keys)


def auc_borji_of(maps: PreparedMaps, *, n_splits: int = 100, step: float = 0.1, seed: int = 0,
                 keys: Sequence[str | int] | None = None) -> torch.Tensor:
    """:func:`auc_borji` of prepared maps (``pred``, ``fixations``)."""
    S = maps.flat("pred")
    lo, spread = _min_and_spread(maps.stats("pred"))
    layout = maps.layout()
    n_fixated = layout.n_fixated
    B, N = S.shape
    thresholds = matlab_thresholds(step, S.dtype).to(S.device)
    # the negatives: MATLAB draws r = randi(Npix, [Nfix, Nsplits]); here one generator per image
    negatives = torch.zeros((B, n_splits, layout.valid.shape[1]), dtype=torch.long)
    for b, (s, k) in enumerate(zip(maps.image_seeds(seed, keys), n_fixated.tolist())):
        negatives[b, :, :k] = torch.randint(0, N, (k, n_splits), generator=generator(s)).T
    positive_counts = _threshold_counts(S, layout.pixel_table()[:, None, :], n_fixated, lo, spread, thresholds)
    negative_counts = _threshold_counts(S, negatives, n_fixated, lo, spread, thresholds)
    auc = _stepped_auc(positive_counts, n_fixated, negative_counts, n_fixated, n_splits, thresholds)
    return nan_where(auc, (n_fixated == 0) | spread.isnan())


def _exact_auc(positives: torch.Tensor, positive_weights: torch.Tensor, negatives: torch.Tensor,
               negative_weights: torch.Tensor) -> torch.Tensor:
    """Area under the full ROC (all thresholds) = P(neg < pos) + ½ P(neg = pos), weighted; 0-dim."""
    ascending, order = negatives.sort()
    # weight of the negatives before each position of the sorted negatives
    weight_before = torch.cat([torch.zeros(1, dtype=negative_weights.dtype, device=negative_weights.device),
                               negative_weights[order].cumsum(0)])
    below = weight_before[torch.searchsorted(ascending, positives, side="left")]  # negatives < each positive
    at_or_below = weight_before[torch.searchsorted(ascending, positives, side="right")]
    return ((below + at_or_below) / 2 * positive_weights).sum() / (positive_weights.sum() * negative_weights.sum())


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
    maps = prepare(pred, dtype, fixations=fixations, other=other)
    return sauc_of(maps, n_splits=n_splits, step=step, seed=seed, keys=keys, variant=variant)


def sauc_of(maps: PreparedMaps, *, n_splits: int = 100, step: float = 0.1, seed: int = 0,
            keys: Sequence[str | int] | None = None, variant: str = "mit") -> torch.Tensor:
    """:func:`sauc` of prepared maps (``pred``, ``fixations``, ``other``)."""
    S = maps.flat("pred")
    lo, spread = _min_and_spread(maps.stats("pred"))
    own, others = maps.layout("fixations"), maps.layout("other")
    B = S.shape[0]
    if variant == "pysaliency":  # every fixation against every other image's fixation, weighted by counts
        out = torch.full((B,), float("nan"), dtype=S.dtype, device=S.device)
        positives, negatives = maps.at_fixations("pred"), maps.at_fixations("pred", "other")
        n_own, n_other = own.n_fixated.tolist(), others.n_fixated.tolist()
        for b, constant in enumerate(spread.isnan().tolist()):
            if n_own[b] and n_other[b] and not constant:
                out[b] = _exact_auc(positives[b, :n_own[b]], own.counts[b, :n_own[b]],
                                    negatives[b, :n_other[b]], others.counts[b, :n_other[b]])
        return out
    n_fixated, n_locations = own.n_fixated, others.n_fixated
    n_negatives = torch.minimum(n_fixated, n_locations)  # per split: as many as fixations, if there are
    other_pixels = others.pixel_table().cpu()  # the other images' fixated locations
    negatives = torch.zeros((B, n_splits, max(int(n_negatives.max()), 1)), dtype=torch.long)
    for b, (s, k, m) in enumerate(zip(maps.image_seeds(seed, keys), n_negatives.tolist(), n_locations.tolist())):
        if k == 0:
            continue
        if k == m:  # the first m of a permutation of all m locations: all of them, in any order
            negatives[b, :, :k] = other_pixels[b, :m]
        else:  # randperm per split = argsort of uniform keys; take the first Nfixations_oth
            keys_of_split = torch.rand((n_splits, m), generator=generator(s), dtype=torch.float64)
            negatives[b, :, :k] = other_pixels[b, :m][_smallest(keys_of_split, k)]
    thresholds = matlab_thresholds(step, S.dtype).to(S.device)
    positive_counts = _threshold_counts(S, own.pixel_table()[:, None, :], n_fixated, lo, spread, thresholds)
    negative_counts = _threshold_counts(S, negatives, n_negatives, lo, spread, thresholds)
    auc = _stepped_auc(positive_counts, n_fixated, negative_counts, n_negatives, n_splits, thresholds)
    return nan_where(auc, (n_fixated == 0) | (n_locations == 0) | spread.isnan())
