"""NSS, CC, SIM, KLD and IG, following the MIT benchmark code (``code_forMetrics``) by default.

Shapes follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w) is resized to the ground truth's (H,W)
first; each function returns (B,) with NaN where the value is undefined.
"""

from __future__ import annotations

import torch

from salnet.metrics.common import (
    EPS,
    as_batch,
    check_variant,
    constant_maps,
    mean_at_fixations,
    nan_where,
    pack_at_fixations,
    resize_to,
    sum_normalise,
)


def _pair(pred, target, name, dtype):
    t = as_batch(target, name, dtype)
    p = resize_to(as_batch(pred, "pred", dtype), t.shape[-2:])
    return p, t


def nss(pred: torch.Tensor, fixations: torch.Tensor, *, variant: str = "mit",
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised scanpath saliency: mean of the standardised prediction at fixations.

    ``mit``: std with N−1, each fixated pixel once. ``pysaliency``: std with N, one term per fixation.
    Undefined (NaN) for a constant prediction or no fixations.
    """
    check_variant(variant)
    p, f = _pair(pred, fixations, "fixations", dtype)
    p, f = p.flatten(1), f.flatten(1)
    std, mean = torch.std_mean(p, dim=1, correction=1 if variant == "mit" else 0)
    std = nan_where(std, constant_maps(*p.aminmax(dim=1)))
    valid, nf, counts, (vals,) = pack_at_fixations(f, p)  # standardise only the fixated values
    z = (vals - mean[:, None]) / std[:, None]
    return mean_at_fixations(z, counts, valid, nf, variant)


def cc(pred: torch.Tensor, gt_map: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pearson correlation of the prediction and the continuous ground-truth map, in [−1, 1]
    (MIT ``CC.m`` = pysaliency ``CC``); undefined for a constant map on either side."""
    p, g = _pair(pred, gt_map, "gt_map", dtype)
    p, g = p.flatten(1), g.flatten(1)
    sp, mp = torch.std_mean(p, dim=1, correction=0)
    sg, mg = torch.std_mean(g, dim=1, correction=0)
    # E[pg] − E[p]E[g] with the dot product as a batched matmul: no full-size temporaries
    cov = torch.bmm(p[:, None, :], g[:, :, None]).flatten() / p.shape[1] - mp * mg
    constant = constant_maps(*p.aminmax(dim=1)) | constant_maps(*g.aminmax(dim=1))
    return nan_where(cov / (sp * sg), constant)


def sim(pred: torch.Tensor, gt_map: torch.Tensor, *, variant: str = "mit",
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Similarity (histogram intersection) Σ min(P, G) of the two maps as distributions, in [0, 1].

    ``mit``: each map min–max normalised then divided by its sum (an all-zero map stays zero; a
    constant non-zero map is undefined). ``pysaliency``: only shifted to min 0 when negative, then
    divided by its sum (a zero map becomes uniform).
    """
    check_variant(variant)
    p, g = _pair(pred, gt_map, "gt_map", dtype)
    p, g = p.flatten(1), g.flatten(1)
    n = p.shape[1]

    def distribution(x):
        # minmax then /sum in one pass: (x − lo) / (Σx − n·lo), the sum known from a reduction
        lo, hi = x.aminmax(dim=1)
        total = x.sum(1)
        if variant == "mit":
            zero = (lo == 0) & (hi == 0)  # MATLAB's `if any(map(:))`: an all-zero map stays zero
            # a constant non-zero map is NaN, as MATLAB's 0/0
            denom = torch.where(zero, torch.ones_like(total), nan_where(total - n * lo, constant_maps(lo, hi)))
        else:  # pysaliency density: shift only when negative; a zero-sum map becomes uniform
            lo = lo.clamp(max=0)
            denom = total - n * lo
            zero = denom <= 0
            return torch.where(zero[:, None], torch.full_like(x, 1.0 / n), (x - lo[:, None]) / denom[:, None])
        return (x - lo[:, None]).div_(denom[:, None])

    return torch.minimum(distribution(p), distribution(g)).sum(1)


def kld(pred: torch.Tensor, gt_map: torch.Tensor, *, eps: float = EPS,
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """KL(G‖P) = Σ G·log(eps + G/(P + eps)) of the sum-normalised maps (MIT ``KLdiv.m``; equals
    pysaliency's ``MIT_KLDiv`` for non-negative maps). Natural log, ≥ 0 up to eps terms.

    Bicubic resizing can ring below 0, where log(G/P) is undefined. The benchmark never sees that
    because its maps are uint8 images and MATLAB's ``imresize`` saturates uint8 output at 0, so the
    resized prediction is clipped at 0 here, which is the benchmark's effective behaviour.
    ``eps`` defaults to MATLAB's; pysaliency's ``MIT_KLDiv`` rounds it to 2.2204e-16.
    """
    p, g = _pair(pred, gt_map, "gt_map", dtype)
    p, g = sum_normalise(p.clamp_min(0)).flatten(1), sum_normalise(g).flatten(1)
    q = p.add_(eps)  # in place on the fresh normalised tensor: one full-size temporary in all
    torch.div(g, q, out=q)
    return q.add_(eps).log_().mul_(g).sum(1)


def info_gain(pred: torch.Tensor, fixations: torch.Tensor, baseline: torch.Tensor, *,
              variant: str = "mit", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Information gain over a baseline (MIT ``InfoGain.m``), bits per fixation:
    mean over fixations of log2(eps + P) − log2(eps + B).

    ``baseline``: (H_b, W_b) or (B, H_b, W_b), e.g. the centre bias; resized like the prediction.
    ``mit``: both maps min–max normalised then divided by their sums, each fixated pixel once.
    ``pysaliency``: both maps as densities (shift to min 0 only when negative, divide by the sum), one
    term per fixation. Undefined for a constant map or no fixations.
    """
    check_variant(variant)
    p, f = _pair(pred, fixations, "fixations", dtype)
    if not torch.is_tensor(baseline):
        raise TypeError("baseline must be a torch.Tensor (H, W) or (B, H, W)")
    b = baseline.to(dtype)
    if b.ndim == 2:
        b = b.expand(p.shape[0], *b.shape)
    b = resize_to(as_batch(b, "baseline", dtype), f.shape[-2:]).to(p.device)
    p, b, f = p.flatten(1), b.flatten(1), f.flatten(1)
    n = p.shape[1]
    valid, nf, counts, (p_at, b_at) = pack_at_fixations(f, p, b)

    def prob_at_fixations(x, vals):
        # normalised map only where it is needed: x' = (x - lo) / Σ(x - lo) with lo = min (mit) or
        # min(min, 0) (pysaliency density); a zero-sum density is uniform
        lo, hi = x.aminmax(dim=1)
        if variant == "mit":
            # Σ minmax(x) = (Σx − n·lo)/(hi − lo); NaN for a constant map as in MATLAB's 0/0
            denom = nan_where(x.sum(1) - n * lo, constant_maps(lo, hi))
        else:
            lo = lo.clamp(max=0)
            denom = x.sum(1) - n * lo
        out = (vals - lo[:, None]) / denom[:, None]
        if variant == "pysaliency":
            out = torch.where(denom[:, None] > 0, out, torch.full_like(out, 1.0 / n))
        return out

    gain = torch.log2(EPS + prob_at_fixations(p, p_at)) - torch.log2(EPS + prob_at_fixations(b, b_at))
    return mean_at_fixations(gain, counts, valid, nf, variant)
