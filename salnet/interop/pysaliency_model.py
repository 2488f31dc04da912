"""A salnet run as a pysaliency ``SaliencyMapModel``, so pysaliency's metrics and tools work on it.

    import pysaliency
    from salnet.interop.pysaliency_model import saliency_map_model
    model = saliency_map_model("runs/salgan-1a2b3c4d5e6f")          # or the converted salgan_released.pt
    model.AUC(stimuli, fixations), model.NSS(stimuli, fixations), model.CC(stimuli, gold_standard)

Each stimulus (pysaliency's uint8 array, grey or RGB) goes through :func:`salnet.inference.predict.predict_maps`, the
same inference as jobs/predict.py (INTER_AREA to the network input, SalGAN's released post-processing back at the
image's size), so the map pysaliency scores is the map salnet writes, before its 8-bit rounding. pysaliency
(a dev dependency, pinned 0.2.22) is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def _pysaliency() -> Any:
    """The pysaliency module (untyped: its classes are subclassed here)."""
    if not hasattr(np, "trapz"):  # pysaliency 0.2.22 calls np.trapz, which numpy 2.4 removed (and its stubs)
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    try:
        import pysaliency
    except ImportError as err:
        raise ImportError("the pysaliency bridge needs pysaliency: pip install 'pysaliency==0.2.22' "
                          "(or the salnet dev extra)") from err
    return pysaliency


def as_rgb(stimulus: np.ndarray) -> np.ndarray:
    """A pysaliency stimulus (H, W) or (H, W, 3|4), uint8 or float on 0–255, as uint8 RGB (H, W, 3)."""
    a = np.asarray(stimulus)
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"stimulus of dtype {a.dtype} outside 0–255; pysaliency stimuli are uint8 images")
        a = np.rint(a).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"stimulus of shape {a.shape}; expected (H, W) or (H, W, 3)")
    return np.ascontiguousarray(a[..., :3])


def saliency_map_model(run: str | Path, which: str = "best", device: str | torch.device | None = None,
                       caching: bool = True):
    """A ``pysaliency.SaliencyMapModel`` predicting with the generator of ``run`` (a run folder or checkpoint,
    :func:`salnet.inference.predict.load_model`) on ``device`` (default: cuda when available). Its ``saliency_map(s)``
    is a float64 (H, W) map in [0, 1] at the stimulus's size; ``caching`` keeps maps by stimulus id (pysaliency's
    default), so each metric after the first reuses them."""
    from salnet.inference.predict import load_model

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg = load_model(run, which=which, device=device)
    return make_model(model, cfg.data.input_size, caching)


def make_model(model: torch.nn.Module, input_size: tuple[int, int], caching: bool = True):
    """The ``SaliencyMapModel`` of an in-memory salnet network (see :func:`saliency_map_model`)."""
    from salnet.inference.predict import predict_maps

    base: Any = _pysaliency().SaliencyMapModel

    class SalnetSaliencyMapModel(base):
        """pysaliency view of a salnet network: ``_saliency_map(stimulus array) → (H, W) float64``."""

        def __init__(self):
            super().__init__(caching=caching)
            self.network, self.input_size = model, input_size

        def _saliency_map(self, stimulus):
            (m,) = predict_maps(self.network, [as_rgb(stimulus)], self.input_size)
            return m[0].double().numpy()

    return SalnetSaliencyMapModel()
