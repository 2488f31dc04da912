"""The three ROC metrics of the MIT benchmark: AUC-Judd, AUC-Borji and shuffled AUC (sAUC).

Inputs and outputs follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w), ``fixations`` (B,H,W) counts,
one value per image (B,) with NaN where undefined (no fixations, constant prediction). The random
parts (Judd's jitter, Borji's uniform negatives, sAUC's draws from other images' fixations) use one
generator per image seeded from (``seed``, key), so a value does not depend on the batch it is in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from salnet.metrics.common import (
    as_batch,
    check_variant,
    constant_maps,
    generator,
    image_seeds,
    nan_where,
    pack_at_fixations,
    resize_to,
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
    lo, hi = S.aminmax(dim=1)
    return lo, nan_where(hi - lo, constant_maps(lo, hi))


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

    The jitter U(0,1)·1e-7 is added to the raw map before normalising, as in MATLAB; the min–max
    normalisation itself cannot change the ranking, so it is not applied (only its 0/0 check).
    """
    S, fix = _prepare(pred, fixations, dtype)
    B, N = S.shape
    if jitter:
        H, W = fix.shape[-2:]
        noise = torch.stack([torch.rand(H * W, generator=generator(s), dtype=torch.float32)
                             for s in image_seeds(seed, fix, keys)])
        S = S.add(noise.to(S.device), alpha=JUDD_JITTER)
    constant = constant_maps(*S.aminmax(dim=1))
    valid, nf, _, (vals,) = pack_at_fixations(fix.flatten(1), S)
    # #(S >= θ) for every fixated θ without sorting the N pixels: bucket each pixel by how many
    # thresholds lie at or below it (searchsorted, O(N log F)), then count the buckets
    th = torch.where(valid, vals, torch.full_like(vals, math.inf)).sort(1).values  # ascending, pads last
    F = th.shape[1]
    r = torch.searchsorted(th, S, right=True)  # (B,N) in 0..F
    r += torch.arange(B, device=S.device)[:, None] * (F + 1)
    hist = torch.bincount(r.flatten(), minlength=B * (F + 1)).view(B, F + 1)
    above_asc = N - hist.cumsum(1)[:, :F]  # pixels with more than k thresholds below = #(S >= th[k])
    i = torch.arange(1, F + 1, device=S.device)[None, :]
    k = (nf[:, None] - i).clamp_min(0)  # the i-th largest valid threshold sits at ascending index nf - i
    above = torch.gather(above_asc, 1, k).to(dtype)
    nfd, idd = nf.to(dtype)[:, None], i.to(dtype)
    tp = torch.where(valid, idd / nfd, torch.ones_like(above))
    fp = torch.where(valid, (above - idd) / (N - nfd), torch.ones_like(above))
    zero, one = torch.zeros_like(tp[:, :1]), torch.ones_like(tp[:, :1])
    auc = _trapz(torch.cat([zero, fp, one], 1), torch.cat([zero, tp, one], 1))
    return nan_where(auc, (nf == 0) | constant)


def _count_at_or_above(x: torch.Tensor, valid: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """#(x ≥ T[t]) over the last axis for each ascending threshold T[t], valid entries only: one
    bucketize pass instead of one comparison pass per threshold. x (..., K), valid alike → (..., len(T))."""
    nb = len(T) + 1
    b = torch.bucketize(x, T, right=True)  # number of thresholds ≤ x, in 0..len(T)
    b = torch.where(valid, b, torch.zeros_like(b))  # invalid entries: below every threshold
    rows = b.reshape(-1, b.shape[-1])
    offs = torch.arange(rows.shape[0], device=x.device)[:, None] * nb
    hist = torch.bincount((rows + offs).flatten(), minlength=rows.shape[0] * nb).view(rows.shape[0], nb)
    above = hist.flip(1).cumsum(1).flip(1)[:, 1:]  # entries with at least t+1 thresholds at or below them
    return above.view(*x.shape[:-1], len(T))


def _stepped_auc(pos: torch.Tensor, pos_valid: torch.Tensor, neg: torch.Tensor, neg_valid: torch.Tensor,
                 step: float) -> torch.Tensor:
    """Mean over splits of the stepped-threshold AUC. pos (B,F), neg (B,S,K) in [0,1]; masks alike. → (B,)"""
    T = matlab_thresholds(step, pos.dtype).to(pos.device)  # ascending; the ROC walks it descending
    npos = pos_valid.sum(1, keepdim=True).to(pos.dtype)
    nneg = neg_valid.sum(-1, keepdim=True).to(pos.dtype)
    tp = (_count_at_or_above(pos, pos_valid, T) / npos).flip(-1)  # (B,T), thresholds descending
    fp = (_count_at_or_above(neg, neg_valid.expand_as(neg), T) / nneg).flip(-1)  # (B,S,T)
    tp = tp[:, None, :].expand_as(fp)
    zero, one = torch.zeros_like(fp[..., :1]), torch.ones_like(fp[..., :1])
    auc = _trapz(torch.cat([zero, fp, one], -1), torch.cat([zero, tp, one], -1))
    return auc.mean(1)


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
    valid, nf, _, (pos,) = pack_at_fixations(fix.flatten(1), S)
    B, N = S.shape
    F = pos.shape[1]
    idx = torch.zeros((B, n_splits, F), dtype=torch.long)
    for b, s in enumerate(image_seeds(seed, fix, keys)):
        # MATLAB draws r = randi(Npix, [Nfix, Nsplits]); one generator per image
        idx[b, :, : int(nf[b])] = torch.randint(0, N, (int(nf[b]), n_splits), generator=generator(s)).T
    neg = torch.gather(S, 1, idx.to(S.device).flatten(1)).view(B, n_splits, F)

    def norm(x):
        return (x - lo.view(-1, *[1] * (x.ndim - 1))) / spread.view(-1, *[1] * (x.ndim - 1))

    auc = _stepped_auc(norm(pos), valid, norm(neg), valid[:, None, :], step)
    return nan_where(auc, (nf == 0) | spread.isnan())


def _exact_auc(pos: torch.Tensor, wpos: torch.Tensor, neg: torch.Tensor, wneg: torch.Tensor) -> torch.Tensor:
    """Area under the full ROC (all thresholds) = P(neg < pos) + ½ P(neg = pos), weighted; 0-dim."""
    q, order = neg.sort()
    cw = torch.cat([torch.zeros(1, dtype=wneg.dtype, device=wneg.device), wneg[order].cumsum(0)])
    lt = cw[torch.searchsorted(q, pos, side="left")]
    le = cw[torch.searchsorted(q, pos, side="right")]
    return ((lt + le) / 2 * wpos).sum() / (wpos.sum() * wneg.sum())


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
        for b in range(B):
            p, n = fixf[b] > 0, othf[b] > 0
            if p.any() and n.any() and not spread[b].isnan():
                out[b] = _exact_auc(S[b][p], fixf[b][p], S[b][n], othf[b][n])
        return out
    valid, nf, _, (pos,) = pack_at_fixations(fixf, S)
    locs = torch.arange(S.shape[1], device=S.device).expand(B, -1)
    _, nloc, _, (negloc,) = pack_at_fixations(othf, locs)
    K = max(int(torch.minimum(nf, nloc).max()), 1)
    idx = torch.zeros((B, n_splits, K), dtype=torch.long)
    kvalid = torch.zeros((B, K), dtype=torch.bool)
    for b, s in enumerate(image_seeds(seed, fix, keys)):
        k, m = int(min(nf[b], nloc[b])), int(nloc[b])
        if k == 0:
            continue
        # randperm per split = argsort of uniform keys; take the first Nfixations_oth
        perm = torch.rand((n_splits, m), generator=generator(s), dtype=torch.float64).argsort(1)[:, :k]
        idx[b, :, :k] = negloc[b, :m].cpu()[perm]
        kvalid[b, :k] = True
    neg = torch.gather(S, 1, idx.to(S.device).flatten(1)).view(B, n_splits, K)
    pos, neg = (pos - lo[:, None]) / spread[:, None], (neg - lo[:, None, None]) / spread[:, None, None]
    auc = _stepped_auc(pos, valid, neg, kvalid.to(S.device)[:, None, :], step)
    return nan_where(auc, (nf == 0) | (nloc == 0) | spread.isnan())
