"""NSS, CC, SIM, KLD and IG, following the MIT benchmark code (``code_forMetrics``) by default.

Shapes follow :mod:`salnet.metrics.common`: ``pred`` (B,h,w) is resized to the ground truth's (H,W)
first; each function returns (B,) with NaN where the value is undefined. Each metric is a function on
tensors and, as ``<name>_of``, on a :class:`~salnet.metrics.prepared.PreparedMaps` whose statistics it
shares (what ``score_batch`` calls).
"""

from __future__ import annotations

import torch

from salnet import native
from salnet.metrics.common import (
    EPS,
    MapStats,
    as_batch,
    check_variant,
    log_,
    mean_at_fixations,
    nan_where,
    one_pass_unreliable,
    workspace,
)
from salnet.metrics.prepared import PreparedMaps, prepare


def nss(pred: torch.Tensor, fixations: torch.Tensor, *, variant: str = "mit",
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised scanpath saliency: mean of the standardised prediction at fixations.

    ``mit``: std with N−1, each fixated pixel once. ``pysaliency``: std with N, one term per fixation.
    Undefined (NaN) for a constant prediction or no fixations.
    """
    check_variant(variant)
    return nss_of(prepare(pred, dtype, fixations=fixations), variant)


def nss_of(maps: PreparedMaps, variant: str = "mit") -> torch.Tensor:
    """:func:`nss` of prepared maps (``pred``, ``fixations``)."""
    std = maps.std("pred", 1 if variant == "mit" else 0)
    # standardise only the values at the fixated pixels
    z = (maps.at_fixations("pred") - maps.stats("pred").mean[:, None]) / std[:, None]
    return mean_at_fixations(z, maps.layout(), variant)


def cc(pred: torch.Tensor, gt_map: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pearson correlation of the prediction and the continuous ground-truth map, in [−1, 1]
    (MIT ``CC.m`` = pysaliency ``CC``); undefined for a constant map on either side."""
    return cc_of(prepare(pred, dtype, gt_map=gt_map))


def cc_of(maps: PreparedMaps) -> torch.Tensor:
    """:func:`cc` of prepared maps (``pred``, ``gt_map``)."""
    p, g = maps.flat("pred"), maps.flat("gt_map")
    stats_p, stats_g, dot = maps.pred_gt_stats()
    sp, sg = maps.std("pred", 0), maps.std("gt_map", 0)
    mp, mg = stats_p.mean, stats_g.mean
    # E[pg] − E[p]E[g] from one dot product per image; where a map's mean dwarfs its spread that
    # difference cancels, and those images are centred first
    cov = dot / p.shape[1] - mp * mg
    unreliable = one_pass_unreliable(stats_p, sp.square()) | one_pass_unreliable(stats_g, sg.square())
    for b in unreliable.nonzero().flatten().tolist():
        cov[b] = torch.dot(p[b] - mp[b], g[b] - mg[b]) / p.shape[1]
    return cov / (sp * sg)


def _affine_distribution(st: MapStats, variant: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SIM's normalisation of a (B,N) map with statistics ``st`` as an affine map d = x·scale + shift,
    without forming it.

    ``mit``: min–max then divide by the sum = (x − lo)/(Σx − N·lo); an all-zero map stays zero, a
    constant non-zero map is NaN (MATLAB's 0/0). ``pysaliency``: shift to min 0 only when negative, then
    divide by the sum; a zero-sum map becomes uniform. Returns (scale, shift, Σd), each (B,).
    """
    n = st.n
    one, zero = torch.ones_like(st.sum), torch.zeros_like(st.sum)
    if variant == "mit":
        allzero = (st.min == 0) & (st.max == 0)
        denom = nan_where(st.sum - n * st.min, st.constant)
        scale = torch.where(allzero, zero, 1 / denom)
        return scale, -st.min * scale, torch.where(allzero, zero, one)
    lo = st.min.clamp(max=0)
    denom = st.sum - n * lo
    uniform = denom <= 0
    scale = torch.where(uniform, zero, 1 / torch.where(uniform, one, denom))
    return scale, torch.where(uniform, one / n, -lo * scale), one


def sim(pred: torch.Tensor, gt_map: torch.Tensor, *, variant: str = "mit",
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Similarity (histogram intersection) Σ min(P, G) of the two maps as distributions, in [0, 1].

    ``mit``: each map min–max normalised then divided by its sum (an all-zero map stays zero; a
    constant non-zero map is undefined). ``pysaliency``: only shifted to min 0 when negative, then
    divided by its sum (a zero map becomes uniform).
    """
    check_variant(variant)
    return sim_of(prepare(pred, dtype, gt_map=gt_map), variant)


def sim_of(maps: PreparedMaps, variant: str = "mit") -> torch.Tensor:
    """:func:`sim` of prepared maps (``pred``, ``gt_map``)."""
    p, g = maps.flat("pred"), maps.flat("gt_map")
    stats_p, stats_g, _ = maps.pred_gt_stats()  # both maps' statistics in one pass
    sp, cp, tp = _affine_distribution(stats_p, variant)
    sg, cg, tg = _affine_distribution(stats_g, variant)
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


def kld(pred: torch.Tensor, gt_map: torch.Tensor, *, eps: float = EPS,
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """KL(G‖P) = Σ G·log(eps + G/(P + eps)) of the sum-normalised maps (MIT ``KLdiv.m``; equals
    pysaliency's ``MIT_KLDiv`` for non-negative maps). Natural log, ≥ 0 up to eps terms.

    Bicubic resizing can ring below 0, where log(G/P) is undefined. The benchmark never sees that
    because its maps are uint8 images and MATLAB's ``imresize`` saturates uint8 output at 0, so the
    resized prediction is clipped at 0 here, which is the benchmark's effective behaviour.
    ``eps`` defaults to MATLAB's; pysaliency's ``MIT_KLDiv`` rounds it to 2.2204e-16.
    """
    return kld_of(prepare(pred, dtype, gt_map=gt_map), eps=eps)


def kld_of(maps: PreparedMaps, eps: float = EPS) -> torch.Tensor:
    """:func:`kld` of prepared maps (``pred``, ``gt_map``)."""
    p, g = maps.flat("pred"), maps.flat("gt_map")
    sp, sg, _ = maps.pred_gt_stats()
    clipped = p.clamp_min(0) if (sp.min < 0).any() else p
    total_p = sp.sum if clipped is p else clipped.sum(1)
    total_g = sg.sum
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
    fixations = as_batch(fixations, "fixations", dtype)
    pred = as_batch(pred, "pred", dtype)
    if not torch.is_tensor(baseline):
        raise TypeError("baseline must be a torch.Tensor (H, W) or (B, H, W)")
    b = baseline.to(dtype)
    if b.ndim == 2:  # one baseline for the whole batch
        b = b.expand(pred.shape[0], *b.shape)
    maps = PreparedMaps(pred, fixations=fixations, baseline=as_batch(b, "baseline", dtype))
    return info_gain_of(maps, variant)


def info_gain_of(maps: PreparedMaps, variant: str = "mit") -> torch.Tensor:
    """:func:`info_gain` of prepared maps (``pred``, ``fixations``, ``baseline``)."""
    n = maps.flat("pred").shape[1]

    def prob_at_fixations(name):
        # the normalised map only where it is needed: x' = (x - lo) / Σ(x - lo) at the fixated pixels, with
        # lo = min (mit) or min(min, 0) (pysaliency density); a zero-sum density is uniform
        st = maps.stats(name)
        lo = st.min
        if variant == "mit":
            # Σ minmax(x) = (Σx − n·lo)/(hi − lo); NaN for a constant map as in MATLAB's 0/0
            denom = nan_where(st.sum - n * lo, st.constant)
        else:
            lo = lo.clamp(max=0)
            denom = st.sum - n * lo
        out = (maps.at_fixations(name) - lo[:, None]) / denom[:, None]
        if variant == "pysaliency":
            out = torch.where(denom[:, None] > 0, out, torch.full_like(out, 1.0 / n))
        return out

    gain = torch.log2(EPS + prob_at_fixations("pred")) - torch.log2(EPS + prob_at_fixations("baseline"))
    return mean_at_fixations(gain, maps.layout(), variant)
