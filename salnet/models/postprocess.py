"""SalGAN's released post-processing of a prediction (imatge-upc/salgan ``utils.predict``; docs/design.md, "SalGAN"):
the network's map resized back to the image size bicubically, blurred with ``cv2.GaussianBlur(m, (5, 5), 0)``
and clipped. The resize is MATLAB ``imresize`` bicubic (the metrics' convention, :mod:`salnet.imresize`) rather
than OpenCV's INTER_CUBIC. Used by inference (:mod:`salnet.inference.predict`) and by validation with
``postprocess="released"`` (:mod:`salnet.train.validate`).

The blur: for an odd ``ksize`` <= 7 and ``sigma <= 0`` OpenCV does NOT use its σ formula
(0.3·((ksize−1)·0.5 − 1) + 0.8 = 1.1 for ksize 5); ``getGaussianKernel`` returns a fixed table, for
ksize 5 the binomial kernel [1, 4, 6, 4, 1] / 16 (smooth.dispatch.cpp, ``getGaussianKernelBitExact``).
That is a discrete Gaussian of variance 1 (σ = 1), applied separably with OpenCV's default border,
BORDER_REFLECT_101 (``dcb|abcd|cba``). This module implements that exact kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from salnet.imresize import imresize

# cv2.GaussianBlur(img, (5, 5), 0): OpenCV's fixed 5-tap table, C(4, k) / 16
BLUR_KERNEL = (0.0625, 0.25, 0.375, 0.25, 0.0625)


def reflect101_index(n: int, pad: int, device=None) -> Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` on both sides with OpenCV's BORDER_REFLECT_101
    (``dcb|abcd|cba``, reflected again as often as needed; length 1 repeats its one pixel)."""
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def blur5(m: Tensor) -> Tensor:
    """``cv2.GaussianBlur(m, (5, 5), 0)`` on float maps: separable [1, 4, 6, 4, 1] / 16, BORDER_REFLECT_101.

    m: (..., H, W) float; returns the same shape and dtype."""
    shape = m.shape
    x = m.reshape(-1, 1, *shape[-2:])
    k = torch.tensor(BLUR_KERNEL, dtype=x.dtype, device=x.device)
    x = x.index_select(-2, reflect101_index(shape[-2], 2, x.device))
    x = x.index_select(-1, reflect101_index(shape[-1], 2, x.device))
    x = F.conv2d(x, k.view(1, 1, 5, 1))
    x = F.conv2d(x, k.view(1, 1, 1, 5))
    return x.reshape(shape)


def postprocess(prob: Tensor, size: tuple[int, int]) -> Tensor:
    """Network output (..., h, w) in [0, 1] → map at the image size (..., H, W): MATLAB-bicubic resize,
    the 5×5 blur, clip to [0, 1] (the released SalGAN inference, docs/design.md "SalGAN")."""
    return blur5(imresize(prob, size, "bicubic")).clamp_(0, 1)
