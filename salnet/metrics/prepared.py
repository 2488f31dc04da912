"""One batch's maps, ready for the metrics, with the per-map statistics that several metrics share.

:class:`PreparedMaps` is the statistics cache of a batch: ``score_batch`` makes one and passes it to every
metric, so the prediction's min, max and sums, its standard deviation, the fixated pixels and the values
there are computed once for the nine metrics; a metric called on its own makes its own. Statistics are
named by the map they belong to ("pred", "gt_map", "fixations", ...), computed on first use and then kept.
The maps must not change while the object is in use.
"""

from __future__ import annotations

import torch

from salnet.imresize import spatial_size
from salnet.metrics.common import (
    FixationLayout,
    MapStats,
    as_batch,
    fixation_layout,
    image_seeds,
    map_pair_stats,
    map_stats,
    map_std,
    resize_to,
    row_dot,
)

MAPS = ("pred", "fixations", "gt_map", "other", "baseline")


class PreparedMaps:
    """A batch's maps: ``pred_input`` (B, h, w) the prediction as given, ``pred`` (B, H, W) that prediction
    resized to the ground truth's ``size`` (H, W); ``fixations`` and ``other`` (fixation counts), ``gt_map``
    and ``baseline`` (resized like the prediction), each (B, H, W) or None where not given. The inputs must
    be checked already (:func:`~salnet.metrics.common.as_batch`) and of one dtype."""

    def __init__(self, pred: torch.Tensor, *, fixations: torch.Tensor | None = None,
                 gt_map: torch.Tensor | None = None, other: torch.Tensor | None = None,
                 baseline: torch.Tensor | None = None):
        target = fixations if fixations is not None else gt_map
        self.size = spatial_size(pred if target is None else target)
        for name, x in (("gt_map", gt_map), ("other", other)):  # one ground-truth size: pred is resized to it
            if x is None:
                continue
            if target is None:
                raise ValueError(f"{name} needs the batch's fixations or gt_map (its size is theirs)")
            if x.shape != target.shape:
                raise ValueError(f"{name} {tuple(x.shape)} must have the fixations' shape {tuple(target.shape)}")
        self.pred_input = pred
        self.pred = resize_to(pred, self.size)
        self.fixations, self.gt_map, self.other = fixations, gt_map, other
        self.baseline = None if baseline is None else resize_to(baseline, self.size).to(pred.device)
        self._stats: dict[str, MapStats] = {}  # map name -> its MapStats
        self._pred_gt_dot: torch.Tensor | None = None  # (B,) Σ pred·gt_map per image
        self._std: dict[tuple[str, int], torch.Tensor] = {}  # (map name, ddof) -> (B,) std
        self._layouts: dict[str, FixationLayout] = {}  # fixation map name -> its layout
        self._packed: dict[tuple[str, str], torch.Tensor] = {}  # (map, fixation map) -> (B, F) values

    def required(self, name: str) -> torch.Tensor:
        """The map ``name`` (B, H, W); a ValueError naming the maps the batch has when it has no such map."""
        x = getattr(self, name) if name in MAPS else None
        if x is None:
            raise ValueError(f"no {name} map in this batch (have: "
                             f"{', '.join(n for n in MAPS if getattr(self, n) is not None)})")
        return x

    def flat(self, name: str) -> torch.Tensor:
        """The map ``name`` as (B, N), N = H·W pixels (a view)."""
        return self.required(name).flatten(1)

    def stats(self, name: str) -> MapStats:
        """:class:`~salnet.metrics.common.MapStats` of the map ``name``."""
        if name not in self._stats:
            self._stats[name] = map_stats(self.flat(name))
        return self._stats[name]

    def pred_gt_stats(self) -> tuple[MapStats, MapStats, torch.Tensor]:
        """(stats of ``pred``, stats of ``gt_map``, (B,) their dot products). With the C kernels, one pass over
        both maps; its statistics are kept for :meth:`stats` where that has none yet."""
        if self._pred_gt_dot is None:
            pred, gt = self.flat("pred"), self.flat("gt_map")
            fused = map_pair_stats(pred, gt)
            if fused is None:  # each map reduced apart, as stats() does, and one dot per row
                self._pred_gt_dot = row_dot(pred, gt)
            else:
                self._stats.setdefault("pred", fused[0])
                self._stats.setdefault("gt_map", fused[1])
                self._pred_gt_dot = fused[2]
        return self.stats("pred"), self.stats("gt_map"), self._pred_gt_dot

    def std(self, name: str, ddof: int) -> torch.Tensor:
        """(B,) standard deviation of the map ``name`` over its pixels, with ``ddof``; NaN for a constant map."""
        if (name, ddof) not in self._std:
            self._std[name, ddof] = map_std(self.flat(name), self.stats(name), ddof)
        return self._std[name, ddof]

    def layout(self, fixations: str = "fixations") -> FixationLayout:
        """:class:`~salnet.metrics.common.FixationLayout` of the fixation map ``fixations`` ("fixations" or
        "other")."""
        if fixations not in self._layouts:
            self._layouts[fixations] = fixation_layout(self.flat(fixations))
        return self._layouts[fixations]

    def at_fixations(self, name: str, fixations: str = "fixations") -> torch.Tensor:
        """(B, F) the values of the map ``name`` at the pixels of ``fixations``, packed by its :meth:`layout`
        (shared: callers must not change it in place)."""
        if (name, fixations) not in self._packed:
            self._packed[name, fixations] = self.layout(fixations).pack(self.flat(name))
        return self._packed[name, fixations]

    def image_seeds(self, seed: int, keys) -> list[int]:
        """:func:`~salnet.metrics.common.image_seeds` of this batch's fixations."""
        return image_seeds(seed, self.required("fixations"), keys, self.layout())


def prepare(pred: torch.Tensor, dtype: torch.dtype, **truth: torch.Tensor) -> PreparedMaps:
    """:class:`PreparedMaps` of one metric's own inputs: the ground-truth maps ``truth`` (``fixations``,
    ``gt_map``, ``other``) and then ``pred``, each checked by :func:`~salnet.metrics.common.as_batch`."""
    checked = {name: as_batch(x, name, dtype) for name, x in truth.items()}
    return PreparedMaps(as_batch(pred, "pred", dtype), **checked)
