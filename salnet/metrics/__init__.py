"""The nine MIT saliency benchmark metrics, batched on torch tensors (CPU or CUDA, float64 default).

Conventions (docs/design.md, "Metrics"): MIT MATLAB code by default, pysaliency's variant where they differ.
``python -m salnet.metrics score ...`` scores saved predictions (see :mod:`salnet.metrics.score`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from salnet.metric_names import PAPER_COLUMNS, higher_is_better
from salnet.metrics.auc import auc_borji, auc_borji_of, auc_judd, auc_judd_of, sauc, sauc_of
from salnet.metrics.common import EPS, VARIANTS, as_batch, check_finite
from salnet.metrics.distribution import cc, cc_of, info_gain, info_gain_of, kld, kld_of, nss, nss_of, sim, sim_of
from salnet.metrics.emd import emd, emd_of
from salnet.metrics.prepared import PreparedMaps
from salnet.metrics.shuffled import other_fixations


@dataclass(frozen=True)
class Metric:
    """A metric: ``fn`` its function on tensors, ``of`` the same on :class:`PreparedMaps` (what
    :func:`score_batch` calls), the ground truth it needs and its direction."""

    name: str
    fn: Callable[..., torch.Tensor]
    of: Callable[..., torch.Tensor]
    needs: str  # "fixations" | "gt_map" | "fixations+other" | "fixations+baseline"
    random: bool = False
    has_variant: bool = False

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.name)  # salnet.metric_names: the sweep layer reads it without torch


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("auc_judd", auc_judd, auc_judd_of, "fixations", random=True),
        Metric("auc_borji", auc_borji, auc_borji_of, "fixations", random=True),
        Metric("sauc", sauc, sauc_of, "fixations+other", random=True, has_variant=True),
        Metric("nss", nss, nss_of, "fixations", has_variant=True),
        Metric("cc", cc, cc_of, "gt_map"),
        Metric("sim", sim, sim_of, "gt_map", has_variant=True),
        Metric("kld", kld, kld_of, "gt_map"),
        Metric("emd", emd, emd_of, "gt_map"),
        Metric("ig", info_gain, info_gain_of, "fixations+baseline", has_variant=True),
    )
}


def check_names(names) -> list[str]:
    """Validate metric names; unknown ones are an error listing the valid choices."""
    names = list(names)
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; valid: {', '.join(METRICS)}")
    return names


def score_batch(
    pred: torch.Tensor,
    *,
    fixations: torch.Tensor | None = None,
    gt_map: torch.Tensor | None = None,
    other: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    metrics=tuple(METRICS),
    variant: str = "mit",
    seed: int = 0,
    keys=None,
    n_splits: int = 100,
    step: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Every requested metric on one batch of same-sized ground truth; returns name → (B,) values.

    Metrics whose inputs are missing (no ``other`` for sAUC, no ``baseline`` for IG) are an error
    naming the missing input. ``variant`` applies to the metrics that have one (sAUC, NSS, SIM, IG);
    ``n_splits`` and ``step`` to AUC-Borji and sAUC (MIT defaults 100 and 0.1).
    """
    names = check_names(metrics)
    given = {"fixations": fixations, "gt_map": gt_map, "other": other, "baseline": baseline}
    for name in names:
        missing = [k for k in METRICS[name].needs.split("+") if given[k] is None]
        if missing:
            raise ValueError(f"metric {name} needs {' and '.join(missing)}, which was not given")
    needed = {k for n in names for k in METRICS[n].needs.split("+")}
    # the inputs in the computation dtype, checked for NaN/inf below, once, from sums the metrics share
    pred = as_batch(pred, "pred", dtype, check=False)
    if baseline is not None and baseline.ndim == 2:  # one baseline for the whole batch
        given["baseline"] = baseline.expand(pred.shape[0], *baseline.shape)
    truth = {k: as_batch(v, k, dtype, check=False) for k, v in given.items() if k in needed and v is not None}
    # one statistics cache for all the metrics (the prediction resized to the ground truth once)
    maps = PreparedMaps(pred, **truth)
    if maps.gt_map is not None and maps.gt_map.shape == maps.pred.shape:
        maps.pred_gt_stats()  # both maps' statistics in one pass
    # bicubic weights are all nonzero, so a NaN/inf in pred reaches the resized map: its row sums are the check
    check_finite(pred, "pred", maps.stats("pred").sum)
    for name, x in truth.items():
        check_finite(x, name, _sums(maps, name, x))
    return {name: METRICS[name].of(maps, **_options(METRICS[name], variant, seed, keys, n_splits, step))
            for name in names}


def _sums(maps: PreparedMaps, name: str, x: torch.Tensor) -> torch.Tensor:
    """(B,) sums over each image of the input ``name`` (``x``), shared with the metrics where they can be:
    a ground-truth map's from its statistics; a fixation map's over its fixated (nonzero, NaN/inf included)
    pixels, from the packing the metrics use, so that the mostly-zero map is not summed in full as well."""
    if name == "gt_map":
        return maps.stats("gt_map").sum
    if name in ("fixations", "other"):
        return maps.layout(name).counts.sum(1)
    return x.flatten(1).sum(1)


def _options(m: Metric, variant, seed, keys, n_splits, step) -> dict:
    """The keyword arguments of ``m.of`` among score_batch's options."""
    options: dict = {}
    if m.random:
        options.update(seed=seed, keys=keys)
    if m.name in ("auc_borji", "sauc"):
        options.update(n_splits=n_splits, step=step)
    if m.has_variant:
        options["variant"] = variant
    return options


__all__ = [
    "EPS", "METRICS", "PAPER_COLUMNS", "VARIANTS", "Metric", "PreparedMaps", "auc_borji", "auc_judd", "cc",
    "check_names", "emd", "info_gain", "kld", "nss", "other_fixations", "sauc", "score_batch", "sim",
]
