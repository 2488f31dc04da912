"""salnet.imresize against MATLAB's published values, a loop re-implementation and bicubic_pytorch."""

import math

import numpy as np
import pytest
import torch

from salnet.imresize import imresize


def matlab_imresize_loop(a: np.ndarray, out_hw, scale=None) -> np.ndarray:
    """MATLAB imresize (bicubic, antialiased) written pixel by pixel from imresize.m's contributions()."""

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    def resize_axis(a, out_len, s):
        n = a.shape[0]
        out = np.zeros((out_len,) + a.shape[1:])
        width = 4.0 / s if s < 1 else 4.0
        for o in range(1, out_len + 1):
            u = o / s + 0.5 * (1 - 1 / s)
            left = math.floor(u - width / 2)
            taps = [(left + k) for k in range(int(math.ceil(width)) + 2)]
            w = [(s * cubic(s * (u - j)) if s < 1 else cubic(u - j)) for j in taps]
            tot = sum(w)
            for j, wj in zip(taps, w):
                jj = j
                while jj < 1 or jj > n:  # symmetric mirror: 0 -> 1, n+1 -> n
                    jj = 1 - jj if jj < 1 else 2 * n + 1 - jj
                out[o - 1] += wj / tot * a[jj - 1]
        return out

    H, W = a.shape
    sh = out_hw[0] / H if scale is None else scale
    sw = out_hw[1] / W if scale is None else scale
    b = resize_axis(a, out_hw[0], sh)
    return resize_axis(b.T, out_hw[1], sw).T


def test_matlab_published_values():
    # imresize(reshape(0:15, 4, 4)', [3 3]) as printed by MATLAB (bicubic_pytorch's documented example)
    x = torch.arange(16, dtype=torch.float64).view(4, 4)
    want = torch.tensor([[0.7506, 2.1004, 3.4503], [6.1501, 7.5000, 8.8499], [11.5497, 12.8996, 14.2494]],
                        dtype=torch.float64)
    assert torch.allclose(imresize(x, (3, 3)), want, atol=6e-5)


@pytest.mark.parametrize("shape,out", [((23, 31), (7, 9)), ((12, 10), (30, 17)), ((9, 40), (20, 5)),
                                       ((5, 5), (1, 1)), ((3, 2), (11, 1))])
def test_matches_loop_reference(shape, out):
    rng = np.random.default_rng(0)
    a = rng.random(shape)
    got = imresize(torch.from_numpy(a), out).numpy()
    np.testing.assert_allclose(got, matlab_imresize_loop(a, out), rtol=0, atol=1e-12)


def test_scale_factor_uses_ceil_size_and_scale_kernel():
    # imresize(A, 1/32) on 675x1024 (MIT benchmark size): 22x32 output, kernel stretched by exactly 32
    rng = np.random.default_rng(1)
    a = rng.random((675, 1024))
    got = imresize(torch.from_numpy(a), scale=1 / 32)
    assert got.shape == (22, 32)
    np.testing.assert_allclose(got.numpy(), matlab_imresize_loop(a, (22, 32), scale=1 / 32), atol=1e-12)


def test_agrees_with_bicubic_pytorch():
    bc = pytest.importorskip("bicubic_pytorch.core")
    x = torch.rand(2, 1, 480, 640, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for size in [(15, 20), (192, 256), (100, 77)]:
        ref = bc.imresize(x, sizes=size).double()  # computes in float32
        assert (imresize(x, size) - ref).abs().max() < 1e-5


def test_area_is_block_mean_for_integer_factors_and_preserves_mean():
    x = torch.rand(3, 480, 640, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = imresize(x, (240, 160), "area")
    want = x.view(3, 240, 2, 160, 4).mean((2, 4))
    assert torch.allclose(got, want, atol=1e-14)
    frac = imresize(x, (192, 256), "area")  # 2.5x shrink: fractional coverage
    assert torch.allclose(frac.mean((1, 2)), x.mean((1, 2)), atol=1e-12)
    assert frac.min() >= x.min() - 1e-12 and frac.max() <= x.max() + 1e-12


def test_identity_and_errors():
    x = torch.rand(2, 5, 7)
    assert imresize(x, (5, 7)) is x
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x)
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        imresize(x, (0, 3))
    with pytest.raises(ValueError, match="unknown resize method"):
        imresize(x, (3, 3), "lanczos")
