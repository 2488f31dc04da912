"""imresize on the band of nonzero weights: the same weights as :func:`salnet.imresize.imresize`
(dense matrices there), applied as a few strided slices per axis so the loader's per-sample resize of
a 640x480 image costs about a millisecond on one core instead of ten.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from salnet.imresize import resize_matrix


@lru_cache(maxsize=64)
def _band(n_in: int, n_out: int, method: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """imresize's (n_out, n_in) weights as taps [(indices (n_out,), weights (n_out, 1))]: the few
    nonzero weights of each row (zero-padded), so a resize costs O(taps) per pixel, not a dense matmul."""
    m = resize_matrix(n_in, n_out, method, n_out / n_in, True, torch.float64, "cpu")
    nz = m != 0
    taps = max(int(nz.sum(1).max()), 1)
    order = torch.argsort((~nz).to(torch.int8), dim=1, stable=True)[:, :taps]  # nonzero columns first
    weights = torch.gather(m, 1, order).float()
    return [(order[:, k].contiguous(), weights[:, k, None].contiguous()) for k in range(taps)]


@lru_cache(maxsize=64)
def _block(n_in: int, n_out: int, method: str) -> tuple[int, list[list[tuple[int, float]]]] | None:
    """(block_in, per block output: [(input offset, weight)]) when imresize's matrix is block-diagonal
    with one repeated block (area shrinking by a rational factor: 640 -> 256 is 5 -> 2 repeated 128
    times), else None."""
    g = math.gcd(n_in, n_out)
    if method != "area" or n_out > n_in or n_in // g > 16:
        return None
    m = resize_matrix(n_in, n_out, method, n_out / n_in, True, torch.float64, "cpu")
    b = m[: n_out // g, : n_in // g]
    if not torch.allclose(m, torch.block_diag(*[b] * g), rtol=0, atol=1e-12):  # equal up to rounding
        return None
    terms = [[(i, float(b[o, i])) for i in range(b.shape[1]) if b[o, i] != 0] for o in range(b.shape[0])]
    return b.shape[1], terms


def _resize_axis(x: torch.Tensor, dim: int, n_out: int, method: str) -> torch.Tensor:
    n_in = x.shape[dim]
    block = _block(n_in, n_out, method)
    if block is not None:  # output o of each block = sum of a few strided input slices
        bi, terms = block
        xb = x.unflatten(dim, (n_in // bi, bi))
        shape = list(xb.shape)
        shape[dim + 1] = len(terms)
        out = torch.empty(shape, dtype=torch.float32)
        for o, taps in enumerate(terms):
            target = out.select(dim + 1, o)
            torch.mul(xb.select(dim + 1, taps[0][0]), taps[0][1], out=target)
            for i, w in taps[1:]:
                target.add_(xb.select(dim + 1, i), alpha=w)
        return out.flatten(dim, dim + 1)
    taps = _band(n_in, n_out, method)
    shape = [1] * x.ndim
    shape[dim] = -1
    out = x.index_select(dim, taps[0][0]) * taps[0][1].view(shape)  # index_select: far faster than x[idx]
    for idx, w in taps[1:]:
        out.add_(x.index_select(dim, idx) * w.view(shape))
    return out


def band_resize(x: torch.Tensor, size: tuple[int, int], method: str, channels_last: bool = False) -> torch.Tensor:
    """salnet.imresize.imresize(x, size, method) for (C, H, W), or (H, W, C) when channels_last,
    computed on the band of nonzero weights (same weights; float32 summation order differs, ~1e-7).
    x: float32, or uint8 (gathered as bytes, weighted into float32). Returns float32 in x's layout
    (x itself when the size already matches)."""
    hdim, wdim = (0, 1) if channels_last else (x.ndim - 2, x.ndim - 1)
    if (x.shape[hdim], x.shape[wdim]) == tuple(size):
        return x
    rows = _resize_axis(x, hdim, size[0], method)
    return _resize_axis(rows, wdim, size[1], method)
