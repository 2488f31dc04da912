"""The optional C kernels (salnet/native.c) against the torch paths they replace."""

import pytest
import torch

from salnet import native
from salnet.metrics.auc import JUDD_BINS, _judd_pass

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="no C compiler here: salnet uses its torch paths (tested elsewhere)")


def test_row_stats_equal_torch_reductions():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 10_007, generator=gen, dtype=torch.float64) * 3 + 1e3  # odd length: the tail loop
    x[2, 17] = float("inf")
    lo, hi, total, sumsq = native.row_stats(x)
    assert torch.equal(lo, x.amin(1)) and torch.equal(hi, x.amax(1))
    assert torch.allclose(total, x.sum(1), rtol=1e-13, atol=0, equal_nan=True)
    assert torch.allclose(sumsq, x.square().sum(1), rtol=1e-13, atol=0)
    x[3, 5000] = float("nan")  # NaN in a row: all four NaN, as torch's reductions give
    assert all(v[3].isnan() for v in native.row_stats(x))
    assert native.row_stats(x.float()) is None and native.row_stats(x.t()) is None  # not its kind: torch path


@pytest.mark.parametrize("subtract", [False, True])
def test_judd_pass_equals_torch_path(subtract):
    gen = torch.Generator().manual_seed(1)
    B, N, K = 4, 30_001, JUDD_BINS
    S = torch.rand(B, N, generator=gen, dtype=torch.float64) * 2 + (1e9 if subtract else -0.5)
    S[1, :500] = S[1, 0]  # ties: many pixels in one bin
    lo, hi = S.amin(1), S.amax(1)
    scale = K / (hi - lo)
    shift = 1.5 - (torch.zeros_like(scale) if subtract else lo * scale)
    marked = torch.rand(B, K + 3, generator=gen) < 0.02
    hist, close = native.judd_pass(S, lo, scale, shift, subtract, marked, K + 1,
                                   torch.empty(B, K + 3, dtype=torch.int64), torch.empty(B * N, dtype=torch.int64))
    want_hist, want_close = _judd_pass(S, lo.tolist(), scale.tolist(), shift.tolist(), subtract, marked)
    assert torch.equal(close, want_close)
    assert torch.equal(hist, want_hist)
    assert hist.sum() + close.numel() == B * N  # every pixel counted once, far or close


def test_without_the_kernels_the_torch_paths_run(monkeypatch):
    monkeypatch.setenv("SALNET_NATIVE", "0")
    native.library.cache_clear()
    try:
        assert native.library() is None and native.row_stats(torch.zeros(2, 3, dtype=torch.float64)) is None
    finally:
        monkeypatch.delenv("SALNET_NATIVE")
        native.library.cache_clear()


@pytest.mark.parametrize("src, dst", [((480, 640), (192, 256)),  # SalGAN's input: 5 -> 2, 3 taps
                                      ((480, 640), (300, 400)),  # the loss study's: 8 -> 5, zero-padded taps
                                      ((240, 320), (192, 256)),  # fast_decode's: 5 -> 4, 2 taps
                                      ((48, 64), (3, 4)),  # 16 -> 1: the generic width pass
                                      ((40, 60), (16, 24))])
@pytest.mark.parametrize("dtype, full", [(torch.uint8, 255), (torch.uint16, 65535)])
@pytest.mark.parametrize("channels", [1, 3])
def test_area_shrink_equals_torch_path(monkeypatch, src, dst, dtype, full, channels):
    from salnet.imresize import area_resize_int

    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, full + 1, (*src, channels), generator=gen, dtype=torch.int32).to(dtype)
    x[0, 0], x[-1, -1] = full, full  # the corners: the last block's padded taps must read nothing
    fast = {flip: area_resize_int(x, dst, flip) for flip in (False, True)}
    monkeypatch.setattr(native, "library", lambda: None)
    for flip in (False, True):
        slow = area_resize_int(x, dst, flip)
        assert slow.shape == (channels, *dst) and torch.equal(fast[flip], slow)
    assert torch.equal(fast[True], fast[False].flip(-1))
