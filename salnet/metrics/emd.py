"""Earth mover's distance as the MIT benchmark computes it (``EMD.m`` + FastEMD), solved exactly.

The ground-truth map is shrunk by 1/32 with ``imresize`` (bicubic, antialiased), the prediction is
resized to that grid, both are divided by their sums, and the cost of moving one onto the other is
measured with the Euclidean distance between grid cells (in cells of the small grid). As in
``EMD.m``, the ground truth is shrunk by the scale 1/32 and the prediction to the resulting *size*; when
a side is not a multiple of 32 the two kernels differ slightly, so EMD(x, x) is then small but not 0 —
the benchmark's own behaviour, kept.

Bicubic shrinking rings: cells can be slightly negative. FastEMD's ``emd_hat_gd_metric`` first
moves the common mass in place at zero cost, leaving P' = (P − Q)⁺ as supply and Q' = (Q − P)⁺ as
demand (equal totals since ΣP = ΣQ = 1); negative cells simply become demand or supply. We do the
same, then solve that balanced transport problem exactly with a network simplex (POT's ``ot.emd``)
instead of FastEMD's integer-rounded one (×10⁶), so our values are exact where FastEMD's carry a
~1e-6 rounding. The extra-mass penalty is 0 as in the MIT code.
"""

from __future__ import annotations

import numpy as np
import torch

from salnet.imresize import imresize, spatial_size
from salnet.metrics.common import as_batch
from salnet.metrics.prepared import PreparedMaps

DOWNSIZE = 32


def _ground_distance(h: int, w: int) -> np.ndarray:
    r, c = np.divmod(np.arange(h * w), w)
    return np.sqrt((r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2)


def transport_cost(p: np.ndarray, q: np.ndarray, dist: np.ndarray) -> float:
    """Exact EMD between two histograms of equal total mass (entries may be negative), FastEMD-style:
    pre-flow the common part, then min-cost flow of (p − q)⁺ onto (q − p)⁺ over ``dist``."""
    d = p - q
    src, dst = np.flatnonzero(d > 0), np.flatnonzero(d < 0)
    if src.size == 0 or dst.size == 0:
        return 0.0
    a, b = d[src], -d[dst]
    b = b * (a.sum() / b.sum())  # equal totals up to float rounding; the simplex needs them exact
    m = np.ascontiguousarray(dist[np.ix_(src, dst)])
    import ot  # here, not at the top: importing POT costs every process that imports salnet a second of CPU

    flow = ot.emd(a, b, m, numItermax=10_000_000)
    return float((flow * m).sum())


def emd(pred: torch.Tensor, gt_map: torch.Tensor, *, downsize: int = DOWNSIZE,
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """EMD between prediction (B,h,w) and continuous ground truth (B,H,W) on the 1/``downsize`` grid.

    Returns (B,) ≥ 0 in cells of the small grid (lower is better); NaN where a map sums to zero.
    """
    g = as_batch(gt_map, "gt_map", dtype)
    return _emd(as_batch(pred, "pred", dtype), g, downsize)


def emd_of(maps: PreparedMaps, *, downsize: int = DOWNSIZE) -> torch.Tensor:
    """:func:`emd` of prepared maps (``pred_input``, ``gt_map``): EMD shrinks the prediction as given, not
    the one resized to the ground truth, and shares no statistics."""
    return _emd(maps.pred_input, maps.required("gt_map"), downsize)


def _emd(p: torch.Tensor, g: torch.Tensor, downsize: int) -> torch.Tensor:
    """:func:`emd` of checked maps."""
    # the ground truth shrunk by the scale 1/downsize, the prediction to that size, as EMD.m does
    small = imresize(g, scale=1.0 / downsize)
    ps = imresize(p, spatial_size(small))
    h, w = small.shape[-2:]
    dist = _ground_distance(h, w)
    P = small.flatten(1).cpu().numpy()
    Q = ps.flatten(1).cpu().numpy()
    out = np.full(P.shape[0], np.nan)
    for b in range(P.shape[0]):  # each image's transport problem, between the maps divided by their sums
        sp, sq = P[b].sum(), Q[b].sum()
        if sp > 0 and sq > 0:
            out[b] = transport_cost(P[b] / sp, Q[b] / sq, dist)
    return torch.from_numpy(out).to(dtype=p.dtype, device=g.device)
