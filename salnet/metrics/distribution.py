"""NSS, CC, SIM, KLD and IG, following the MIT benchmark code (``code_forMetrics``) by default.

Shapes follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w) is resized to the ground truth's (H,W)
first; each function returns (B,) with NaN where the value is undefined.
"""

from __future__ import annotations

import torch

from salnet import native
from salnet.metrics.common import (
    EPS,
    _shaky,
    as_batch,
    check_variant,
    log_,
    map_pair_stats,
    map_stats,
    map_std,
    mean_at_fixations,
    memoised,
    nan_where,
    pack_at_fixations,
    resize_to,
    workspace,
)


def _pair(pred, target, name, dtype):
    t = as_batch(target, name, dtype)
    p = resize_to(as_batch(pred, "pred", dtype), t.shape[-2:])
    return p, t


@memoised
def nss(pred: torch.Tensor, fixations: torch.Tensor, *, variant: str = "mit",
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised scanpath saliency: mean of the standardised prediction at fixations.

    ``mit``: std with N−1, each fixated pixel once. ``pysaliency``: std with N, one term per fixation.
    Undefined (NaN) for a constant prediction or no fixations.
    """
    check_variant(variant)
    p, f = _pair(pred, fixations, "fixations", dtype)
    p, f = p.flatten(1), f.flatten(1)
    std = map_std(p, 1 if variant == "mit" else 0)
    valid, nf, counts, (vals,) = pack_at_fixations(f, p)  # standardise only the fixated values
    z = (vals - map_stats(p).mean[:, None]) / std[:, None]
    return mean_at_fixations(z, counts, valid, nf, variant)


@memoised
def cc(pred: torch.Tensor, gt_map: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pearson correlation of the prediction and the continuous ground-truth map, in [−1, 1]
    (MIT ``CC.m`` = pysaliency ``CC``); undefined for a constant map on either side."""
    p, g = _pair(pred, gt_map, "gt_map", dtype)
    p, g = p.flatten(1), g.flatten(1)
    stats_p, stats_g, dot = map_pair_stats(p, g)
    sp, sg = map_std(p, 0), map_std(g, 0)
    mp, mg = stats_p.mean, stats_g.mean
    # E[pg] − E[p]E[g] from one dot product per image; where a map's mean dwarfs its spread that
    # difference cancels, and those images are centred first
    cov = dot / p.shape[1] - mp * mg
    shaky = _shaky(p, sp.square()) | _shaky(g, sg.square())
    for b in shaky.nonzero().flatten().tolist():
        cov[b] = torch.dot(p[b] - mp[b], g[b] - mg[b]) / p.shape[1]
    return cov / (sp * sg)


def _affine_distribution(x: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SIM's normalisation of ``x`` (B,N) as an affine map d = x·scale + shift, without forming it.

    ``mit``: min–max then divide by the sum = (x − lo)/(Σx − N·lo); an all-zero map stays zero, a
    constant non-zero map is NaN (MATLAB's 0/0). ``pysaliency``: shift to min 0 only when negative, then
    divide by the sum; a zero-sum map becomes uniform. Returns (scale, shift, Σd), each (B,).
    """
    st = map_stats(x)
    n = st.n
    one, zero = torch.ones_like(st.total), torch.zeros_like(st.total)
    if variant == "mit":
        allzero = (st.lo == 0) & (st.hi == 0)
        denom = nan_where(st.total - n * st.lo, st.constant)
        scale = torch.where(allzero, zero, 1 / denom)
        return scale, -st.lo * scale, torch.where(allzero, zero, one)
    lo = st.lo.clamp(max=0)
    denom = st.total - n * lo
    uniform = denom <= 0
    scale = torch.where(uniform, zero, 1 / torch.where(uniform, one, denom))
    return scale, torch.where(uniform, one / n, -lo * scale), one


@memoised
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
    map_pair_stats(p, g)  # both maps' statistics in one pass
    sp, cp, tp = _affine_distribution(p, variant)
    sg, cg, tg = _affine_distribution(g, variant)
    # Σ min(P, G) = (ΣP + ΣG − Σ|P − G|)/2, and P − G is one affine pass over p and g: one C pass
    # (salnet.native.affine_l1), else per image in one reused buffer (:func:`~salnet.metrics.common.workspace`)
    l1 = native.affine_l1(p, g, sp, sg, cp - cg)
    if l1 is None:
        buf = workspace("map", p.shape[1], p.dtype, p.device)
        l1 = torch.empty_like(tp)
        for b, (a, c, s_p, s_g) in enumerate(zip(p, g, sp.tolist(), sg.tolist())):
            torch.add((cp[b] - cg[b]), a, alpha=s_p, out=buf).add_(c, alpha=-s_g)
            l1[b] = buf.abs_().sum()
    return (tp + tg - l1) / 2


@memoised
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
    p, g = p.flatten(1), g.flatten(1)
    sp, sg, _ = map_pair_stats(p, g)
    clipped = p.clamp_min(0) if (sp.lo < 0).any() else p
    total_p = sp.total if clipped is p else clipped.sum(1)
    total_g = sg.total
    # divide by the sum, as a scale (MATLAB's `if any(map(:))`: an all-zero map is left as it is)
    scale_p = torch.where(total_p == 0, torch.ones_like(total_p), 1 / total_p)
    scale_g = torch.where(total_g == 0, torch.ones_like(total_g), 1 / total_g)
    # Σ G'·log(eps + G'/(P' + eps)) with G' = g·scale_g, P' = p·scale_p: one C pass (salnet.native.kld,
    # which clips p itself), else per image in one reused buffer
    fused = native.kld(p, g, scale_p, scale_g, eps)
    if fused is not None:
        return fused
    p = clipped
    buf = workspace("map", p.shape[1], p.dtype, p.device)
    out = torch.empty_like(total_g)
    eps_t = torch.tensor(eps, dtype=p.dtype, device=p.device)
    for b, (a, c, s_p, s_g) in enumerate(zip(p, g, scale_p.tolist(), scale_g.tolist())):
        torch.add(eps_t, a, alpha=s_p, out=buf)
        log_(torch.addcdiv(eps_t, c, buf, value=s_g, out=buf))  # eps + G'/(P' + eps)
        out[b] = torch.dot(c, buf) * s_g
    return out


@memoised
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
        st = map_stats(x)
        lo = st.lo
        if variant == "mit":
            # Σ minmax(x) = (Σx − n·lo)/(hi − lo); NaN for a constant map as in MATLAB's 0/0
            denom = nan_where(st.total - n * lo, st.constant)
        else:
            lo = lo.clamp(max=0)
            denom = st.total - n * lo
        out = (vals - lo[:, None]) / denom[:, None]
        if variant == "pysaliency":
            out = torch.where(denom[:, None] > 0, out, torch.full_like(out, 1.0 / n))
        return out

    gain = torch.log2(EPS + prob_at_fixations(p, p_at)) - torch.log2(EPS + prob_at_fixations(b, b_at))
    return mean_at_fixations(gain, counts, valid, nf, variant)
