"""The optional C kernels (salnet/csrc/*.c) against the torch paths they replace, and their build: one
declaration (csrc/kernels.h) checked against the sources by the compiler, a failed build falls back to torch."""

import shutil
import sys
import warnings

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


def test_pair_stats_equal_torch_reductions():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 10_007, generator=gen, dtype=torch.float64) * 3 + 1e3
    y = torch.rand(4, 10_007, generator=gen, dtype=torch.float64)
    y[1, 9] = -float("inf")
    out = native.pair_stats(x, y)
    for k, t in enumerate((x, y)):
        lo, hi, total, sumsq = out[4 * k:4 * k + 4]
        assert torch.equal(lo, t.amin(1)) and torch.equal(hi, t.amax(1))
        assert torch.allclose(total, t.sum(1), rtol=1e-13, atol=0)
        assert torch.allclose(sumsq, t.square().sum(1), rtol=1e-13, atol=0)
    assert torch.allclose(out[8], (x * y).sum(1), rtol=1e-13, atol=0)
    x[2, 77] = float("nan")  # NaN in x's row 2: x's four and the dot NaN there, y's untouched
    out = native.pair_stats(x, y)
    assert out[[0, 1, 2, 3, 8], 2].isnan().all() and not out[4:8, 2].isnan().any()
    assert native.pair_stats(x, y[:, 1:]) is None and native.pair_stats(x.float(), y.float()) is None


def test_affine_l1_and_kld_equal_their_formulas():
    gen = torch.Generator().manual_seed(6)
    B, N = 5, 20_011
    # values over ~26 orders of magnitude (and zeros): the log's range reduction sees every binade
    x = torch.exp(torch.rand(B, N, generator=gen, dtype=torch.float64) * 60 - 30)
    y = torch.exp(torch.rand(B, N, generator=gen, dtype=torch.float64) * 60 - 30)
    x[0, :300], y[1, :300], x[2, 5:9] = 0, 0, -1e-3  # zeros in either map; negative prediction values are clipped
    a, b, c = (torch.rand(B, generator=gen, dtype=torch.float64) for _ in range(3))
    assert torch.allclose(native.affine_l1(x, y, a, b, c), (a[:, None] * x + c[:, None] - b[:, None] * y).abs().sum(1),
                          rtol=1e-13, atol=0)
    kp, kg = 1 / x.clamp_min(0).sum(1), 1 / y.sum(1)
    eps = 2.220446049250313e-16
    g = kg[:, None] * y
    want = (g * torch.log(eps + g / (eps + kp[:, None] * x.clamp_min(0)))).sum(1)
    assert torch.allclose(native.kld(x, y, kp, kg, eps), want, rtol=1e-13, atol=1e-15)
    y[3, 4] = -1.0  # a negative ground-truth value: log of a negative number, left to the torch path's NaN
    assert native.kld(x, y, kp, kg, eps) is None


def test_threshold_counts_equal_torch_path(monkeypatch):
    from salnet.metrics.auc import _threshold_counts, matlab_thresholds

    gen = torch.Generator().manual_seed(7)
    B, N, splits, width = 4, 5000, 9, 40
    S = torch.rand(B, N, generator=gen, dtype=torch.float64) * 7 - 2
    S[:, :50] = torch.linspace(-2, 5, 50, dtype=torch.float64)  # values exactly on the thresholds
    lo, hi = S.amin(1), S.amax(1)
    spread = hi - lo
    spread[3] = float("nan")  # a constant map's: counted, then reported as undefined by the caller
    idx = torch.randint(0, N, (B, splits, width), generator=gen)
    idx[:, 0] = torch.arange(width)  # the pixels on the thresholds
    use = torch.tensor([40, 17, 0, 40])
    for step in (0.1, 0.01):
        T = matlab_thresholds(step, torch.float64)
        fast = _threshold_counts(S, idx, use, lo, spread, T)
        with monkeypatch.context() as m:
            m.setattr(native, "library", lambda: None)
            slow = _threshold_counts(S, idx, use, lo, spread, T)
        assert torch.equal(fast[:3], slow[:3]) and torch.equal(fast.sum(1), use * splits)


def test_flat_nonzero_equals_nonzero():
    gen = torch.Generator().manual_seed(8)
    for n, density in ((64 * 100 + 13, 0.01), (1000, 0.9), (63, 0.5)):  # sparse; dense (output regrown); tail only
        x = (torch.rand(n, generator=gen) < density).double() * torch.randn(n, generator=gen, dtype=torch.float64)
        x[::7] = -0.0  # zero, though its bits are not
        x[3::11] = float("nan")  # nonzero
        assert torch.equal(native.flat_nonzero(x), x.nonzero().flatten())


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


def _altered_sources(tmp_path, name, old, new):
    """A copy of salnet/csrc with ``old`` replaced by ``new`` (once) in the file ``name``."""
    csrc = tmp_path / "csrc"
    shutil.copytree(native.CSRC, csrc)
    text = (csrc / name).read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {name}: update this test with the kernel"
    (csrc / name).write_text(text.replace(old, new))
    return csrc


KLD_DEFINITION = "int64_t salnet_kld_f64(const double *x, const double *y, int64_t rows, int64_t n,"


def test_a_definition_unlike_its_declaration_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    pred, gt = (torch.rand(2, 30, 40, generator=gen, dtype=torch.float64) for _ in range(2))
    from salnet import metrics as M

    with_kernels = M.kld(pred, gt)
    # n declared int64_t, defined int32_t: bound by hand this call would pass n in the wrong width
    csrc = _altered_sources(tmp_path, "metrics.c", KLD_DEFINITION, KLD_DEFINITION.replace("int64_t n", "int32_t n"))
    monkeypatch.setattr(native, "CSRC", csrc)
    monkeypatch.setenv("SALNET_CACHE", str(tmp_path / "cache"))
    native.library.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert native.library() is None and native.library() is None  # built (and warned) once
            assert native.row_stats(pred.flatten(1)) is None
            torch_path = M.kld(pred, gt)
        assert len(caught) == 1, [str(w.message) for w in caught]
        message = str(caught[0].message)
        assert "conflicting types for 'salnet_kld_f64'" in message and "metrics.c:" in message
        assert torch.allclose(torch_path, with_kernels, rtol=1e-13, atol=0)
        assert not list((tmp_path / "cache").iterdir())  # nothing half-built left in the cache
    finally:
        native.library.cache_clear()


@pytest.mark.parametrize("name, old, new, error", [
    # a declaration changed (float -> double) without its definition
    ("kernels.h", "const int32_t *fw, const int32_t *kw, float scale, int32_t flip, float *out);\nint32_t "
                  "salnet_area_shrink_u16",
     "const int32_t *fw, const int32_t *kw, double scale, int32_t flip, float *out);\nint32_t "
     "salnet_area_shrink_u16", "conflicting types for 'salnet_area_shrink_u8'"),
    # a kernel declared but no longer defined (renamed): its module does not load, so it is no build
    ("metrics.c", "int64_t salnet_nonzero_f64(const uint64_t *x", "int64_t salnet_nonzero_f64_v2(const uint64_t *x",
     "undefined symbol: salnet_nonzero_f64"),
])
def test_a_declaration_that_does_not_match_the_sources_fails_the_build(tmp_path, name, old, new, error):
    with pytest.raises(native.BuildError, match=error):
        native.build(_altered_sources(tmp_path, name, old, new), tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("cause", ["no compiler", "no cffi"])
def test_a_build_that_cannot_start_warns_once_naming_why(tmp_path, monkeypatch, cause):
    if cause == "no compiler":
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # neither cc nor gcc found
    else:
        monkeypatch.setitem(sys.modules, "cffi", None)  # import cffi raises ImportError
    native.library.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert native.library() is None and native.library() is None
        assert len(caught) == 1
        assert ("no C compiler" if cause == "no compiler" else "cffi is not installed") in str(caught[0].message)
    finally:
        native.library.cache_clear()


def test_the_cache_is_keyed_by_the_sources(tmp_path):
    kernels = native.library()
    assert kernels.module.__file__ == str(native.cached_path())  # loaded from its place in the cache
    same = shutil.copytree(native.CSRC, tmp_path / "same")
    assert native.cached_path(same) == native.cached_path()  # the key is the content, not the folder
    edited = _altered_sources(tmp_path / "b", "resize.c", "#include <stdint.h>", "#include <stdint.h>\n")
    assert native.cached_path(edited) != native.cached_path()


def test_calls_are_checked_against_the_declarations():
    k = native.library()
    x = torch.zeros(2, 8, dtype=torch.float64)
    out = torch.empty(4, 2, dtype=torch.float64)
    q = k.ptr(out)
    with pytest.raises(TypeError):  # a float32 tensor where the kernel takes double *
        k.lib.salnet_row_stats_f64(k.ptr(x.float()), 2, 8, q, q + 2, q + 4, q + 6)
    with pytest.raises(TypeError):  # an argument missing
        k.lib.salnet_row_stats_f64(k.ptr(x), 2, 8, q, q + 2, q + 4)
    with pytest.raises(OverflowError):  # out of the declared integer's range
        k.lib.salnet_judd_pass_f64(k.ptr(x), 2, 8, q, q, q, 2**31, k.ptr(x.to(torch.uint8)), 1, 1, k.ptr(x.long()),
                                   k.ptr(x.long()), k.ptr(x.long()))
    k.lib.salnet_row_stats_f64(k.ptr(x), 2, 8, q, q + 2, q + 4, q + 6)  # offsets count doubles, not bytes
    assert torch.equal(out, torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("src, dst", [((480, 640), (192, 256)),  # SalGAN's input: 5 -> 2, 3 taps
                                      ((480, 640), (300, 400)),  # the loss study's: 8 -> 5, zero-padded taps
                                      ((240, 320), (192, 256)),  # fast_decode's: 5 -> 4, 2 taps
                                      ((48, 64), (3, 4)),  # 16 -> 1: the generic width pass
                                      ((40, 60), (16, 24))])
@pytest.mark.parametrize("dtype, full", [(torch.uint8, 255), (torch.uint16, 65535)])
@pytest.mark.parametrize("channels", [1, 3])
def test_area_shrink_equals_torch_path(monkeypatch, src, dst, dtype, full, channels):
    from salnet import imresize
    from salnet.imresize import area_resize_int

    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, full + 1, (*src, channels), generator=gen, dtype=torch.int32).to(dtype)
    x[0, 0], x[-1, -1] = full, full  # the corners: the last block's padded taps must read nothing
    fast = {flip: area_resize_int(x, dst, flip) for flip in (False, True)}
    batch = torch.full((2, channels, *dst), -1.0)  # written in place, as the loader does into a batch's slots
    slot = batch[1]
    assert area_resize_int(x, dst, True, out=slot) is slot and torch.equal(batch[1], fast[True])
    with pytest.raises(ValueError, match="contiguous float32"):
        native.area_shrink(x, *(imresize._integer_taps(n, m) for n, m in zip(src, dst)), 1.0, out=batch[:, 0])
    monkeypatch.setattr(native, "library", lambda: None)
    for flip in (False, True):
        slow = area_resize_int(x, dst, flip)
        assert slow.shape == (channels, *dst) and torch.equal(fast[flip], slow)
        assert torch.equal(area_resize_int(x, dst, flip, out=batch[0]), slow) and torch.equal(batch[0], slow)
    assert torch.equal(fast[True], fast[False].flip(-1))


def test_metrics_equal_with_and_without_the_kernels(monkeypatch):
    from salnet import metrics as M
    from salnet.models.baselines import center_bias

    gen = torch.Generator().manual_seed(9)
    B, H, W = 3, 48, 64
    gt = torch.rand(B, H, W, generator=gen, dtype=torch.float64)
    pred = torch.rand(B, 24, 32, generator=gen, dtype=torch.float64)  # resized: bicubic rings below 0
    fix = (torch.rand(B, H, W, generator=gen) < 0.03).double()
    pred[1], gt[2], fix[2] = 0.5, 0.0, 0.0  # a constant prediction, an all-zero map, no fixations: undefined
    kw = {"fixations": fix, "gt_map": gt, "other": fix.roll(1, 0), "baseline": torch.from_numpy(center_bias((H, W)))}
    for variant in ("mit", "pysaliency"):
        fast = M.score_batch(pred, variant=variant, **kw)
        with monkeypatch.context() as m:
            m.setattr(native, "library", lambda: None)
            slow = M.score_batch(pred, variant=variant, **kw)
        for name in M.METRICS:
            assert torch.allclose(fast[name], slow[name], rtol=1e-12, atol=1e-13, equal_nan=True), (variant, name)
        assert fast["cc"][1:].isnan().all() and fast["nss"][1:].isnan().all()  # the undefined cases stay NaN
